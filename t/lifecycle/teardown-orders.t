# Proves: every order of dropping contexts, connections and callbacks, and
# every way a process ends, frees everything without a crash.
# POD: EV::Websockets, "Destroying a context", "fork".
#
# Teardown orders.  Part 1: inside every callback of our client and our
# server, drop the last reference to the context, to the connection, or
# to what the callbacks capture, close, or several of these at once; the
# process carries on and everything is freed.  Part 2: child perls that
# end (normally, by exit inside a callback, by die) while holding
# connections in awkward states; global destruction copes.  Part 3:
# forked children that exit or exec leave the parent's connections alone.
#
# t/lifecycle/destroy-during-callbacks.t covers destroying the context in
# on_message and on_connect and what a detached connection does
# afterwards; t/lifecycle/peer-processes-and-fork.t a forked child that
# exits.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use POSIX ();
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Scalar::Util qw(weaken blessed);
use lib 't/lib';
use TestWS;
use RawPeer;
use Teardown qw(sentinel run_children build_shim);

my $guard = EV::timer(28, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

# A bystander: an echo pair in a context of its own, which must keep
# working whatever happens to the others.
my $by_ctx  = EV::Websockets::Context->new;
my $by_port = echo_server($by_ctx, host => '127.0.0.1');
my @by_got;
my $by_conn = $by_ctx->connect(url => "ws://127.0.0.1:$by_port/", on_message => sub { push @by_got, $_[1] });
run_until(sub { $by_conn->is_connected }, 3) or BAIL_OUT('the bystander pair did not connect');

# The loop still runs (a new timer fires) and the bystander still echoes.
my $rounds = 0;
sub loop_and_bystander_ok {
    my ($label) = @_;
    my $fired;
    my $timer = EV::timer(0.001, 0, sub { $fired = 1 });
    my $msg = 'round ' . ++$rounds;
    $by_conn->send($msg);
    ok(run_until(sub { $fired && @by_got && $by_got[-1] eq $msg }, 3),
        "$label: a timer fires and another pair still echoes");
}

# ---- part 1: teardown inside each callback -------------------------------

# What an action does, step by step, inside the callback.  $hr refers to
# the variable the callbacks capture; $args is the callback's @_.
my %STEP = (
    # close() the connection (a no-op once it is closing or closed)
    close => sub { my (undef, $args) = @_; $args->[0]->close(1000, 'teardown') if blessed $args->[0] },
    # drop the last references to the connection object: ours and @_'s
    conn => sub { my ($hr, $args) = @_; delete $$hr->{conn} if $$hr; undef $args->[0] },
    # drop the last reference to the context
    ctx => sub { my ($hr) = @_; delete $$hr->{ctx} if $$hr },
    # clear or replace the variable the callbacks capture: it holds the
    # last reference to the context, so the callbacks themselves go
    captures => sub { my ($hr) = @_; undef $$hr },
    replace  => sub { my ($hr) = @_; $$hr = { replaced => 1 } },
    die => sub { die "boom\n" },
);
my @ACTIONS = (
    [ ctx          => qw(ctx) ],
    [ conn         => qw(conn) ],
    [ captures     => qw(captures) ],
    [ replace      => qw(replace) ],
    [ close        => qw(close conn) ],
    [ all          => qw(close conn ctx captures) ],
    [ all_reversed => qw(ctx close conn captures) ],
    [ all_die      => qw(conn ctx captures die) ],
);
my %KEEPS_CTX = (conn => 1, close => 1);

# What the raw peer does once the connection is open, to make the
# callback under test fire.  (drain: our on_connect sends; handshake,
# connect: nothing; early_error: there is no peer.)
my %PEER_TRIGGER = (
    message => sub { $_[0]->send_frame(payload => 'hello') },
    pong    => sub { $_[0]->send_frame(opcode => 10, payload => 'unsolicited') },
    error   => sub { $_[0]->send_frame(payload => 'x' x 11) },    # over max_message_size
    close   => sub { $_[0]->send_frame(opcode => 8, payload => RawPeer::close_payload(4000, 'bye')) },
);

# The callbacks of each side, as scenario names; early_error is on_error
# for a connect that fails (nothing listens).
my %CALLBACKS = (
    client => [qw(connect message pong drain error close early_error)],
    server => [qw(handshake connect message pong drain error close)],
);

# Start a connection of $side (client or server) with every callback set,
# where the callback $cb runs the steps of the action once.  The context,
# the connection (client) and a sentinel live in a hash only the
# callbacks' closures reach (through the captured variable $h), so the
# context holds the closures and the closures hold the context: a cycle,
# as in many programs.  Returns ($log, $peer): $log records the events
# and holds weak references to the context, the connection object and
# the closures, and the flags of the sentinels freed.
sub start_scenario {
    my ($side, $cb, @steps) = @_;
    my $fires = $cb eq 'early_error' ? 'error' : $cb;
    my $log = { events => [], freed => {}, closures => [] };
    my $h = { sentinel => sentinel($log->{freed}, 'held by the context') };
    my $captured = sentinel($log->{freed}, 'captured by the closures');
    $h->{ctx} = EV::Websockets::Context->new;
    weaken($log->{ctx} = $h->{ctx});
    my %callbacks;
    for my $what (qw(handshake connect message close error pong drain)) {
        next if $what eq 'handshake' && $side eq 'client';
        $callbacks{"on_$what"} = sub {
            my $held = $captured;
            push @{ $log->{events} }, $what;
            my $conn = blessed $_[0] ? $_[0] : undef;
            weaken($log->{conn} = $conn) if $conn && !$log->{conn};
            $h->{conn} = $conn if $h && $what eq 'connect' && $side eq 'server';
            if ($what eq $fires && !$log->{acted}) {
                $log->{acted} = @{ $log->{events} };
                $STEP{$_}->(\$h, \@_) for @steps;
                # the closure still runs and sees what it captured
                $log->{returned} = $held->{name};
            }
            elsif ($what eq 'connect' && $fires eq 'drain') {
                $conn->send('data');
            }
            elsif ($what eq 'message' && $log->{acted} && $conn->is_connected) {
                $conn->send("echo:$_[1]");
            }
            return 1;    # on_handshake: accept
        };
        push @{ $log->{closures} }, $callbacks{"on_$what"};
        weaken($log->{closures}[-1]);
    }
    my %opt = (max_message_size => 10, %callbacks);
    my $peer;
    if ($side eq 'client') {
        my $port = $cb eq 'early_error' ? closed_port()
            : ($peer = RawPeer->server(on_open => $PEER_TRIGGER{$cb}))->port;
        $h->{conn} = $h->{ctx}->connect(url => "ws://127.0.0.1:$port/", %opt);
    }
    else {
        my $port = $h->{ctx}->listen(port => 0, host => '127.0.0.1', %opt);
        $peer = RawPeer->client(port => $port, on_open => $PEER_TRIGGER{$cb});
    }
    return ($log, $peer);
}

# What should happen in a scenario.  kills: the action frees the context.
# codes: the close codes the peer receives.  stays_open: the connection
# goes on after the action.  after: the callbacks that fire after it.
# freed_early: everything is freed without the test's help.
sub expected {
    my ($side, $cb, $action) = @_;
    my $open  = $cb =~ /^(?:connect|message|pong|drain)$/;
    my %e = (kills => !$KEEPS_CTX{$action});
    $e{codes} = $cb eq 'close' ? [4000]                   # our reply to the peer's close
        : $cb eq 'error'       ? [1009]                   # sent with on_error
        : !$open               ? []                       # handshake: no 101 either
        : $action eq 'conn'    ? []
        # close() came first: its frame goes out, also when the context
        # is destroyed next (fails while context destruction drops what
        # a closing connection has queued)
        : $action =~ /^(?:close|all)$/ ? [1000]
        :                        [1001];                  # the context went
    $e{stays_open} = $open && $action eq 'conn';
    $e{after} = $e{kills} || $cb =~ /^(?:close|early_error)$/ ? []
        : $cb eq 'error' || $action eq 'close' ? ['close']
        : [];    # stays open: checked with a message from the peer
    # A client's closures are held by its connection only, a server's
    # also by the listener, which lives as long as the context.
    $e{freed_early} = $e{kills} || ($side eq 'client' && !$e{stays_open});
    return \%e;
}

sub everything_freed {
    my ($log) = @_;
    return !$log->{ctx} && !$log->{conn} && !grep({ defined } @{ $log->{closures} })
        && keys %{ $log->{freed} } == 2;
}

sub what_is_left {
    my ($log) = @_;
    return join ', ', ($log->{ctx} ? 'the context' : ()), ($log->{conn} ? 'the connection' : ()),
        (grep({ defined } @{ $log->{closures} }) ? 'closures' : ()),
        (map { "the sentinel $_" } grep { !$log->{freed}{$_} }
            'held by the context', 'captured by the closures');
}

sub scenario {
    my ($side, $cb, $action, @steps) = @_;
    my $label = "our $side, $action in " . ($cb eq 'early_error' ? 'on_error before the handshake' : "on_$cb");
    my $e = expected($side, $cb, $action);
    @warnings = ();
    my ($log, $peer) = start_scenario($side, $cb, @steps);
    my $after = sub { my @ev = @{ $log->{events} }; [ @ev[ $log->{acted} .. $#ev ] ] };

    ok(run_until(sub {
        $log->{acted}
            && (!$peer || $e->{stays_open} || $peer->{eof})
            && @{ $after->() } >= @{ $e->{after} }
            && (!$e->{freed_early} || everything_freed($log))
    }, 3), "$label: settles") or diag(explain({ events => $log->{events}, left => what_is_left($log) }));
    if ($action eq 'all_die') {
        ok(!$log->{returned}, "$label: the callback died");
    }
    else {
        is($log->{returned}, 'captured by the closures', "$label: the callback ran to its end with its captures intact");
    }
    if ($peer) {
        is_deeply([ map { unpack 'n', $_->{payload} } $peer->frames_of(8) ], $e->{codes},
            "$label: the peer got close codes (@{ $e->{codes} })");
    }
    if ($e->{stays_open}) {
        $peer->send_frame(payload => 'after');
        ok(run_until(sub { grep { $_->[1] eq 'echo:after' } $peer->messages }, 3),
            "$label: the connection still works (a message is answered)");
        ok(!$peer->{eof} && !grep({ !/^(?:message|drain)$/ } @{ $after->() }),
            "$label: ... and nothing else happened") or diag(explain($after->()));
    }
    else {
        is_deeply($after->(), $e->{after}, "$label: callbacks after the action (@{ $e->{after} })");
    }
    loop_and_bystander_ok($label);
    if ($peer) {
        # the 101 went out before the action, except in on_handshake
        is($peer->{open} ? 1 : 0, $cb eq 'handshake' ? 0 : 1,
            "$label: the peer " . ($cb eq 'handshake' ? 'got no 101' : 'was upgraded'));
    }
    if ($e->{freed_early}) {
        ok(everything_freed($log), "$label: the context, connection and closures are freed")
            or diag('left: ' . what_is_left($log));
    }
    else {
        ok($log->{ctx} && grep({ defined } @{ $log->{closures} }) == @{ $log->{closures} },
            "$label: the context and the callbacks still live (they are in use)");
    }
    # the die is caught and warned as documented; nothing else warns
    my $what = $cb eq 'handshake' ? 'on_handshake' : ($cb eq 'early_error' ? 'error' : $cb) . ' handler';
    is_deeply(\@warnings, $action eq 'all_die' ? ["EV::Websockets: exception in $what: boom\n"] : [],
        "$label: " . ($action eq 'all_die' ? 'the documented warning only' : 'no warning'));

    # Break the remaining cycle the way a program would: destroy the
    # context (through a strong reference; see the weak one in part 2).
    {
        my $ctx = $log->{ctx};
        $ctx->DESTROY if $ctx;
    }
    ok(everything_freed($log), "$label: after destroying the context, everything is freed")
        or diag('left: ' . what_is_left($log));
    @warnings = ();
}

for my $side (qw(client server)) {
    for my $cb (@{ $CALLBACKS{$side} }) {
        subtest "our $side, inside on_$cb" => sub {
            for my $action (@ACTIONS) {
                my ($name, @steps) = @$action;
                # on_handshake has no connection object to close or drop
                next if $cb eq 'handshake' && $KEEPS_CTX{$name};
                scenario($side, $cb, $name, @steps);
            }
        };
    }
}

# ---- part 2: global destruction in child perls ---------------------------

my $dir = tempdir(CLEANUP => 1);

subtest 'child perls end while holding connections' => sub {
    my $shim = build_shim($dir);
    my @holds = qw(sends closing_client closing_server tls listen globals cycles);
    if ($shim) {
        push @holds, qw(dns dns_ctx_gone);
    }
    else {
        diag('no C compiler for the slow getaddrinfo shim: the pending lookups are not tested');
    }
    # (A perl built without DEBUGGING ignores PERL_DESTRUCT_LEVEL; a
    # threaded one, like Debian's, frees everything at exit anyway.)
    my %env = (PERL_DESTRUCT_LEVEL => 2, $shim ? (LD_PRELOAD => $shim) : ());
    # the state each one reports when it is in place
    my %state = (sends => 'queued', closing_client => 'closing', closing_server => 'closing',
        tls => 'connecting', listen => 'listening', globals => 'connected', cycles => 'connected',
        dns => 'connecting', dns_ctx_gone => 'resolved');
    my $job = sub {
        my ($how, @what) = @_;
        my ($status, $stderr) = $how eq 'die' ? (255, "dying on purpose\n") : $how eq 'normal' ? (0, '') : (7, '');
        my $ready = join ' ', 'ready', map { "$_=$state{$_}" } sort @what;
        return { args => [ 't/bin/teardown/hold.pl', $how, @what ], env => \%env,
            label => "$how holding @what", want_status => $status, want_stderr => $stderr,
            want_stdout => qr/\A\Q$ready\E\n${\($how eq 'normal' ? "end\n" : '')}\z/ };
    };
    my @jobs;
    for my $what (@holds) {
        push @jobs, map { $job->($_, $what) } qw(normal die exit:message);
    }
    # Everything at once (but a pending lookup: dns_ctx_gone waits for one
    # to end), ending in each kind of callback.
    my @all = grep { $_ ne 'dns_ctx_gone' } @holds;
    push @jobs, map { $job->($_, @all) } qw(normal die), map { "exit:$_" } qw(handshake connect message error close pong drain);
    # DESTROY through a weak reference while the callbacks hold the last
    # strong one (crashes while DESTROY does not keep the context's memory
    # until it is done).
    push @jobs, map { {
        args => [ 't/bin/teardown/destroy-via-weak-ref.pl', $_ ], env => \%env, label => "DESTROY via a weak reference ($_ callbacks)",
        want_status => 0, want_stderr => '', want_stdout => qr/\A\Q$_\E ok\n\z/,
    } } qw(listener connection);

    run_children($dir, \@jobs, parallel => 4, secs => 12);
    for my $j (@jobs) {
        my $status = $j->{status} // -1;
        subtest $j->{label} => sub {
            is($status & 127, 0, 'no signal') or diag('signal ' . ($status & 127) . ($status == -1 ? ' (not run)' : ''));
            is($status >> 8, $j->{want_status}, "exit status $j->{want_status}");
            like($j->{stdout}, $j->{want_stdout}, 'it got ready (and ended as it should)');
            unlike($j->{stderr}, qr/Scalars leaked|Attempt to free|panic|during global destruction/, 'no leak or destruction warnings');
            is($j->{stderr}, $j->{want_stderr}, 'nothing else on stderr');
        };
    }
};

# ---- part 3: forked children ----------------------------------------------

subtest 'forked children leave the parent\'s connections alone' => sub {
    my $certs = 't/certs';
    my $sctx  = EV::Websockets::Context->new;
    my $cctx  = EV::Websockets::Context->new(ssl_ca => "$certs/ca.pem");
    my (%server_conn, %events, @forked, %status, %watchers);

    # Watch a forked child at once: the loop reaps children it has no
    # watcher for, and their status would be lost.
    my $watch = sub {
        my ($pid) = @_;
        $watchers{$pid} = EV::child($pid, 0, sub { $status{$pid} = $_[0]->rstatus });
    };

    # Our servers echo; a message "fork:<mode>" makes the server fork
    # inside on_message, after queueing its reply; the child then exits
    # or execs from inside the callback.
    my $in_callback_child;
    my $echo_or_fork = sub {
        my ($conn, $data) = @_;
        $conn->send($data);
        if ($data =~ /^fork:(\w+)/) {
            my $pid = fork // die "fork: $!";
            $in_callback_child->($1) if !$pid;
            $watch->($pid);
            push @forked, $pid;
        }
    };
    # (the raw client asks for /raw)
    my $plain = $sctx->listen(port => 0, host => '127.0.0.1', recording($events{server} = {},
        on_message => $echo_or_fork, on_connect => sub { $server_conn{raw_client} = $_[0] if $_[1]{Path} eq '/raw' }));
    my $tls = $sctx->listen(port => 0, host => '127.0.0.1', ssl_cert => "$certs/server.pem", ssl_key => "$certs/server-key.pem",
        recording($events{tls_server} = {}, on_message => $echo_or_fork));
    my $for_workers = echo_server($sctx, host => '127.0.0.1');

    # The pairs, by name: send (a message from one end) and got (the
    # messages that came back to that end).
    my %pair;
    # our client <-> our server, plain and TLS
    for my $p ([ local => "ws://127.0.0.1:$plain/" ], [ tls => "wss://127.0.0.1:$tls/" ]) {
        my ($name, $url) = @$p;
        my $conn = $cctx->connect(url => $url, recording($events{$name} = {}));
        $pair{$name} = { send => sub { $conn->send($_[0]) }, got => sub { map { $_->[0] } @{ $events{$name}{message} || [] } },
            conn => $conn };
    }
    # our client <-> a raw server, which sends and sees what we echo
    my $raw_server = RawPeer->server;
    my $to_raw = $cctx->connect(url => 'ws://127.0.0.1:' . $raw_server->port . '/',
        recording($events{raw_server} = {}, on_message => sub { $_[0]->send($_[1]) }));
    # a raw client <-> our server (listened and adopted)
    my $raw_client = RawPeer->client(port => $plain, path => '/raw');
    my $adopt_listener = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0) or die "listen: $@";
    my $adopted_client = RawPeer->client(port => $adopt_listener->sockport);
    my $accepted;
    ok(run_until(sub { $accepted = $adopt_listener->accept }, 3), 'a socket to adopt');
    $sctx->adopt(fh => $accepted, recording($events{adopted} = {},
        on_connect => sub { $server_conn{adopted_client} = $_[0] }, on_message => $echo_or_fork));
    for my $p ([ raw_server => $raw_server ], [ raw_client => $raw_client ], [ adopted_client => $adopted_client ]) {
        my ($name, $peer) = @$p;
        $pair{$name} = { peer => $peer, send => sub { $peer->send_frame(payload => $_[0]) },
            got => sub { map { $_->[1] } $peer->messages } };
    }
    ok(run_until(sub {
        $raw_server->{open} && $raw_client->{open} && $adopted_client->{open}
            && $to_raw->is_connected && $pair{local}{conn}->is_connected && $pair{tls}{conn}->is_connected
            && $server_conn{raw_client} && $server_conn{adopted_client}
    }, 3), 'all pairs connected');

    # Each pair echoes $msg, nothing closed anywhere, no raw peer got a
    # close frame or lost its connection.
    my $all_fine = sub {
        my ($label, $msg) = @_;
        $pair{$_}{send}->($msg) for sort keys %pair;
        ok(run_until(sub { !grep { !grep { $_ eq $msg } $pair{$_}{got}->() } keys %pair }, 3),
            "$label: every pair still echoes") or diag(explain({ map { $_ => [ $pair{$_}{got}->() ] } keys %pair }));
        is_deeply({ map { $_ => [ grep { /^(?:close|error)$/ } @{ $events{$_}{order} || [] } ] } keys %events },
            { map { $_ => [] } keys %events }, "$label: no close or error anywhere");
        for my $name (qw(raw_server raw_client adopted_client)) {
            my $peer = $pair{$name}{peer};
            ok(!$peer->frames_of(8) && !$peer->{eof}, "$label: $name got no close frame and is still connected");
        }
    };

    # The child: exit (END blocks, global destruction) or exec a perl that
    # counts the sockets it inherited (it should get none).
    my $report = "$dir/exec-report";
    my $exec_counter = sub {
        open(STDOUT, '>', $report) or POSIX::_exit(126);
        exec($^X, '-e', 'print scalar grep { (readlink($_) // q()) =~ /^socket:/ } glob(q(/proc/self/fd/*))')
            or POSIX::_exit(127);
    };
    $in_callback_child = sub {
        my ($mode) = @_;
        $exec_counter->() if $mode eq 'exec';
        exit 0;    # from inside on_message
    };
    my %child = (
        exits       => sub { exit 0 },
        destroys    => sub {
            $_->DESTROY for $sctx, $cctx;
            undef $_ for $sctx, $cctx, $to_raw, $accepted;
            %server_conn = %pair = ();
            exit 0;
        },
        execs       => $exec_counter,
        # a worker: drops what it inherited, then uses a loop and a
        # context of its own to talk to the parent's listener
        works       => sub {
            $_->DESTROY for $sctx, $cctx;
            my $loop = EV::Loop->new;
            my $ctx  = EV::Websockets::Context->new(loop => $loop);
            my $ok;
            $ctx->connect(url => "ws://127.0.0.1:$for_workers/", on_connect => sub { $_[0]->send('worker') },
                on_message => sub { $ok = $_[1] eq 'worker'; $_[0]->close; $loop->break });
            my $limit = $loop->timer(5, 0, sub { $loop->break });
            $loop->run;
            POSIX::_exit($ok ? 0 : 1);
        },
    );

    my $round = 0;
    for my $mode (qw(exits destroys execs works), map { "in callback: $_" } qw(exit exec)) {
        $round++;
        unlink $report;
        my $pid;
        if ($mode =~ /^in callback: (\w+)/) {
            # a raw client asks our server to fork; the reply is queued
            # before the fork and must reach the peer once
            @forked = ();
            $raw_client->send_frame(payload => "fork:$1");
            run_until(sub { @forked }, 3);
            $pid = $forked[0];
        }
        else {
            # a message queued on each connection before the fork must
            # reach its peer once, from the parent
            $to_raw->send("queued $round");
            $server_conn{$_}->send("queued $round") for qw(raw_client adopted_client);
            $pid = fork // die "fork: $!";
            $child{$mode}->() if !$pid;
            $watch->($pid);
        }
        ok($pid, "$mode: forked") or next;
        ok(run_until(sub { defined $status{$pid} }, 8), "$mode: the child ended");
        is($status{$pid}, 0, "$mode: ... with status 0");
        if ($mode =~ /exec/) {
            is(slurp($report), '0', "$mode: the exec'd program inherited no socket") if -d '/proc/self/fd';
        }
        $all_fine->($mode, "after $round");
        if (my ($how) = $mode =~ /^in callback: (\w+)/) {
            is(scalar(grep { $_->[1] eq "fork:$how" } $raw_client->messages), 1,
                "$mode: the reply queued before the fork arrived once");
        }
        else {
            is(scalar(grep { $_->[1] eq "queued $round" } $pair{$_}{peer}->messages), 1,
                "$mode: $_ got the message queued before the fork once")
                for qw(raw_server raw_client adopted_client);
        }
    }
    $_->close for $to_raw, $pair{local}{conn}, $pair{tls}{conn};
    ok(run_until(sub { !grep { $_->state ne 'closed' } $to_raw, $pair{local}{conn}, $pair{tls}{conn} }, 3),
        'the parent closes its connections normally');
};

loop_and_bystander_ok('at the end');
is_deeply(\@warnings, [], 'no warnings') or diag(explain(\@warnings));
done_testing;
