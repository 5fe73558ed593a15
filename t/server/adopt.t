# Proves: adopt upgrades a socket accepted elsewhere, with or without
# initial_data, takes listener options, owns its own descriptor and serves
# the bytes the handle had buffered.
# POD: EV::Websockets, "adopt" and "Exceptions (croak)".
#
# adopt(): validation, the upgrade on a socket accepted elsewhere (with and
# without initial_data), listener-like options, who owns the descriptor,
# bytes left in the handle's buffer (on a Unix socketpair), and adoption
# from an AnyEvent tcp_server.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Scalar::Util qw(weaken);
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

my $echo = sub { $_[0]->send($_[1]) };

# A plain TCP listener on 127.0.0.1; $on_accept->($sock) for each client, the
# socket non-blocking.  Returns (port, guard).
sub raw_listener {
    my ($on_accept) = @_;
    my $listener = IO::Socket::INET->new(
        Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Blocking => 0,
    ) or die "listen: $@";
    my $w = EV::io($listener, EV::READ, sub {
        while (my $sock = $listener->accept) {
            $sock->blocking(0);
            $on_accept->($sock);
        }
    });
    return ($listener->sockport, [ $listener, $w ]);
}

# Read an HTTP request head from $sock without blocking, then
# $done->($head).  Returns the watcher (keep it).
sub read_head {
    my ($sock, $done) = @_;
    my $buf = '';
    my $w;
    $w = EV::io($sock, EV::READ, sub {
        my $n = sysread($sock, $buf, 4096, length $buf);
        return if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
        if (!$n) { $_[0]->stop; return }
        return if index($buf, "\r\n\r\n") < 0;
        $_[0]->stop;
        $done->($buf);
    });
    return $w;
}

subtest 'validation' => sub {
    my $ctx = EV::Websockets::Context->new;
    like(croak_of(sub { $ctx->adopt }), qr/^fh parameter is required at /, 'no fh');
    like(croak_of(sub { $ctx->adopt(fh => undef) }), qr/^fh parameter is required at /, 'fh undef');
    like(croak_of(sub { $ctx->adopt(initial_data => 'x') }), qr/^fh parameter is required at /,
        'initial_data without fh');
    like(croak_of(sub { $ctx->adopt('fh') }), qr/^odd number of options: key 'fh' has no value at /,
        'odd option list');
    like(croak_of(sub { $ctx->adopt(fh => 'NoSuchHandle') }), qr/^Bad filehandle: NoSuchHandle at /,
        'a bad handle name: Perl\'s message');
    like(croak_of(sub { $ctx->adopt(fh => do { no warnings "once"; \*NoIOHere } ) }), qr/^Bad filehandle: NoIOHere at /,
        'a glob without a handle: Perl\'s message');

    my $closed = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "listen: $@";
    close $closed;
    like(croak_of(sub { $ctx->adopt(fh => $closed) }), qr/^Invalid filehandle at /, 'a closed handle');

    open(my $file, '<', $0) or die "open: $!";
    like(croak_of(sub { $ctx->adopt(fh => $file) }), qr/^adopt: file handle is not a socket at /, 'a file');
    pipe(my $r, my $w) or die "pipe: $!";
    like(croak_of(sub { $ctx->adopt(fh => $r) }), qr/^adopt: file handle is not a socket at /, 'a pipe');

    my $listening = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "listen: $@";
    like(croak_of(sub { $ctx->adopt(fh => $listening) }), qr/^adopt: file handle is a listening socket at /,
        'a listening socket');
    socketpair(my $sa, my $sb, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    like(croak_of(sub { $ctx->adopt(fh => $sa, on_connect => 'nope') }),
        qr/^on_connect must be a code reference at /, 'a callback that is not code');
    like(croak_of(sub { $ctx->adopt(fh => $sa, headers => []) }),
        qr/^headers must be a hash reference at /, 'headers that are not a hash');

    is(scalar $ctx->connections, 0, 'nothing adopted by the failures');

    my $gone = EV::Websockets::Context->new;
    $gone->DESTROY;
    socketpair(my $x, my $y, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    like(croak_of(sub { $gone->adopt(fh => $x) }), qr/^Context has been destroyed at /, 'destroyed context');
};

subtest 'adopt with the request as initial_data' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, @adopted, $inside, $reader);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        $reader = read_head($sock, sub {
            my ($head) = @_;
            $inside = 1;
            my $conn = $ctx->adopt(
                fh           => $sock,
                initial_data => $head,
                recording(\%s,
                    on_message => $echo,
                    on_connect => sub { push @{ $s{inside} }, $inside; push @{ $s{args} }, scalar @_ },
                ),
            );
            $inside = 0;
            push @adopted, [ $conn, $conn->state, $conn->is_connected ];
        });
    });

    my $r = ws_roundtrip("ws://127.0.0.1:$port/adopted", message => 'echo me');
    is($r->{reply}, 'echo me', 'our client connects and gets its echo');
    is(scalar @adopted, 1, 'adopted once');
    is_deeply($s{inside}, [1], 'on_connect fired inside adopt');
    is_deeply($s{connect}, [ [undef] ], "on_connect's second argument is undef");
    is($adopted[0][1], 'connected', 'adopt returned the connection already "connected"');
    ok($adopted[0][2], '... is_connected');
    is_deeply($s{message}, [ [ 'echo me', 0, 1 ] ], 'server on_message got the message');
    is_deeply($s{close}, [ [ 1000, '' ] ], 'server on_close with the client\'s code');
    ok(!$s{error}, 'no error');
};

subtest 'adopt is the same connection object and serves peer_address' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, $conn, @seen, $reader);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        $reader = read_head($sock, sub {
            $conn = $ctx->adopt(fh => $sock, initial_data => $_[0], recording(\%s,
                on_message => sub { push @seen, [ $_[0], $_[0]->peer_address, scalar(() = $ctx->connections) ]; $echo->(@_) }));
        });
    });
    my $r = ws_roundtrip("ws://127.0.0.1:$port/");
    is($r->{reply}, 'hello', 'echo');
    ok(@seen && $seen[0][0] == $conn, 'callbacks get the object adopt returned');
    is($seen[0][1], '127.0.0.1', 'peer_address');
    is($seen[0][2], 1, 'listed by connections');
};

subtest 'adopt without initial_data: the module reads the request' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, @adopted);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        my $conn = $ctx->adopt(fh => $sock, recording(\%s, on_message => $echo));
        push @adopted, [ $conn, $s{connect} ? 1 : 0 ];
    });
    my $r = ws_roundtrip("ws://127.0.0.1:$port/", message => 'no initial data');
    is($r->{reply}, 'no initial data', 'echo');
    is(scalar @adopted, 1, 'adopted once');
    is($adopted[0][1], 0, 'on_connect did not fire inside adopt');
    is_deeply($s{connect}, [ [undef] ], 'on_connect fired later, with undef headers');
};

subtest 'adopt with part of the request as initial_data' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, $reader);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        my $buf = '';
        # Read only the request line, then adopt with it.
        $reader = EV::io($sock, EV::READ, sub {
            sysread($sock, $buf, 1, length $buf) or return;
            return unless $buf =~ /\n\z/;
            $_[0]->stop;
            $ctx->adopt(fh => $sock, initial_data => $buf, recording(\%s, on_message => $echo));
        });
    });
    my $r = ws_roundtrip("ws://127.0.0.1:$port/part", message => 'split');
    is($r->{reply}, 'split', 'echo');
    is_deeply($s{connect}, [ [undef] ], 'on_connect with undef headers');
};

subtest 'adopt with protocol, headers and on_handshake' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, @hs, $reader);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        $reader = read_head($sock, sub {
            $ctx->adopt(
                fh           => $sock,
                initial_data => $_[0],
                protocol     => [ 'b', 'a' ],
                headers      => { 'X-Adopt' => 'static' },
                on_handshake => sub {
                    my ($h) = @_;
                    push @hs, { %$h };
                    return 0 if $h->{Path} eq '/deny';
                    return { 'X-Per-Conn' => 'dynamic' };
                },
                recording(\%s, on_message => sub { push @{ $s{proto} }, $_[0]->get_protocol; $echo->(@_) }),
            );
        });
    });

    my $r = ws_roundtrip("ws://127.0.0.1:$port/room?x=1", protocol => 'a, b', headers => { 'X-Client' => 'c1' });
    is($r->{reply}, 'hello', 'echo');
    is($r->{protocol}, 'b', "client gets the adopter's first choice");
    is($r->{headers}{'Sec-WebSocket-Protocol'}, 'b', '... in the 101');
    is_deeply($s{proto}, ['b'], 'server get_protocol');
    is($r->{headers}{'X-Adopt'}, 'static', 'headers option in the 101');
    is($r->{headers}{'X-Per-Conn'}, 'dynamic', 'on_handshake hash in the 101');
    is(scalar @hs, 1, 'on_handshake called once');
    is($hs[0]{Path}, '/room', 'on_handshake sees Path');
    is($hs[0]{Query}, 'x=1', '... Query');
    is($hs[0]{'X-Client'}, 'c1', '... the other headers');
    is($hs[0]{'Sec-WebSocket-Protocol'}, 'a, b', '... the offered protocols');
    is_deeply($s{connect}, [ [undef] ], 'on_connect still gets undef headers');

    my $denied = ws_roundtrip("ws://127.0.0.1:$port/deny");
    ok(!$denied->{connected}, 'on_handshake false: rejected');
    is($denied->{error}, 'handshake failed: HTTP 403 Forbidden', '... with 403');

    my $unknown = ws_roundtrip("ws://127.0.0.1:$port/", protocol => 'z');
    is($unknown->{error}, 'handshake failed: HTTP 400 Bad Request', 'only unknown protocols: 400');
    is(scalar @{ $s{connect} }, 1, 'no on_connect for the rejected ones');
};

subtest 'a plain HTTP request on an adopted socket: 426' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, $reader);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        $reader = read_head($sock, sub { $ctx->adopt(fh => $sock, initial_data => $_[0], recording(\%s)) });
    });
    my $peer = RawPeer->client(port => $port, request => "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    ok(run_until(sub { $peer->{eof} }), 'the module closed the socket');
    is($peer->{status_line}, 'HTTP/1.1 426 Upgrade Required', '... after a 426');
    is($s{order}, undef, 'no callback fired');
};

subtest 'the descriptor: the module closes its side, the handle stays ours' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, $held, $conn, $wio, $reader, @warnings);
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        $held = $sock;
        $reader = read_head($sock, sub {
            $conn = $ctx->adopt(fh => $sock, initial_data => $_[0], recording(\%s, on_message => $echo));
        });
    });
    my $peer = RawPeer->client(port => $port);
    ok(run_until(sub { $peer->{open} && $s{connect} }), 'raw client upgraded');
    my $fd = fileno $held;
    ok(defined $fd, 'the test still holds the accepted handle');

    $conn->close(1000, 'done');
    ok(run_until(sub { $peer->{eof} && $s{close} }), 'server closed: the peer saw EOF');
    is($peer->{close_code}, 1000, '... after the close frame');
    is_deeply($s{close}, [ [ 1000, '' ] ], 'server on_close');
    is(fileno($held), $fd, 'our handle is still open on its descriptor');
    undef $conn;

    # If the module had closed our descriptor, a new socket could now reuse
    # its number, and closing our handle would close that one.
    socketpair(my $x, my $y, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    ok(close($held), 'close($fh) succeeds');
    is(syswrite($x, 'still here'), 10, 'a socket opened afterwards still works');
    sysread($y, my $got, 64);
    is($got, 'still here', '... both ways');
    is_deeply(\@warnings, [], 'no warnings (no "Bad file descriptor")');
};

subtest 'the module keeps the handle alive while it serves' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%s, $wio, $reader);
    my ($port, $lguard) = raw_listener(sub {
        my ($sock) = @_;
        $reader = read_head($sock, sub {
            weaken($wio = *$sock{IO});
            $ctx->adopt(fh => $sock, initial_data => $_[0], recording(\%s, on_message => $echo));
            undef $sock;    # the accept loop's copy is the last one of ours
        });
    });
    my $peer = RawPeer->client(port => $port);
    ok(run_until(sub { $peer->{open} && $s{connect} }), 'raw client upgraded');
    undef $reader;    # drops the closure, and with it our last reference
    ok(defined $wio, 'the handle lives on inside the module');
    $peer->send_frame(opcode => 1, payload => 'ping?');
    ok(run_until(sub { $peer->messages }), 'the connection still serves');
    is_deeply([ $peer->messages ], [ [ 1, 'ping?' ] ], '... the echo');

    $peer->send_frame(opcode => 8, payload => RawPeer::close_payload(1001, 'away'));
    ok(run_until(sub { $peer->{eof} && $s{close} }), 'closed by the peer, TCP closed by the server');
    is_deeply($s{close}, [ [ 1001, 'away' ] ], 'server on_close with the peer\'s code and reason');
    ok(!defined $wio, 'the module let go of the handle once done');
};

# Bytes read from the socket before adopt, left in the handle's PerlIO
# buffer: by a buffered read, or pushed back as Feersum does when it hands
# over psgix.io or $req->io.  adopt serves them before what the socket
# holds.  On a Unix socketpair, as Feersum's TLS listeners hand it over.
subtest 'bytes buffered in the handle are served first' => sub {
    my $request = "GET /early HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        . "Sec-WebSocket-Version: 13\r\n\r\n";
    # How the bytes behind the request end up in the handle's buffer.
    my $buffered_read = sub {
        my ($fh) = @_;
        read($fh, my $head, length $request) == length $request or die "read: $!";
        return $head;
    };
    my $push_back = sub {
        my ($fh, $early) = @_;
        sysread($fh, my $head, length $request) == length $request or die "sysread: $!";
        my $skipped = '';
        sysread($fh, $skipped, length($early) - length $skipped, length $skipped) or die "sysread: $!"
            while length $skipped < length $early;
        $fh->ungetc(ord) for reverse split //, $early;
        return $head;
    };
    my @cases = (
        [ 'a buffered read',                          $buffered_read, 'early' ],
        [ 'a push-back (ungetc, as PerlIO_unread)',   $push_back,     'early' ],
        [ 'a push-back larger than the buffer (stacked layers)', $push_back, 'x' x 20000 ],
    );
    for my $case (@cases) {
        my ($how, $buffer, $payload) = @$case;
        my $ctx = EV::Websockets::Context->new;
        socketpair(my $client, my $server, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
        my $early = RawPeer::frame({ mode => 'client' }, opcode => 1, payload => $payload);
        syswrite($client, $request . $early) == length($request . $early) or die "write: $!";
        my $head = $buffer->($server, $early);
        my %s;
        $ctx->adopt(fh => $server, initial_data => $head, recording(\%s, on_message => $echo));
        $client->blocking(0);
        my $got = '';
        my $w = EV::io($client, EV::READ, sub { sysread($client, $got, 65536, length $got) or $_[0]->stop });
        ok(run_until(sub { $s{message} && length $got > length $payload }), "$how: served");
        like($got, qr/\AHTTP\/1\.1 101 /, "$how: the 101 first");
        is(substr($got, -length $payload), $payload, "$how: then the echo of the buffered frame");
        is_deeply($s{message}, [ [ $payload, 0, 1 ] ], "$how: on_message saw it once, whole");
    }
};

subtest 'AnyEvent tcp_server: adopt in the accept callback' => sub {
    plan skip_all => 'AnyEvent not installed' unless eval { require AnyEvent; require AnyEvent::Socket; 1 };
    is(AnyEvent::detect(), 'AnyEvent::Impl::EV', 'AnyEvent runs on EV');
    my $ctx = EV::Websockets::Context->new;
    my (%s, $port);
    my $server = AnyEvent::Socket::tcp_server('127.0.0.1', 0,
        sub {
            my ($fh, $host) = @_;
            push @{ $s{hosts} }, $host;
            $ctx->adopt(fh => $fh, recording(\%s, on_message => $echo));
        },
        sub { $port = $_[2]; 16 },
    );
    ok($port, 'tcp_server is listening');
    my @replies = map { ws_roundtrip("ws://127.0.0.1:$port/", message => "ae $_")->{reply} } 1 .. 2;
    is_deeply(\@replies, [ 'ae 1', 'ae 2' ], 'two clients, each echoed');
    is_deeply($s{hosts}, [ '127.0.0.1', '127.0.0.1' ], 'accepted by AnyEvent');
    is_deeply($s{connect}, [ [undef], [undef] ], 'adopted: on_connect with undef headers');
    is(scalar @{ $s{close} || [] }, 2, 'both closed');
};

done_testing;
