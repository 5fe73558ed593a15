# Proves: listen validates its options, returns the bound port, serves on each
# host and listener, shares a port with reuse_port, negotiates subprotocols.
# POD: EV::Websockets, "listen", "Exceptions (croak)", "Listening".
#
# listen(): option validation and its order, the bound port, several
# listeners, host, dual-stack, reuse_port across processes, subprotocol
# negotiation.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use IO::Socket::IP;
use POSIX ();
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# Is there an IPv6 loopback to bind to?
my $have_v6 = do {
    my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1, Proto => 'tcp');
    $s ? 1 : 0;
};

subtest 'validation: messages' => sub {
    my $ctx = EV::Websockets::Context->new;
    for my $name (qw(name protocol ssl_cert ssl_key ssl_ca)) {
        like(croak_of(sub { $ctx->listen(port => 0, $name => undef) }),
            qr/^listen: option '$name' must be a defined string at /, "$name => undef");
    }
    like(croak_of(sub { $ctx->listen(port => 0, name => 'default') }),
        qr/^listen: vhost name 'default' is reserved at /, "name 'default'");
    like(croak_of(sub { $ctx->listen(port => 0, ssl_cert => 'cert.pem') }),
        qr/^listen: ssl_cert and ssl_key must both be set for TLS \(only ssl_cert was given\) at /,
        'lone ssl_cert');
    like(croak_of(sub { $ctx->listen(port => 0, ssl_key => 'key.pem') }),
        qr/^listen: ssl_cert and ssl_key must both be set for TLS \(only ssl_key was given\) at /,
        'lone ssl_key');
    like(croak_of(sub { $ctx->listen(port => 0, ssl_cert => 'cert.pem', ssl_key => '') }),
        qr/^listen: ssl_cert and ssl_key must both be set for TLS \(only ssl_cert was given\) at /,
        'ssl_cert with an empty ssl_key counts as lone');
    like(croak_of(sub { $ctx->listen(port => 0, ssl_cert => '', ssl_key => 'key.pem') }),
        qr/^listen: ssl_cert and ssl_key must both be set for TLS \(only ssl_key was given\) at /,
        'ssl_key with an empty ssl_cert counts as lone');
    for my $port (-1, 65536, 100000) {
        like(croak_of(sub { $ctx->listen(port => $port) }),
            qr/^listen: port must be 0-65535 at /, "port $port");
    }
    like(croak_of(sub { $ctx->listen(port => 0, 'name') }),
        qr/^odd number of options: key 'name' has no value at /, 'odd option list');
    like(croak_of(sub { $ctx->listen(port => 0, host => 'localhost') }),
        qr/^Failed to create vhost for listening: host must be an IP address, not 'localhost' at /,
        'host must be an IP address');

    my $port = $ctx->listen(port => 0);
    like(croak_of(sub { $ctx->listen(port => $port) }),
        qr/^Failed to create vhost for listening: Address already in use at /,
        'the same port twice: bind failure with its reason');
    my $foreign = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "listen: $@";
    like(croak_of(sub { $ctx->listen(port => $foreign->sockport, host => '127.0.0.1') }),
        qr/^Failed to create vhost for listening: Address already in use at /,
        'a port taken by another socket');
    like(croak_of(sub { $ctx->listen(port => $port, reuse_port => 1) }),
        qr/^Failed to create vhost for listening: Address already in use at /,
        'reuse_port cannot share a port bound without it');

    my $plain = croak_of(sub { $ctx->listen(port => 0, ssl_cert => '', ssl_key => '') });
    is($plain, '', 'empty ssl_cert and ssl_key: a plain listener');
    is(scalar $ctx->connections, 0, 'failed listens left no connection behind');
};

subtest 'validation: order' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $busy = $ctx->listen(port => 0);

    like(croak_of(sub { $ctx->listen(name => undef, 'port') }),
        qr/^odd number of options: key 'port' has no value at /, 'odd count before undef values');
    like(croak_of(sub { $ctx->listen(port => 0, protocol => undef, name => 'default') }),
        qr/^listen: option 'protocol' must be a defined string at /, 'undef before the reserved name');
    like(croak_of(sub { $ctx->listen(port => 0, ssl_ca => undef, ssl_cert => 'cert.pem') }),
        qr/^listen: option 'ssl_ca' must be a defined string at /, 'undef before the lone ssl_cert');
    like(croak_of(sub { $ctx->listen(port => 0, name => 'default', ssl_cert => 'cert.pem') }),
        qr/^listen: vhost name 'default' is reserved at /, 'reserved name before the lone ssl_cert');
    like(croak_of(sub { $ctx->listen(port => $busy, ssl_key => 'key.pem') }),
        qr/^listen: ssl_cert and ssl_key must both be set for TLS \(only ssl_key was given\) at /,
        'lone ssl_key before the bind failure');
    like(croak_of(sub { $ctx->listen(port => $busy, name => 'default') }),
        qr/^listen: vhost name 'default' is reserved at /, 'reserved name before the bind failure');

    my $gone = EV::Websockets::Context->new;
    $gone->DESTROY;
    like(croak_of(sub { $gone->listen('port') }),
        qr/^Context has been destroyed at /, 'destroyed context before the odd count');
    like(croak_of(sub { $gone->listen(port => 0, name => undef) }),
        qr/^Context has been destroyed at /, '... and before undef values');
};

subtest 'returns the bound port' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $port = $ctx->listen(port => 0);
    like($port, qr/^[1-9][0-9]*\z/, 'port 0: a real port number');
    ok($port <= 65535, '... in range');
    my $probe = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    ok($probe, '... and something listens there');

    my $want = closed_port();
    my $got  = echo_server($ctx, port => $want, host => '127.0.0.1');
    is($got, $want, 'an explicit port is returned as is');
    is(ws_roundtrip("ws://127.0.0.1:$want/")->{reply}, 'hello', '... and served');
};

subtest 'several listeners in one context each serve' => sub {
    my $ctx = EV::Websockets::Context->new;
    my @ports = map {
        my $id = $_;
        $ctx->listen(port => 0, on_message => sub { $_[0]->send("$id:$_[1]") });
    } qw(A B C);
    is(scalar(keys %{ { map { $_ => 1 } @ports } }), 3, 'three different ports');
    my @replies = map { ws_roundtrip("ws://127.0.0.1:$_/", message => 'hi')->{reply} } @ports;
    is_deeply(\@replies, [qw(A:hi B:hi C:hi)], 'each listener answers with its own callbacks');
};

subtest "host => '127.0.0.1'" => sub {
    my $ctx  = EV::Websockets::Context->new;
    my @peers;
    my $port = echo_server($ctx, host => '127.0.0.1', on_connect => sub { push @peers, $_[0]->peer_address });
    my $r = ws_roundtrip("ws://127.0.0.1:$port/");
    is($r->{reply}, 'hello', 'served over IPv4');
    is_deeply(\@peers, ['127.0.0.1'], '... from 127.0.0.1');
    SKIP: {
        skip 'no IPv6 loopback', 3 unless $have_v6;
        my $r6 = ws_roundtrip("ws://[::1]:$port/");
        ok(!$r6->{connected}, 'not reachable over ::1');
        like($r6->{error} // '', qr/refused/i, '... connection refused');
        is(scalar @peers, 1, '... and the server saw nothing');
    }
};

SKIP: {
    skip 'no IPv6 loopback', 2 unless $have_v6;

    subtest "host => '::1'" => sub {
        my $ctx  = EV::Websockets::Context->new;
        my @peers;
        my $port = echo_server($ctx, host => '::1', on_connect => sub { push @peers, $_[0]->peer_address });
        my $r = ws_roundtrip("ws://[::1]:$port/");
        is($r->{reply}, 'hello', 'served over IPv6');
        is_deeply(\@peers, ['::1'], '... peer_address ::1');
        my $r4 = ws_roundtrip("ws://127.0.0.1:$port/");
        ok(!$r4->{connected}, 'not reachable over 127.0.0.1');
        like($r4->{error} // '', qr/refused/i, '... connection refused');
    };

    subtest 'without host: dual-stack' => sub {
        my $ctx  = EV::Websockets::Context->new;
        my @peers;
        my $port = echo_server($ctx, on_connect => sub { push @peers, $_[0]->peer_address });
        is(ws_roundtrip("ws://127.0.0.1:$port/")->{reply}, 'hello', 'reached over 127.0.0.1');
        is(ws_roundtrip("ws://[::1]:$port/")->{reply},     'hello', 'reached over [::1]');
        is_deeply(\@peers, [ '127.0.0.1', '::1' ], 'peer addresses in their own families');
    };
}

subtest 'reuse_port: two processes share a port' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $port = $ctx->listen(port => 0, host => '127.0.0.1', reuse_port => 1,
        on_message => sub { $_[0]->send("parent:$_[1]") });

    {
        # Two reuse_port listeners on one port in one process.
        my $other = EV::Websockets::Context->new;
        my $p     = $other->listen(port => 0, host => '127.0.0.1', reuse_port => 1);
        my $again = croak_of(sub { $other->listen(port => $p, host => '127.0.0.1', reuse_port => 1) });
        is($again, '', 'a second reuse_port listener on the same port binds');
    }

    pipe(my $from_child, my $to_parent) or die "pipe: $!";
    pipe(my $from_parent, my $to_child) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $from_child;
        close $to_child;
        # The child: its own loop and context; it leaves when the parent
        # closes its pipe (or after 15 s).
        my $loop = EV::Loop->new;
        my $cctx = EV::Websockets::Context->new(loop => $loop);
        my $ok = eval {
            $cctx->listen(port => $port, host => '127.0.0.1', reuse_port => 1,
                on_message => sub { $_[0]->send("child:$_[1]") });
            1;
        };
        my $err = $@;
        $err =~ s/\n//g;
        syswrite $to_parent, $ok ? "ready\n" : "error: $err\n";
        my $w = $loop->io($from_parent, EV::READ, sub { $loop->break });
        my $t = $loop->timer(15, 0, sub { $loop->break });
        $loop->run if $ok;
        POSIX::_exit(0);    # no destructors for the parent's objects
    }
    close $to_parent;
    close $from_parent;

    my $status = '';
    my $rw = EV::io($from_child, EV::READ, sub { sysread($from_child, $status, 256, length $status) or $_[0]->stop });
    ok(run_until(sub { $status =~ /\n/ }), 'child reported');
    is($status, "ready\n", 'the child listens on the same port with reuse_port');

    my %served;
    my $tries = 0;
    while ($tries < 40 && !($served{parent} && $served{child})) {
        $tries++;
        my $reply = ws_roundtrip("ws://127.0.0.1:$port/", message => $tries)->{reply} // 'none';
        my ($who, $echo) = split /:/, $reply, 2;
        $served{$who}++;
        is($echo, $tries, "connection $tries answered by $who") if $who ne 'parent' && $who ne 'child';
    }
    ok($served{parent}, "the parent served some of $tries connections") or diag explain \%served;
    ok($served{child},  "the child served some of $tries connections")  or diag explain \%served;
    is($served{none}, undef, 'no connection failed');

    close $to_child;
    my $exited;
    my $cw = EV::child($pid, 0, sub { $exited = $_[0]->rstatus });
    run_until(sub { defined $exited }, 3) or kill 'KILL', $pid;
    is($exited, 0, 'child left when its pipe closed');
};

subtest 'protocol list: the first of the server list that the client offers' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (@at_connect, @at_message);
    my $port = $ctx->listen(
        port       => 0,
        protocol   => [ 'chat.v2', 'chat', 'superchat' ],
        on_connect => sub { push @at_connect, $_[0]->get_protocol },
        on_message => sub { push @at_message, $_[0]->get_protocol; $_[0]->send($_[1]) },
    );
    for my $case (
        [ 'chat, chat.v2'    => 'chat.v2' ],
        [ 'superchat, chat'  => 'chat' ],
        [ 'superchat'        => 'superchat' ],
        [ 'other, superchat' => 'superchat' ],
    ) {
        my ($offer, $want) = @$case;
        my $r = ws_roundtrip("ws://127.0.0.1:$port/", protocol => $offer);
        is($r->{reply}, 'hello', "offer '$offer': connected and echoed");
        is($r->{protocol}, $want, "... client get_protocol '$want'");
        is($r->{headers}{'Sec-WebSocket-Protocol'}, $want, '... in the 101 response');
        is($at_connect[-1], $want, '... server get_protocol in on_connect');
        is($at_message[-1], $want, '... and later while open');
    }
};

subtest 'no protocol offered: accepted without one' => sub {
    my $ctx = EV::Websockets::Context->new;
    my @server;
    my $port = echo_server($ctx, protocol => [ 'chat', 'other' ],
        on_connect => sub { push @server, [ $_[0]->get_protocol ] });
    my $r = ws_roundtrip("ws://127.0.0.1:$port/");
    is($r->{reply}, 'hello', 'connected and echoed');
    is($r->{protocol}, undef, 'client get_protocol undef');
    ok(!exists $r->{headers}{'Sec-WebSocket-Protocol'}, 'no protocol header in the 101');
    is_deeply(\@server, [ [undef] ], 'server get_protocol undef');
};

subtest 'only unknown protocols offered: 400' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $connects = 0;
    my $port = echo_server($ctx, protocol => [ 'chat', 'other' ], on_connect => sub { $connects++ });
    my $peer = RawPeer->client(port => $port, extra_headers => [ 'Sec-WebSocket-Protocol' => 'foo, bar' ]);
    ok(run_until(sub { $peer->{eof} }), 'raw client: the server closed');
    is($peer->{status_line}, 'HTTP/1.1 400 Bad Request', 'raw client got 400 Bad Request');
    ok(!$peer->{open}, '... and no upgrade');

    my $r = ws_roundtrip("ws://127.0.0.1:$port/", protocol => 'foo');
    ok(!$r->{connected}, 'our client does not connect');
    is($r->{error}, 'handshake failed: HTTP 400 Bad Request', '... its on_error names the 400');
    is($connects, 0, 'no server on_connect');
    is(scalar $ctx->connections, 0, 'no server connection');
};

subtest 'listener without protocol: client offering one is accepted without it' => sub {
    my $ctx = EV::Websockets::Context->new;
    my @server;
    my $port = echo_server($ctx, on_connect => sub { push @server, [ $_[0]->get_protocol ] });
    my $peer = RawPeer->client(port => $port, extra_headers => [ 'Sec-WebSocket-Protocol' => 'chat' ]);
    ok(run_until(sub { $peer->{open} || $peer->{eof} }), 'raw client answered');
    is($peer->{status}, 101, 'raw client: 101');
    ok($peer->{accept_ok}, '... with the right accept key');
    ok(!exists $peer->{headers}{'sec-websocket-protocol'}, '... and no protocol header');
    $peer->close_tcp;

    my $r = ws_roundtrip("ws://127.0.0.1:$port/", protocol => 'chat, superchat');
    is($r->{reply}, 'hello', 'our client connects and gets its echo');
    is($r->{protocol}, undef, '... client get_protocol undef');
    ok(!exists $r->{headers}{'Sec-WebSocket-Protocol'}, '... no protocol header');
    is_deeply(\@server, [ [undef], [undef] ], 'server get_protocol undef both times');
};

done_testing;
