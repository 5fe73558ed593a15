# Proves: each side sees the other's handshake headers, the chosen subprotocol
# and the peer address; on_handshake can refuse or add headers.
# POD: EV::Websockets, "connect", "listen" (headers, on_handshake),
# "get_protocol", "peer_address".
#
# What each side sees of the handshake: request and response headers,
# the subprotocol, on_handshake's verdict, peer addresses.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $sctx = EV::Websockets::Context->new;
my $cctx = EV::Websockets::Context->new;

my (%request, %response, @server, @client);
my $port = $sctx->listen(
    port         => 0,
    protocol     => 'chat',
    headers      => { 'Set-Cookie' => 'session=abc' },
    on_handshake => sub {
        my ($h) = @_;
        return 0 if $h->{Path} eq '/deny';
        return { 'X-Per-Connection' => 'yes' } if $h->{Path} eq '/chat';
        return 1;
    },
    on_connect => sub {
        my ($conn, $h) = @_;
        %request = %$h;
        push @server, [ $conn->get_protocol, $conn->peer_address ];
    },
);

my $client = $cctx->connect(
    url        => "ws://127.0.0.1:$port//ch%61t?room=1",
    protocol   => 'other, chat',
    headers    => { Authorization => 'Bearer t0k', 'X-Custom' => 'v' },
    on_connect => sub {
        my ($conn, $h) = @_;
        %response = %$h;
        push @client, [ $conn->get_protocol, $conn->peer_address ];
    },
);
ok(run_until(sub { @server && @client }), 'handshake completed');

is($request{Path}, '/chat', 'server sees the normalised Path');
is($request{Query}, 'room=1', '... the Query');
is($request{URI}, '//ch%61t?room=1', '... the raw URI');
is($request{Host}, "127.0.0.1:$port", '... Host with the port');
is($request{Origin}, "http://127.0.0.1:$port", '... Origin');
is($request{Authorization}, 'Bearer t0k', '... user headers');
is($request{'X-Custom'}, 'v', '... under canonical names');
is($request{'Sec-WebSocket-Protocol'}, 'other, chat', '... the offered protocols');
ok(!exists $request{'User-Agent'}, 'no User-Agent unless given');

is($response{'Set-Cookie'}, 'session=abc', 'client sees the listener headers');
is($response{'X-Per-Connection'}, 'yes', '... and those from on_handshake');
is($response{'Sec-WebSocket-Protocol'}, 'chat', '... and the chosen protocol');

is_deeply($server[0], [ 'chat', '127.0.0.1' ], 'server: get_protocol and peer_address');
is_deeply($client[0], [ 'chat', '127.0.0.1' ], 'client: get_protocol and peer_address');

my (@errors, $rejected_connect);
$cctx->connect(
    url        => "ws://127.0.0.1:$port/deny",
    on_connect => sub { $rejected_connect++ },
    on_error   => sub { push @errors, $_[1] },
);
ok(run_until(sub { @errors }), 'rejected client gets on_error');
is($errors[0], 'handshake failed: HTTP 403 Forbidden', '... naming the 403');
ok(!$rejected_connect, '... and no on_connect');
is(scalar(() = $sctx->connections), 1, 'the rejected one never became a server connection');

$client->close;
ok(run_until(sub { !$client->is_connected && $client->state eq 'closed' }), 'client closed');
is($client->peer_address, undef, 'peer_address is undef once closed');
is($client->get_protocol, undef, 'get_protocol is undef once closed');

done_testing;
