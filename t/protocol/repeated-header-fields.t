# Proves: repeated list headers count as one value on both sides; repeated
# single-value headers are refused.
# POD: EV::Websockets, "Header injection", "listen", "on_error messages".
#
# A header sent on several lines: the lines of Upgrade, Connection,
# Sec-WebSocket-Protocol and Sec-WebSocket-Extensions count as one
# comma-separated value, on both sides; Host, Sec-WebSocket-Key and
# Sec-WebSocket-Version twice get 400, two Sec-WebSocket-Accept lines fail
# the client.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

$SIG{PIPE} = 'IGNORE';

my $key = 'dGhlIHNhbXBsZSBub25jZQ==';

subtest 'server: repeated list lines are combined, single ones refused' => sub {
    my (@seen, %ev);
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx, host => '127.0.0.1', protocol => [ 'chat', 'v2' ], recording(\%ev,
        on_handshake => sub { push @seen, { %{ $_[0] } }; 1 },
    ));
    my $head = sub {
        my (@lines) = @_;
        return "GET / HTTP/1.1\r\n" . join('', map { "$_\r\n" } @lines) . "\r\n";
    };
    my @base = ("Host: 127.0.0.1:$port", "Sec-WebSocket-Key: $key", 'Sec-WebSocket-Version: 13');

    for my $case (
        [ 'Connection: keep-alive, then Connection: Upgrade',
            [ @base, 'Upgrade: websocket', 'Connection: keep-alive', 'X-Between: 1', 'Connection: Upgrade' ],
            { Connection => 'keep-alive, Upgrade' }, undef ],
        [ 'Upgrade over two lines',
            [ @base, 'Upgrade: h2c', 'Connection: Upgrade', 'Upgrade: websocket' ],
            { Upgrade => 'h2c, websocket' }, undef ],
        [ 'two Sec-WebSocket-Protocol lines',
            [ @base, 'Upgrade: websocket', 'Connection: Upgrade',
              'Sec-WebSocket-Protocol: other', 'Sec-WebSocket-Protocol: v2' ],
            { 'Sec-WebSocket-Protocol' => 'other, v2' }, 'v2' ],
    ) {
        my ($what, $lines, $want, $protocol) = @$case;
        my $peer = RawPeer->client(port => $port, request => $head->(@$lines));
        ok(run_until(sub { $peer->{open} || $peer->{eof} }, 3), "$what: answered");
        is($peer->{status}, 101, '... with 101');
        ok($peer->{accept_ok}, '... and the right accept key');
        is($peer->{headers}{'sec-websocket-protocol'}, $protocol,
            '... protocol ' . ($protocol // 'none') . ', chosen from the combined offer');
        for my $name (sort keys %$want) {
            is($seen[-1]{$name}, $want->{$name}, "... on_handshake sees $name: $want->{$name}");
        }
        $peer->close_tcp;
    }
    ok(run_until(sub { @{ $ev{connect} || [] } == 3 }), 'three server connections opened');

    my $connects = @{ $ev{connect} || [] };
    my $handshakes = @seen;
    for my $case (
        [ 'two different keys', "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==" ],
        [ 'the same key twice', "Sec-WebSocket-Key: $key" ],
        [ 'Sec-WebSocket-Version twice', 'Sec-WebSocket-Version: 13' ],
        [ 'Host twice', 'Host: elsewhere.example' ],
    ) {
        my ($what, $extra) = @$case;
        my $peer = RawPeer->client(port => $port,
            request => $head->(@base, 'Upgrade: websocket', 'Connection: Upgrade', $extra));
        ok(run_until(sub { $peer->{eof} }, 3), "$what: the server closed");
        is($peer->{status_line}, 'HTTP/1.1 400 Bad Request', '... after a 400');
        ok(!$peer->{open}, '... no upgrade');
    }
    is(scalar @seen, $handshakes, 'on_handshake did not run for them');
    is(scalar @{ $ev{connect} || [] }, $connects, 'no server on_connect either');
};

# A raw server answering each upgrade with a 101 whose header lines are
# $lines->($accept); returns its port.
sub raw_101 {
    my ($lines) = @_;
    return http_answerer(sub {
        my ($k) = $_[1] =~ /^Sec-WebSocket-Key: *(\S+)/mi;
        return "HTTP/1.1 101 Switching Protocols\r\n"
            . join('', map { "$_\r\n" } $lines->(RawPeer::accept_key($k))) . "\r\n";
    }, keep_open => 1);
}

subtest 'client: repeated list lines are combined, a second accept refused' => sub {
    my $split = raw_101(sub { ('Upgrade: websocket', 'Connection: keep-alive', 'Connection: Upgrade',
        "Sec-WebSocket-Accept: $_[0]", 'Sec-WebSocket-Protocol: v2') });
    my $r = ws_roundtrip("ws://127.0.0.1:$split/", protocol => 'chat, v2', timeout => 3);
    ok($r->{connected}, 'Connection over two lines: connected');
    is($r->{headers}{Connection}, 'keep-alive, Upgrade', '... on_connect sees the combined value');
    is($r->{protocol}, 'v2', '... with the chosen protocol');

    my $twice = raw_101(sub { ('Upgrade: websocket', 'Connection: Upgrade',
        "Sec-WebSocket-Accept: $_[0]", 'Sec-WebSocket-Accept: Zm9yZ2VkIGFjY2VwdCBrZXk=') });
    $r = ws_roundtrip("ws://127.0.0.1:$twice/", timeout => 3);
    ok(!$r->{connected}, 'two Sec-WebSocket-Accept lines: not connected');
    is($r->{error}, 'handshake failed: repeated Sec-WebSocket-Accept', '... on_error names it');

    my $protocols = raw_101(sub { ('Upgrade: websocket', 'Connection: Upgrade',
        "Sec-WebSocket-Accept: $_[0]", 'Sec-WebSocket-Protocol: chat', 'Sec-WebSocket-Protocol: v2') });
    $r = ws_roundtrip("ws://127.0.0.1:$protocols/", protocol => 'chat, v2', timeout => 3);
    ok(!$r->{connected}, 'two Sec-WebSocket-Protocol lines in a response: not connected');
    is($r->{error}, "handshake failed: server chose subprotocol 'chat, v2' that was not offered",
        '... the server chose two');
};

done_testing;
