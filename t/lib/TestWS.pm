package TestWS;

# Small helpers shared by the tests: an echo listener, bounded loop runs,
# and a local port that nothing listens on.

use strict;
use warnings;

use EV;
use EV::Websockets;
use IO::Socket::INET;
use Scalar::Util qw(weaken);
use Exporter 'import';

our @EXPORT = qw(echo_server http_answerer run_until run_for run_keeping_errsv closed_port recording connect_raw listen_raw raw_pair ws_roundtrip);

# A proxy picked up from the environment would capture the tests'
# connections to 127.0.0.1.
delete @ENV{qw(https_proxy http_proxy all_proxy HTTPS_PROXY HTTP_PROXY ALL_PROXY)};

# listen(port => 0) with an on_message that echoes every message back with
# the same type.  %extra adds or overrides listen options.  Returns the port.
sub echo_server {
    my ($ctx, %extra) = @_;
    return $ctx->listen(
        port       => 0,
        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            $is_binary ? $conn->send_binary($data) : $conn->send($data);
        },
        %extra,
    );
}

# Run the default loop until $cond->() returns true or $secs seconds have
# passed.  The condition is checked before the loop would block, so a
# callback only has to set a flag.  Returns true if the condition was met.
sub run_until {
    my ($cond, $secs) = @_;
    $secs //= 5;
    return 1 if $cond->();
    EV::now_update;    # setup may have taken a while since the loop last ran
    my $check   = EV::prepare(sub { EV::break if $cond->() });
    my $timeout = EV::timer($secs, 0, sub { EV::break });
    EV::run;
    return $cond->() ? 1 : 0;
}

# A server on 127.0.0.1 that answers every HTTP request with the bytes
# $answer->($request_target, $request_head), then closes (with keep_open,
# holds the connection open instead, reading no more: for a 101).  Returns
# its port; it lives as long as the process.
my @answerers;
sub http_answerer {
    my ($answer, %opt) = @_;
    my $listen = IO::Socket::INET->new(
        Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1,
    ) or die "listen: $!";
    my %clients;
    push @answerers, [ $listen, \%clients, EV::io($listen, EV::READ, sub {
        my $sock = $listen->accept or return;
        my $head = '';
        $clients{$sock} = EV::io($sock, EV::READ, sub {
            sysread($sock, $head, 4096, length $head) or return delete $clients{$sock};
            return unless $head =~ m{\A\w+ (\S+) HTTP/1\.1\r\n.*?\r\n\r\n}s;
            syswrite($sock, $answer->($1, $head));
            $opt{keep_open} ? ($clients{$sock} = $sock) : delete $clients{$sock};
        });
    }) ];
    return $listen->sockport;
}

# Our client (connect_raw) or our server (listen_raw), for $side 'client'
# or 'server', with %opt; the raw peer at the other end gets %$peer_opt.
# Returns ($peer, $ev).
sub raw_pair {
    my ($side, $peer_opt, %opt) = @_;
    my @r = ($side eq 'client' ? \&connect_raw : \&listen_raw)->(%opt, peer => $peer_opt);
    return @r[-2, -1];
}

# EV::run with $@ set to 'keep' around it; returns $@ afterwards, to show
# whether callbacks run by the loop clobbered it.
sub run_keeping_errsv {
    local $@ = 'keep';
    EV::run;
    return $@;
}

# Run the default loop for $secs seconds, e.g. to give callbacks that must
# not fire a chance to do so.
sub run_for {
    my ($secs) = @_;
    EV::now_update;
    my $timer = EV::timer($secs, 0, sub { EV::break });
    EV::run;
    return;
}

# A TCP port on 127.0.0.1 that was free a moment ago and has no listener.
sub closed_port {
    my $sock = IO::Socket::INET->new(
        Listen    => 1,
        LocalAddr => '127.0.0.1',
        LocalPort => 0,
        Proto     => 'tcp',
    ) or die "cannot bind a probe socket: $@";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

# Callback options that record every event of a connection in %$ev:
# $ev->{<what>} is a list of the argument lists (without $conn) of each call,
# e.g. $ev->{close} = [ [ 1000, 'bye' ] ], and $ev->{order} the names in the
# order they fired (connect message close error pong drain).  A user callback
# of the same name in %opt runs after the recording; other options pass
# through.  Returns the option list for connect or listen.  The callbacks
# hold $ev weakly: keep it alive for as long as events should be recorded.
sub recording {
    my ($ev, %opt) = @_;
    # Weak, so that %$ev may hold the context and connection without a cycle.
    weaken(my $wev = $ev);
    for my $what (qw(connect message close error pong drain)) {
        my $user = $opt{"on_$what"};
        $opt{"on_$what"} = sub {
            if ($wev) {
                push @{ $wev->{$what} }, [ @_[ 1 .. $#_ ] ];
                push @{ $wev->{order} }, $what;
            }
            $user->(@_) if $user;
        };
    }
    return %opt;
}

# A client connection, in its own context, to a fresh RawPeer server.
# peer => { ... } passes options to RawPeer->server; the rest goes to
# connect (through recording).  Returns ($conn, $peer, $ev); the context and
# the connection are also kept in $ev->{ctx} and $ev->{conn}, so that they
# live as long as $ev.
sub connect_raw {
    my (%opt) = @_;
    require RawPeer;
    my $peer = RawPeer->server(%{ delete $opt{peer} || {} });
    my $ev   = { ctx => EV::Websockets::Context->new };
    my $conn = $ev->{conn} = $ev->{ctx}->connect(
        url => 'ws://127.0.0.1:' . $peer->port . '/',
        recording($ev, %opt),
    );
    return ($conn, $peer, $ev);
}

# The mirror image: a listener, in its own context, and a RawPeer client
# connected to it.  peer => { ... } passes options to RawPeer->client; the
# rest goes to listen (through recording).  Returns ($peer, $ev); the
# context is in $ev->{ctx}, the server connection in $ev->{conn} once
# connected.
sub listen_raw {
    my (%opt) = @_;
    require RawPeer;
    my $peer_opt = delete $opt{peer} || {};
    my $ev       = { ctx => EV::Websockets::Context->new };
    my $user     = $opt{on_connect};
    weaken(my $wev = $ev);
    my $port = $ev->{ctx}->listen(
        port => 0,
        recording($ev, %opt, on_connect => sub { $wev->{conn} = $_[0] if $wev; $user->(@_) if $user }),
    );
    return (RawPeer->client(%$peer_opt, port => $port), $ev);
}

# One client round trip on the default loop: connect to $url from a fresh
# context, send $opt{message} (default "hello") once connected, wait (at most
# $opt{timeout} seconds, default 5) for the first message back or a failure,
# then close and wait for on_close.  Other options go to connect.  Returns a
# hash ref: connected (1), headers (on_connect's hash), protocol
# (get_protocol inside on_connect), reply, elapsed (seconds from connect to
# the reply), error, close ([code, reason]).
sub ws_roundtrip {
    my ($url, %opt) = @_;
    my $message = delete $opt{message} // 'hello';
    my $secs    = delete $opt{timeout} // 5;
    my %r;
    my $ctx = EV::Websockets::Context->new;
    my $t0  = EV::time;
    my $conn = $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub {
            my ($conn, $h) = @_;
            @r{qw(connected headers protocol)} = (1, $h, $conn->get_protocol);
            $conn->send($message);
        },
        on_message => sub { $r{elapsed} //= EV::time - $t0; $r{reply} //= $_[1] },
        on_error   => sub { $r{error} //= $_[1] },
        on_close   => sub { $r{close} //= [ $_[1], $_[2] ] },
    );
    run_until(sub { defined $r{reply} || defined $r{error} || $r{close} }, $secs);
    if ($r{connected} && !$r{close}) {
        $conn->close;
        run_until(sub { $r{close} }, 2);
    }
    return \%r;
}

# ---- Helpers for the proxy tests (t/client/proxies.t) ----

push @EXPORT, qw(with_proxy_env ctx_roundtrip find_program spawn_daemon wait_for_port stop_daemon
    stop_all_daemons slurp need_peer messages_match spawn_logged printed_port);

# Every environment variable that chooses a proxy or exempts hosts from it.
my @PROXY_ENV = qw(https_proxy http_proxy all_proxy HTTPS_PROXY HTTP_PROXY ALL_PROXY no_proxy NO_PROXY);

# Run $code with exactly the variables of %$vars set among @PROXY_ENV (the
# others removed; an undef value removes the variable too), then restore
# the previous environment, also when $code dies.  Returns what $code
# returned.
sub with_proxy_env {
    my ($vars, $code) = @_;
    my @names = (@PROXY_ENV, keys %$vars);
    my %saved = map { exists $ENV{$_} ? ($_ => $ENV{$_}) : () } @names;
    delete @ENV{@names};
    $ENV{$_} = $vars->{$_} for grep { defined $vars->{$_} } keys %$vars;
    my @r;
    my $ok  = eval { @r = $code->(); 1 };
    my $err = $@;
    delete @ENV{@names};
    @ENV{ keys %saved } = values %saved;
    die $err unless $ok;
    return wantarray ? @r : $r[-1];
}

# Like ws_roundtrip, but from the given context: connect to $url, send
# $opt{message} (default "hello") on connect, wait (at most $opt{timeout}
# seconds, default 5) for the first message back or a failure, close, and
# after a failure give late callbacks a moment to fire.  Other options go
# to connect.
# Returns a hash ref: connected (count), reply, errors (every on_error
# text), error_states (the state inside each on_error), closes (every
# on_close's [code, reason]), state (the connection's state at the end).
sub ctx_roundtrip {
    my ($ctx, $url, %opt) = @_;
    my $message = delete $opt{message} // 'hello';
    my $secs    = delete $opt{timeout} // 5;
    my %r = (connected => 0, errors => [], error_states => [], closes => []);
    my $conn = $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub { $r{connected}++; $_[0]->send($message) },
        on_message => sub { $r{reply} //= $_[1] },
        on_error   => sub { push @{ $r{errors} }, $_[1]; push @{ $r{error_states} }, $_[0]->state },
        on_close   => sub { push @{ $r{closes} }, [ $_[1], $_[2] ] },
    );
    run_until(sub { defined $r{reply} || @{ $r{errors} } || @{ $r{closes} } }, $secs);
    if ($r{connected} && !@{ $r{closes} } && !@{ $r{errors} }) {
        $conn->close;
        run_until(sub { @{ $r{closes} } || @{ $r{errors} } }, 2);
    }
    # After a failure, a late or duplicate callback would show up here.
    run_for(0.1) if @{ $r{errors} } || !@{ $r{closes} };
    $r{state} = $conn->state;
    return \%r;
}

# The path of an executable named $name in $PATH, /usr/sbin or /usr/bin,
# or undef.
sub find_program {
    my ($name) = @_;
    for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/bin', '/usr/local/bin') {
        next if $dir eq '';
        return "$dir/$name" if -f "$dir/$name" && -x _;
    }
    return undef;
}

# Every daemon spawn_daemon started; any still running at exit is killed.
my @spawned;
END { kill 'KILL', $_->{pid} for grep { !defined $_->{status} } @spawned }

# Start @$cmd in the background, stdin from /dev/null, stdout and stderr
# appended to $log.  Returns a hash ref: pid, log, and status (the wait
# status, set by an EV::child watcher once the process has exited while the
# default loop runs).
sub spawn_daemon {
    my ($cmd, $log) = @_;
    require POSIX;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log) or POSIX::_exit(126);
        open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
        exec { $cmd->[0] } @$cmd or POSIX::_exit(127);
    }
    my $d = { pid => $pid, log => $log, cmd => "@$cmd" };
    weaken(my $wd = $d);
    $d->{watcher} = EV::child($pid, 0, sub { $wd->{status} = $_[0]->rstatus if $wd; $_[0]->stop });
    push @spawned, $d;
    return $d;
}

# spawn_daemon(@$cmd) with its output in a log file of its own in $dir,
# named after the script ($cmd->[1]) or program.  Returns ($daemon, $log).
my $logs = 0;
sub spawn_logged {
    my ($dir, $cmd) = @_;
    (my $name = $cmd->[1] // $cmd->[0]) =~ s{.*/}{};
    my $log = "$dir/$name-" . ++$logs . '.log';
    return (spawn_daemon($cmd, $log), $log);
}

# The port a server started with spawn_logged prints as the first line of
# its log, once it is there (at most $secs seconds, default 10; undef if it
# did not come or the server died).
sub printed_port {
    my ($d, $log, $secs) = @_;
    my $port;
    my $poll = EV::timer(0, 0.02, sub { $port = $1 if slurp($log) =~ /\A(\d+)\n/ });
    run_until(sub { defined $port || defined $d->{status} }, $secs // 10);
    return $port;
}

# ---- Helpers for the interoperability tests (t/interop) ----

push @EXPORT, qw(start_printed_server run_to_end json_lines);

# Start @$cmd (a server that prints its port first) with spawn_logged in
# $dir and wait for the port (printed_port, 10 s).  Returns ($daemon,
# $port, $log), the port undef, and a diagnostic naming $label (default:
# the command) printed, if it did not come up.
sub start_printed_server {
    my ($dir, $cmd, $label) = @_;
    my ($d, $log) = spawn_logged($dir, $cmd);
    my $port = printed_port($d, $log);
    Test::More::diag(($label // "@$cmd") . ' did not start: ' . slurp($log)) unless defined $port;
    return ($d, $port, $log);
}

# Start @$cmd with spawn_logged in $dir and run the default loop until it
# exits, at most $secs seconds, then stop it (stop_daemon) if it has not.
# Returns (its wait status, its whole output, the log's path).
sub run_to_end {
    my ($dir, $cmd, $secs) = @_;
    my ($d, $log) = spawn_logged($dir, $cmd);
    run_until(sub { defined $d->{status} }, $secs);
    my $status = stop_daemon($d);
    return ($status, slurp($log), $log);
}

# The JSON objects among the lines of $text (UTF-8 JSON, one object per
# line), decoded; lines that do not decode are left out.
sub json_lines {
    my ($text) = @_;
    require JSON::PP;
    return map { eval { JSON::PP::decode_json($_) } // () } $text =~ /^(\{.*\})$/mg;
}

# Stop every daemon started so far (see stop_daemon); true if each ended.
sub stop_all_daemons {
    my $ended = grep { defined stop_daemon($_) } @spawned;
    return $ended == @spawned;
}

# The contents of a file (empty if it cannot be read).
sub slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return '';
    local $/;
    return scalar <$fh>;
}

# Check that @$got ([data, is_binary] each) starts with the messages of
# @$want ([name, payload, is_binary] each), in order.  Payloads are
# compared with eq, so that a mismatch does not dump a megabyte.
sub messages_match {
    my ($label, $want, $got) = @_;
    for my $i (0 .. $#$want) {
        my ($what, $payload, $binary) = @{ $want->[$i] };
        my ($data, $bin) = @{ $got->[$i] || [] };
        Test::More::ok(defined $data && $data eq $payload, "$label: $what echoed intact")
            or Test::More::diag('got ' . (defined $data ? length($data) . ' bytes' : 'nothing')
                . ', sent ' . length($payload));
        Test::More::is($bin, $binary, "$label: $what comes back " . ($binary ? 'binary' : 'text'));
    }
}

# $found (a peer's path) if true.  Otherwise the test cannot run: it skips
# with $why on a developer machine, and bails out in CI (CI set), where no
# peer test may be skipped.  $what names the peer.
sub need_peer {
    my ($what, $found, $why) = @_;
    return $found if $found;
    Test::More::BAIL_OUT("$what is needed, and CI must run the tests with it: $why") if $ENV{CI};
    Test::More::plan(skip_all => $why);
}

# Wait, polling with an EV timer, until something accepts TCP connections on
# 127.0.0.1:$port, at most $secs seconds (default 5), giving up early if
# daemon $d (optional) exits.  Returns true once the port accepted.
sub wait_for_port {
    my ($port, $secs, $d) = @_;
    my $up;
    my $probe = sub {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
        $up = 1 if $sock;
    };
    $probe->();
    return 1 if $up;
    my $poll = EV::timer(0.02, 0.02, $probe);
    run_until(sub { $up || ($d && defined $d->{status}) }, $secs // 5);
    return $up ? 1 : 0;
}

# Stop daemon $d: SIGTERM, wait (bounded) for it to exit, then SIGKILL if it
# is still there.  Returns its wait status (undef if it could not be seen).
sub stop_daemon {
    my ($d) = @_;
    return $d->{status} if defined $d->{status};
    kill 'TERM', $d->{pid};
    run_until(sub { defined $d->{status} }, 3);
    if (!defined $d->{status}) {
        kill 'KILL', $d->{pid};
        run_until(sub { defined $d->{status} }, 2);
    }
    return $d->{status};
}

# The upgrade request a PSGI server read, rebuilt from its env as the
# POD's "adopt" shows, for adopt's initial_data.
push @EXPORT, 'upgrade_request';

sub upgrade_request {
    my ($env) = @_;
    my $hdr = 'GET ' . ($env->{REQUEST_URI} // '/') . " HTTP/1.1\r\n";
    for (sort keys %$env) {
        next unless /^HTTP_(.+)/;
        (my $h = $1) =~ s/_/-/g;
        $hdr .= "$h: $env->{$_}\r\n";
    }
    return "$hdr\r\n";
}

1;
