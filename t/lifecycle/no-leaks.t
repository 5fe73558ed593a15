# Proves: every way a context, listener or connection is made and ends leaves
# no Perl value behind.
# POD: EV::Websockets, "Destroying a context" and "PERFORMANCE AND MEMORY".
#
# Leak tests with Test::LeakTrace: every way a context, a listener or a
# connection is created and ends, run to completion several times inside
# no_leaks_ok, must leave no Perl value (SV) behind.  That covers what the
# XS glue allocates (connection objects, callbacks and the closures they
# capture, header hashes, callback arguments, croak messages) and anything
# the Rust core keeps alive through them: a connection whose core state
# outlived its end would keep its object and callbacks.
#
# no_leaks_ok runs its block once untraced before counting (first-use
# allocations such as method caches and EV's own structures are not leaks),
# then counts the SVs alive before and after a second run; on failure it
# runs the block again under leaktrace and prints where each leaked SV was
# allocated.  Each block runs its scenario $ROUNDS times, so a per-run leak
# shows as a multiple of $ROUNDS; each run waits (bounded) until both ends of
# every connection are gone, and counts as completed only if it saw what it
# expected, so a scenario that silently stopped early cannot pass as
# leak-free.
#
# The contexts, listeners and sockets that several scenarios share are made
# once, outside the traced blocks: connections that end while their context
# lives on must not leave anything in it.  Scenarios that create and destroy
# contexts do so inside the block.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Socket qw(getaddrinfo getnameinfo NI_NUMERICHOST NIx_NOSERV SOCK_STREAM);
use lib 't/lib';
use TestWS;
use RawPeer;
use EchoCycle;

BEGIN {
    # At compile time: no_leaks_ok takes a block.
    my $have = eval { require Test::LeakTrace; Test::LeakTrace->import; 1 };
    need_peer('Test::LeakTrace', $have, 'Test::LeakTrace is not installed (Debian: libtest-leaktrace-perl)');
}

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $ROUNDS = 5;
my $CERTS  = 't/certs';

# ---- Shared fixtures (made outside every traced block) ----

# Counters bumped by the shared listeners.  Their keys exist from the start,
# so that bumping them inside a traced block allocates nothing.
my %server = (closed => 0, pongs => 0, handshakes => 0, errors => 0, reason => '');
my @count_close = (on_close => sub { $server{closed}++ });

my $srv = EV::Websockets::Context->new;    # every shared listener
my $cli = EV::Websockets::Context->new;    # the client side of most scenarios

my $echo_url = 'ws://127.0.0.1:' . echo_server($srv, host => '127.0.0.1', @count_close) . '/';

# A listener with every option and every callback.
my $full_port = $srv->listen(
    port              => 0,
    host              => '127.0.0.1',
    name              => 'full',
    protocol          => [ 'leak', 'other' ],
    headers           => { 'X-Listener' => 'full' },
    max_message_size  => 1 << 20,
    close_timeout     => 2,
    handshake_timeout => 5,
    on_handshake      => sub { $server{handshakes}++; return { 'X-Path' => $_[0]{Path} } },
    on_connect        => sub { my ($c, $h) = @_; $c->stash->{path} = $h->{Path}; $c->send_ping('from server') },
    on_message        => sub { my ($c, $data, $bin) = @_; $bin ? $c->send_binary($data) : $c->send($data) },
    on_pong           => sub { $server{pongs}++ },
    on_drain          => sub { },
    on_error          => sub { $server{errors}++ },
    on_close          => sub { $server{closed}++; $server{reason} = $_[2] // '' },
);

my $deflate_url  = 'ws://127.0.0.1:' . echo_server($srv, host => '127.0.0.1', compression => 1, @count_close) . '/';
my $takeover_url = 'ws://127.0.0.1:'
    . echo_server($srv, host => '127.0.0.1', compression => 1, context_takeover => 1, @count_close) . '/';
my $tls_url = 'wss://127.0.0.1:'
    . echo_server($srv, host => '127.0.0.1', ssl_cert => "$CERTS/server.pem", ssl_key => "$CERTS/server-key.pem",
        @count_close) . '/';
my $tls_cli = EV::Websockets::Context->new(ssl_ca => "$CERTS/ca.pem");
my $dying_url = 'ws://127.0.0.1:' . $srv->listen(port => 0, host => '127.0.0.1', on_handshake => sub { die "no entry\n" }) . '/';

# A plain TCP listener: for adopt, and as a server that never answers the
# upgrade (a client connected to it stays "connecting").
my $raw = IO::Socket::INET->new(
    Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Blocking => 0,
) or die "listen: $@";
my $raw_url     = 'ws://127.0.0.1:' . $raw->sockport . '/';
my $refused_url = 'ws://127.0.0.1:' . closed_port() . '/';

# Does 'localhost' resolve to 127.0.0.1 (the shared listeners bind only that)?
my $localhost_v4 = do {
    my ($err, @addrs) = getaddrinfo('localhost', 0, { socktype => SOCK_STREAM });
    !$err && grep { my ($e, $ip) = getnameinfo($_->{addr}, NI_NUMERICHOST, NIx_NOSERV); !$e && $ip eq '127.0.0.1' } @addrs;
};

# ---- Helpers ----

# The test itself: $scenario->() must return true when its run went as
# expected.  It runs $ROUNDS times inside no_leaks_ok.
sub leak_free {
    my ($name, $scenario) = @_;
    my ($runs, $completed) = (0, 0);
    no_leaks_ok {
        for (1 .. $ROUNDS) { $runs++; $completed++ if $scenario->() }
    } "$name: $ROUNDS runs leave no SV behind";
    is($completed, $runs, "$name: every run completed as expected ($runs runs, the warm-up included)");
}

# Connect from $ctx to $url (%opt goes to connect), call $start->($conn) once
# connected, close (1000) once $want messages came back, and wait until the
# client's on_close or on_error and, unless $server is false, until a shared
# listener saw its end of the connection.  Returns a hash ref: headers
# (on_connect's), messages ([ data, is_binary ] each), error, close
# ([ code, reason ]), or undef if the wait timed out.
sub exchange {
    my ($ctx, $url, $start, $want, %opt) = @_;
    my $server = delete($opt{server}) // 1;
    my $before = $server{closed};
    my %r      = (messages => []);
    $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub { $r{headers} = $_[1]; $start->($_[0]) },
        on_message => sub { push @{ $r{messages} }, [ @_[1, 2] ]; $_[0]->close(1000) if @{ $r{messages} } == $want },
        on_error   => sub { $r{error} = $_[1] },
        on_close   => sub { $r{close} = [ @_[1, 2] ] },
    );
    run_until(sub { ($r{close} || defined $r{error} && !$r{headers}) && (!$server || $server{closed} > $before) })
        or return undef;
    return \%r;
}

# One echo_cycle from $ctx to $url; waits for both ends.  %opt goes to
# echo_cycle (message, connect options); keep => 1 holds the connection
# object until the end instead of dropping it at once.  True if the echo
# came back and the close was clean.
sub echo_once {
    my ($ctx, $url, %opt) = @_;
    my $keep   = delete $opt{keep};
    my $before = $server{closed};
    my $ok;
    my $conn = echo_cycle($ctx, $url, sub { $ok = $_[0] ? 1 : 0 }, %opt);
    undef $conn unless $keep;
    return run_until(sub { defined $ok && $server{closed} > $before }) && $ok;
}

# Accept the next connection on $raw; with $want_head, also read the
# client's request head from it.  Returns ($sock, $head), or () on timeout.
sub accept_raw {
    my ($want_head) = @_;
    my ($sock, $head) = (undef, '');
    my $w = EV::io($raw, EV::READ, sub { $sock //= $raw->accept });
    run_until(sub { $sock }) or return;
    undef $w;
    $sock->blocking(0);
    return ($sock, undef) unless $want_head;
    my $r = EV::io($sock, EV::READ, sub { sysread($sock, $head, 4096, length $head) or $_[0]->stop });
    run_until(sub { index($head, "\r\n\r\n") >= 0 }) or return;
    return ($sock, $head);
}

# Wait until the other end of $sock has closed (reading gives EOF or an
# error).  True if it did.
sub wait_eof {
    my ($sock) = @_;
    my $eof;
    my $w = EV::io($sock, EV::READ, sub {
        my $n = sysread($sock, my $buf, 4096);
        $eof = 1 if defined $n ? !$n : !($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
    });
    return run_until(sub { $eof });
}

# The croak message of $code ('' if it did not die).
sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# True if every [ $code, $re ] of @_ croaks with a message matching $re
# (a mismatch is shown).
sub all_croak {
    my $ok = 1;
    for (@_) {
        my ($code, $re) = @$_;
        my $err = croak_of($code);
        next if $err =~ $re;
        diag("expected a croak matching $re, got: " . ($err eq '' ? 'none' : $err));
        $ok = 0;
    }
    return $ok;
}

# ---- Contexts and listeners ----

leak_free('a context, created and destroyed', sub {
    my @ctx = (
        EV::Websockets::Context->new,
        EV::Websockets::Context->new(loop => EV::default_loop, proxy => '', ssl_init => 1),
        EV::Websockets::Context->new(loop => EV::Loop->new),
        EV::Websockets::Context->new(proxy => '127.0.0.1', proxy_port => 3128, ssl_ca => "$CERTS/ca.pem"),
        EV::Websockets::Context->new(ssl_cert => "$CERTS/client.pem", ssl_key => "$CERTS/client-key.pem"),
    );
    $ctx[0]->DESTROY;    # an explicit DESTROY, then the real one
    return @ctx == 5;
});

leak_free('a context with listeners, destroyed', sub {
    my $ctx   = EV::Websockets::Context->new;
    my @ports = (
        echo_server($ctx, host => '127.0.0.1'),
        echo_server($ctx, compression => 1, protocol => [qw(a b)], headers => { 'X-A' => 1 },
            on_handshake => sub { 1 }, name => 'second', ping_interval => 5, reuse_port => 1),
        echo_server($ctx, host => '127.0.0.1', ssl_cert => "$CERTS/server.pem", ssl_key => "$CERTS/server-key.pem",
            ssl_ca => "$CERTS/ca.pem"),
    );
    return 3 == grep { $_ > 0 } @ports;
});

leak_free('two contexts destroyed while their connection is open', sub {
    my $sctx = EV::Websockets::Context->new;
    my $cctx = EV::Websockets::Context->new;
    my ($server_up, $client_up, $fired);
    my $port = echo_server($sctx, host => '127.0.0.1', on_connect => sub { $server_up = 1 });
    my $conn;
    # The callbacks capture $conn: destroying the context must release them
    # although none of them fires.
    $conn = $cctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $client_up = $conn->state },
        on_close   => sub { $fired = $conn },
        on_error   => sub { $fired = $conn },
    );
    run_until(sub { $server_up && $client_up }) or return 0;
    undef $sctx;
    undef $cctx;
    return $client_up eq 'connected' && $conn->state eq 'closed' && !$fired;
});

# ---- Connections that open, echo and close ----

leak_free('echo and close, connection held or dropped at once', sub {
    return echo_once($cli, $echo_url, keep => 1)
        && echo_once($cli, $echo_url)
        && echo_once(EV::Websockets::Context->new, $echo_url);    # a context of its own, gone after
});

leak_free('every callback set, closures capturing the connection', sub {
    my ($before, $pongs_before) = @server{qw(closed pongs)};
    my %got = (pongs => 0, messages => []);
    my $conn;
    # Each callback refers to $conn: connection -> callback -> $conn ->
    # connection is a cycle the module must break when the connection ends.
    $conn = $cli->connect(
        url              => "ws://127.0.0.1:$full_port/path?q=1",
        protocol         => 'leak',
        headers          => { 'X-Client' => 'leak test', 'User-Agent' => 'leaktrace' },
        max_message_size => 1 << 20,
        connect_timeout  => 5,
        close_timeout    => 2,
        compression      => 0,
        on_connect       => sub {
            $got{path}     = $_[1]{'X-Path'};
            $got{protocol} = $conn->get_protocol;
            $got{peer}     = $conn->peer_address;
            $got{listed}   = grep { $_ == $conn } $cli->connections;
            $conn->stash->{started} = 1;
            $conn->pause_recv;
            $conn->resume_recv;
            $conn->send_ping('from client');
            $conn->send('text');
            $conn->send_binary("\0binary");
            $got{queued} = $conn->send_queue_size;
        },
        on_message => sub {
            push @{ $got{messages} }, $_[1];
            $conn->close(1000, 'done') if @{ $got{messages} } == 2;
        },
        on_pong  => sub { $got{pongs}++ },
        on_drain => sub { $got{drained}++ },
        on_error => sub { $got{error} = $_[1] },
        on_close => sub { @got{qw(code reason state)} = ($_[1], $_[2], $conn->state) },
    );
    run_until(sub { defined $got{code} && $server{closed} > $before }) or return 0;
    return $got{path} eq '/path' && $got{protocol} eq 'leak' && $got{peer} eq '127.0.0.1' && $got{listed} == 1
        && $got{queued} > 0 && $got{pongs} == 1 && $server{pongs} > $pongs_before
        && "@{ $got{messages} }" eq "text \0binary" && $got{code} == 1000 && $server{reason} eq 'done'
        && $got{state} eq 'closed' && !defined $got{error} && $conn->stash->{started};
});

leak_free('adopt of an accepted socket, with and without initial_data', sub {
    for my $with_head (0, 1) {
        my $client_ok;
        echo_cycle($cli, $raw_url, sub { $client_ok = $_[0] ? 1 : 0 });
        my ($sock, $head) = accept_raw($with_head) or return 0;
        my %s;
        my $sconn;
        # The callbacks capture the adopted connection, as the client's do above.
        $sconn = $srv->adopt(
            fh => $sock,
            (defined $head ? (initial_data => $head) : ()),
            max_message_size => 1024,
            on_handshake     => sub { 1 },
            on_connect       => sub { $s{connected} = $_[0]->state },    # may run inside adopt
            on_message       => sub { $sconn->send($_[1]) },
            on_error         => sub { $s{error} = $_[1] },
            on_close         => sub { $s{closed} = $sconn->state },
        );
        undef $sock;    # the connection keeps the handle as long as it needs it
        run_until(sub { defined $client_ok && $s{closed} }) or return 0;
        return 0 unless $client_ok && $s{connected} eq 'connected' && !defined $s{error};
    }
    return 1;
});

leak_free('send_fragment, also with a fragmented message open at close', sub {
    my $r = exchange($cli, $echo_url, sub {
        my ($c) = @_;
        $c->send_fragment('frag', 0, 0);
        $c->send_ping('between fragments');
        $c->send_fragment('men', 0, 0);
        $c->send_fragment('ted', 0, 1);
        $c->send_fragment("\x01", 1, 0);
        $c->send_fragment("\x02", 1, 1);
    }, 2) or return 0;
    my $got = join ',', map { "$_->[0]:$_->[1]" } @{ $r->{messages} };
    # close ends the open message with an empty final fragment.
    my $r2 = exchange($cli, $echo_url, sub { $_[0]->send_fragment('left open', 0, 0); $_[0]->close(1000) }, 0)
        or return 0;
    return $got eq "fragmented:0,\x01\x02:1" && $r->{close}[0] == 1000 && $r2->{close}[0] == 1000;
});

leak_free('pings: explicit, unsolicited pongs, keepalive', sub {
    my ($pongs, $pongs_before, $before, $code) = (0, $server{pongs}, $server{closed});
    my $conn = $cli->connect(
        url           => "ws://127.0.0.1:$full_port/",
        ping_interval => 0.02,
        ping_timeout  => 2,
        on_connect    => sub { $_[0]->send_pong('unsolicited'); $_[0]->send_ping('explicit'); $_[0]->send_ping(undef) },
        on_pong       => sub { $pongs++ },
        on_close      => sub { $code = $_[1] },
        on_error      => sub { $code = -1 },
    );
    # Two explicit pings, then at least one keepalive ping after 20 ms of
    # silence; the server counts the unsolicited pong and the pong to its ping.
    run_until(sub { $pongs >= 3 && $server{pongs} >= $pongs_before + 2 }) or return 0;
    $conn->close;
    run_until(sub { defined $code && $server{closed} > $before }) or return 0;
    return $code == 1000;
});

leak_free('compression (listen compression => 1, with and without context takeover)', sub {
    my @messages = ([ 'x' x 1000, 0 ], [ join('', map { chr } 0 .. 255) x 8, 1 ], [ 'short', 0 ]);
    for my $url ($deflate_url, $takeover_url) {
        my $r = exchange($cli, $url, sub {
            my ($c) = @_;
            $_->[1] ? $c->send_binary($_->[0]) : $c->send($_->[0]) for @messages;
        }, scalar @messages) or return 0;
        return 0 unless ($r->{headers}{'Sec-WebSocket-Extensions'} // '') =~ /permessage-deflate/;
        return 0 unless join(',', map { "@$_" } @{ $r->{messages} }) eq join(',', map { "@$_" } @messages);
        return 0 unless $r->{close}[0] == 1000;
    }
    return 1;
});

leak_free('TLS (wss:// to a TLS listener, verified)', sub {
    return echo_once($tls_cli, $tls_url, message => 'over TLS');
});

SKIP: {
    skip 'localhost does not resolve to 127.0.0.1', 2 unless $localhost_v4;
    my $port = ($echo_url =~ /:(\d+)/)[0];
    leak_free('a host name resolved off the loop', sub { echo_once($cli, "ws://localhost:$port/") });
}

# ---- Connections that fail or are abandoned ----

leak_free('connection refused, connection held or dropped at once', sub {
    for my $keep (1, 0) {
        my ($err, $other, $state);
        my $conn;
        # on_error captures $conn (a cycle while it is held).
        $conn = $cli->connect(
            url        => $refused_url,
            on_error   => sub { $err = $_[1]; $state = $conn ? $conn->state : 'closed' },
            on_connect => sub { $other = 1 },
            on_close   => sub { $other = 1 },
        );
        undef $conn unless $keep;
        run_until(sub { defined $err }) or return 0;
        return 0 unless $err =~ /^connect failed: / && $state eq 'closed' && !$other;
    }
    return 1;
});

leak_free('a connection dropped before it connects (context destroyed; connect timeout)', sub {
    # The server never answers: the client stays "connecting" until its
    # context goes, which must close its socket without any callback.
    # The callbacks capture $conn, which stays held: destroying the context
    # must release them.
    my $fired = 0;
    my $ctx   = EV::Websockets::Context->new;
    my $conn;
    $conn = $ctx->connect(
        url        => $raw_url,
        on_connect => sub { $fired++ if $conn },
        on_error   => sub { $fired++ if $conn },
        on_close   => sub { $fired++ if $conn },
    );
    my ($sock) = accept_raw(1) or return 0;    # the request arrived; no answer comes
    my $state = $conn->state;
    undef $ctx;
    wait_eof($sock) or return 0;
    $state .= ' ' . $conn->state;

    # The same, ended by connect_timeout instead.
    my $err;
    $cli->connect(url => $raw_url, connect_timeout => 0.05, on_error => sub { $err = $_[1] });
    my ($sock2) = accept_raw(1) or return 0;
    run_until(sub { defined $err }) or return 0;
    wait_eof($sock2) or return 0;
    return $state eq 'connecting closed' && !$fired && $err eq 'connect timeout';
});

leak_free('errors on open connections (ping timeout, protocol error, bad UTF-8, TCP lost, size limit)', sub {
    my @cases = (
        [ { auto_pong => 0 }, [ ping_interval => 0.02, ping_timeout => 0.02 ], qr/^ping timeout\z/, 1011 ],
        [ { on_open => sub { $_[0]->send_frame(opcode => 1, rsv => 4, payload => 'x') } }, [], qr/^protocol error: /, 1002 ],
        [ { on_open => sub { $_[0]->send_frame(opcode => 1, payload => "\xff") } }, [], qr/^invalid UTF-8 in text message\z/, 1007 ],
        [ { on_open => sub { $_[0]->close_tcp } }, [], undef, 1006 ],
    );
    for my $case (@cases) {
        my ($peer_opt, $connect_opt, $error_re, $code) = @$case;
        my $peer = RawPeer->server(%$peer_opt);
        my $r = exchange($cli, 'ws://127.0.0.1:' . $peer->port . '/', sub { }, 1, @$connect_opt, server => 0)
            or return 0;
        return 0 unless $r->{close} && $r->{close}[0] == $code;
        return 0 unless defined $error_re ? ($r->{error} // '') =~ $error_re : !defined $r->{error};
    }
    # An echo over the client's max_message_size: 1009, and the server sees the end.
    my $r = exchange($cli, $echo_url, sub { $_[0]->send('y' x 100) }, 1, max_message_size => 10) or return 0;
    return $r->{close}[0] == 1009 && $r->{error} eq 'message exceeds max_message_size';
});

leak_free('callbacks that die, and an unknown option', sub {
    my $warnings = 0;
    local $SIG{__WARN__} = sub { $warnings++ if $_[0] =~ /^EV::Websockets: (exception in|unknown option)/ };
    my ($messages, $code, $err) = (0);
    my $before = $server{closed};
    $cli->connect(
        url        => $echo_url,
        bogus      => 1,
        on_connect => sub { $_[0]->send('a'); $_[0]->send('b'); die "in connect\n" },
        on_message => sub { $_[0]->close if ++$messages == 2; die [ 'an', 'object' ] },
        on_close   => sub { $code = $_[1]; die "in close\n" },
    );
    run_until(sub { defined $code && $server{closed} > $before }) or return 0;
    # on_handshake dies: the client is refused with 403.
    $cli->connect(url => $dying_url, on_error => sub { $err = $_[1]; die "in error\n" });
    run_until(sub { defined $err }) or return 0;
    return $code == 1000 && $messages == 2 && $err =~ /^handshake failed: HTTP 403/ && $warnings == 7;
});

# ---- Croaks ----

my $dead = EV::Websockets::Context->new;
$dead->DESTROY;
open(my $file, '<', $0) or die "open $0: $!";
my $closed_sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die "listen: $@";
close $closed_sock;
my $echo_port = ($echo_url =~ /:(\d+)/)[0];
my @context_croaks = (
    [ sub { $cli->connect },                                                  qr/^url parameter is required at / ],
    [ sub { $cli->connect('url') },                                           qr/^odd number of options: key 'url' has no value at / ],
    [ sub { $cli->connect(url => 'http://127.0.0.1/') },                      qr/^URL must start with ws:\/\/ or wss:\/\/ at / ],
    [ sub { $cli->connect(url => 'ws://127.0.0.1:0/') },                      qr/^connect: invalid port in url / ],
    [ sub { $cli->connect(url => 'ws://u:p@127.0.0.1/') },                    qr/^connect: credentials in url are not supported/ ],
    [ sub { $cli->connect(url => $echo_url, on_message => 'not code') },      qr/^on_message must be a code reference at / ],
    [ sub { $cli->connect(url => $echo_url, headers => []) },                 qr/^headers must be a hash reference at / ],
    [ sub { $cli->connect(url => $echo_url, headers => { Upgrade => 'x' }) }, qr/^headers: / ],
    [ sub { $cli->connect(url => $echo_url, headers => { 'X-A' => "a\r\nb" }) }, qr/^headers: / ],
    [ sub { $srv->listen(port => 70000) },                                    qr/^listen: port must be 0-65535 at / ],
    [ sub { $srv->listen(port => 0, name => 'default') },                     qr/^listen: vhost name 'default' is reserved at / ],
    [ sub { $srv->listen(port => 0, name => undef) },                         qr/^listen: option 'name' must be a defined string at / ],
    [ sub { $srv->listen(port => 0, protocol => {}) },                        qr/^protocol must be a name or an array reference of names at / ],
    [ sub { $srv->listen(port => 0, ssl_cert => "$CERTS/server.pem") },       qr/^listen: ssl_cert and ssl_key must both be set/ ],
    [ sub { $srv->listen(port => $echo_port, host => '127.0.0.1') },          qr/^Failed to create vhost for listening: / ],
    [ sub { $srv->listen(port => 0, ssl_cert => "$CERTS/none.pem", ssl_key => "$CERTS/none.pem") }, qr/^Failed to create vhost for listening: / ],
    [ sub { $srv->adopt },                                                    qr/^fh parameter is required at / ],
    [ sub { $srv->adopt(fh => 'NoSuchHandle') },                              qr/^Bad filehandle: NoSuchHandle at / ],
    [ sub { $srv->adopt(fh => $closed_sock) },                                qr/^Invalid filehandle at / ],
    [ sub { $srv->adopt(fh => $file) },                                       qr/^adopt: file handle is not a socket at / ],
    [ sub { $srv->adopt(fh => $raw) },                                        qr/^adopt: file handle is a listening socket at / ],
    [ sub { $dead->connect(url => $echo_url) },                               qr/^Context has been destroyed at / ],
    [ sub { $dead->listen(port => 0) },                                       qr/^Context has been destroyed at / ],
    [ sub { EV::Websockets::Context->new(loop => 'not a loop') },             qr/EV::Loop/ ],
    [ sub { EV::Websockets::Context->new(ssl_cert => "$CERTS/client.pem") },  qr/^Failed to create context: / ],
    [ sub { EV::Websockets::Context->new(ssl_cert => "$CERTS/none.pem", ssl_key => "$CERTS/none.pem") }, qr/^Failed to create context: / ],
    [ sub { EV::Websockets::Context::connect(bless({}, 'Other'), url => $echo_url) }, qr/is not of type EV::Websockets::Context/ ],
    [ sub { EV::Websockets::Connection::send(bless({}, 'Other'), 'x') },      qr/^self is not of type EV::Websockets::Connection at / ],
);

# Croaks of an open connection (run inside on_connect) and of a closed one.
my @open_croaks = (
    [ sub { $_[0]->send("\xff") },                           qr/^send: text message is not valid UTF-8/ ],
    [ sub { $_[0]->close(999) },                             qr/^close: invalid close code 999 / ],
    [ sub { $_[0]->close(1000, "\xff") },                    qr/^close: reason is not valid UTF-8 at / ],
    [ sub { $_[0]->send_fragment('a', 0, 0); $_[0]->send('x') }, qr/^Cannot send while a fragmented message is in progress/ ],
    [ sub { $_[0]->send_binary('x') },                       qr/^Cannot send while a fragmented message is in progress/ ],
);
my @closed_croaks = map { my $m = $_; [ sub { $_[0]->$m('x') }, qr/^Connection is not open at / ] }
    qw(send send_binary send_fragment send_ping send_pong);

leak_free('croaking calls (bad arguments, wrong states)', sub {
    all_croak(@context_croaks) or return 0;
    my $open_ok;
    my $r = exchange($cli, $echo_url, sub {
        my ($c) = @_;
        $open_ok = all_croak(map { my ($code, $re) = @$_; [ sub { $code->($c) }, $re ] } @open_croaks);
        $c->send_fragment('b', 0, 1);    # ends the message the croaks left open
    }, 1) or return 0;
    my $conn = $cli->connect(url => $refused_url, on_error => sub { });
    run_until(sub { $conn->state eq 'closed' }) or return 0;
    my $closed_ok = all_croak(map { my ($code, $re) = @$_; [ sub { $code->($conn) }, $re ] } @closed_croaks);
    return $open_ok && $closed_ok && $r->{messages}[0][0] eq 'ab' && $r->{close}[0] == 1000;
});

# The shared listeners saw no error on any of the connections above.
is($server{errors}, 0, 'no server-side error on the full listener');

done_testing;
