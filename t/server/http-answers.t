# Proves: a listener answers requests it does not upgrade with 426, 400, 431
# or 403, and cuts idle and slow clients at the handshake deadline.
# POD: EV::Websockets, "listen"
# (on_handshake, handshake_timeout, max_header_size),
# "Limits and their defaults".
#
# What a listener answers to requests it does not upgrade (426, 400, 431,
# 403), and the handshake deadline against idle and slow clients.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

$SIG{PIPE} = 'IGNORE';

# recording() replaces on_message, so the echo goes through it.
my $echo = sub { $_[0]->send($_[1]) };

my %ev;
my $ctx  = EV::Websockets::Context->new;
my $port = echo_server($ctx, recording(\%ev,
    on_message   => $echo,
    on_handshake => sub {
        my ($h) = @_;
        die "boom\n" if $h->{Path} eq '/die';
        return $h->{Path} eq '/deny' ? 0 : 1;
    },
));
my $host = "127.0.0.1:$port";
my $key  = 'dGhlIHNhbXBsZSBub25jZQ==';

# An upgrade request with the given changes: %set replaces or adds headers
# (undef removes one), method and path replace the request line's.
sub request {
    my (%a) = @_;
    my @h = (
        Host                    => $host,
        Upgrade                 => 'websocket',
        Connection              => 'Upgrade',
        'Sec-WebSocket-Key'     => $key,
        'Sec-WebSocket-Version' => 13,
    );
    my %set = %{ $a{set} || {} };
    my $head = sprintf "%s %s HTTP/1.1\r\n", $a{method} // 'GET', $a{path} // '/';
    while (my ($name, $value) = splice @h, 0, 2) {
        next if exists $set{$name} && !defined $set{$name};
        $head .= "$name: " . (delete $set{$name} // $value) . "\r\n";
    }
    $head .= "$_: $set{$_}\r\n" for grep { defined $set{$_} } sort keys %set;
    return "$head\r\n";
}

# Send $request from a raw client; returns the peer once the server closed.
sub answer_to {
    my ($request) = @_;
    my $peer = RawPeer->client(port => $port, request => $request);
    run_until(sub { $peer->{eof} }, 3);
    return $peer;
}

my @cases = (
    [ 'plain GET, no Upgrade' => "GET / HTTP/1.1\r\nHost: $host\r\n\r\n",
        'HTTP/1.1 426 Upgrade Required', { 'sec-websocket-version' => '13' } ],
    [ 'plain HEAD' => "HEAD /index.html HTTP/1.1\r\nHost: $host\r\n\r\n",
        'HTTP/1.1 426 Upgrade Required', { 'sec-websocket-version' => '13' } ],
    [ 'missing Sec-WebSocket-Key' => request(set => { 'Sec-WebSocket-Key' => undef }),
        'HTTP/1.1 400 Bad Request' ],
    [ 'missing Host' => request(set => { Host => undef }),
        'HTTP/1.1 400 Bad Request' ],
    [ 'POST upgrade' => request(method => 'POST'),
        'HTTP/1.1 400 Bad Request' ],
    [ 'Sec-WebSocket-Version: 8' => request(set => { 'Sec-WebSocket-Version' => 8 }),
        'HTTP/1.1 426 Upgrade Required', { 'sec-websocket-version' => '13' } ],
    [ 'a 17 KiB request head' => request(set => { 'X-Padding' => 'p' x (17 * 1024) }),
        'HTTP/1.1 431 Request Header Fields Too Large' ],
    [ 'on_handshake returns false' => request(path => '/deny'),
        'HTTP/1.1 403 Forbidden' ],
);

for my $case (@cases) {
    my ($what, $request, $status_line, $headers) = @$case;
    my $peer = answer_to($request);
    is($peer->{status_line}, $status_line, "$what: $status_line");
    for my $name (sort keys %{ $headers || {} }) {
        is($peer->{headers}{$name}, $headers->{$name}, "... $name: $headers->{$name}");
    }
    ok($peer->{eof}, '... then the server closes');
    ok(!$peer->{open}, '... no upgrade');
}

{
    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };
    my $peer = answer_to(request(path => '/die'));
    is($peer->{status_line}, 'HTTP/1.1 403 Forbidden', 'on_handshake dies: HTTP/1.1 403 Forbidden');
    ok($peer->{eof}, '... then the server closes');
    is_deeply(\@warnings, ["EV::Websockets: exception in on_handshake: boom\n"], '... and warns');
}

is($ev{order}, undef, 'no server callback fired for any refused request');
is(scalar $ctx->connections, 0, 'no server connection exists');

{
    my $ok = RawPeer->client(port => $port, request => request(set => { 'X-Padding' => 'p' x 15000 }));
    ok(run_until(sub { $ok->{open} || $ok->{eof} }), 'a 15 KiB request head is answered');
    is($ok->{status}, 101, '... with 101');
    ok($ok->{accept_ok}, '... and the right accept key');
    $ok->close_tcp;
}

is(ws_roundtrip("ws://$host/")->{reply}, 'hello', 'the listener still serves');

subtest 'max_header_size moves the 431 limit both ways' => sub {
    for my $limit (1024, 64 * 1024) {
        my $port = echo_server($ctx, max_header_size => $limit);
        my $head = sub { request(set => { Host => "127.0.0.1:$port", 'X-Padding' => 'p' x $_[0] }) };
        my $over = RawPeer->client(port => $port, request => $head->($limit));
        run_until(sub { $over->{eof} }, 3);
        is($over->{status_line}, 'HTTP/1.1 431 Request Header Fields Too Large', "limit $limit: a longer head gets 431");
        my $under = RawPeer->client(port => $port, request => $head->($limit - 300));
        ok(run_until(sub { $under->{open} || $under->{eof} }, 3), "limit $limit: a shorter head is answered");
        is($under->{status}, 101, '... with 101');
        $under->close_tcp;
    }
};

subtest 'handshake_timeout: idle and slow clients are cut at the deadline' => sub {
    my $deadline = 0.5;
    my $tctx  = EV::Websockets::Context->new;
    my %tev;
    my $tport = echo_server($tctx, handshake_timeout => $deadline, recording(\%tev, on_message => $echo));
    my $slow_request = "GET / HTTP/1.1\r\nHost: 127.0.0.1:$tport\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n";

    my (@clients, $eofs);
    # A raw socket; 'slow' ones send the request one byte every 0.1 s.
    my $open = sub {
        my ($slow) = @_;
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport, Proto => 'tcp')
            or die "connect: $!";
        $sock->blocking(0);
        my $c = { sock => $sock, start => EV::time, got => '', slow => $slow };
        $c->{rw} = EV::io($sock, EV::READ, sub {
            my $n = sysread($sock, $c->{got}, 4096, length $c->{got});
            return if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
            return if $n;
            $c->{eof} = EV::time - $c->{start};
            delete @$c{qw(rw tw)};
            $eofs++;
        });
        if ($slow) {
            my $sent = 0;
            $c->{tw} = EV::timer(0, 0.1, sub {
                syswrite($sock, substr($slow_request, $sent++, 1)) if $sent < length $slow_request;
            });
        }
        push @clients, $c;
    };

    # 200 idle and 12 slow sockets, in batches so the listener accepts as
    # they come.
    my $batch = 0;
    my $opener = EV::timer(0, 0.01, sub {
        $open->(0) for 1 .. 50;
        $open->(1) for 1 .. 3;
        $_[0]->stop if ++$batch == 4;
    });

    # Meanwhile a real client, started once all of them are in.
    my (%real, $real_conn, $t0);
    my $cctx = EV::Websockets::Context->new;
    my $starter = EV::timer(0.1, 0, sub {
        $t0 = EV::time;
        $real_conn = $cctx->connect(url => "ws://127.0.0.1:$tport/", recording(\%real,
            on_connect => sub { $_[0]->send('first') },
            on_message => sub { $real{rtt} //= EV::time - $t0 },
        ));
    });

    ok(run_until(sub { $batch == 4 && ($eofs // 0) == @clients }, 5), 'every idle and slow socket got EOF');
    is(scalar @clients, 212, '200 idle and 12 slow sockets were opened');
    ok(defined $real{rtt}, 'the real client got its echo');
    cmp_ok($real{rtt} // 99, '<', 0.25, '... promptly, well under the deadline');
    is_deeply($real{message}, [ [ 'first', 0, 1 ] ], '... the right one');

    my @idle = map { $_->{eof} } grep { !$_->{slow} } @clients;
    my @slow = map { $_->{eof} } grep { $_->{slow} } @clients;
    my @bad  = grep { !defined || $_ < 0.4 || $_ > 2 } @idle, @slow;
    is(scalar @bad, 0, 'every EOF came between 0.4 and 2 s after connecting')
        or diag "out of range: @bad";
    my ($min, $max) = (sort { $a <=> $b } grep defined, @idle, @slow)[ 0, -1 ];
    note sprintf 'EOF after %.3f .. %.3f s', $min // -1, $max // -1;
    is(scalar(grep { $_->{got} =~ /^HTTP\/1\.1 101/ } @clients), 0, 'no slow client was upgraded');
    is(scalar @{ $tev{connect} || [] }, 1, 'one server on_connect: the real client');
    is_deeply([ grep { $_ ne 'drain' } @{ $tev{order} || [] } ], [qw(connect message)],
        '... no other server callback fired for them');

    ok($real_conn->is_connected, 'the real client is still connected after the deadline');
    $real_conn->send('second');
    ok(run_until(sub { @{ $real{message} || [] } == 2 }), '... and still echoed');
    is($real{message}[1][0], 'second', '... the right message');

    is(ws_roundtrip("ws://127.0.0.1:$tport/")->{reply}, 'hello', 'a new client is served afterwards');
    is(scalar $tctx->connections, 1, 'only the real client is a server connection');
};

done_testing;
