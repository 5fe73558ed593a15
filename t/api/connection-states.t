# Proves: state, is_connected and is_connecting on both ends, inside and
# between callbacks, and when a connection is in connections.
# POD: EV::Websockets, "state, is_connected, is_connecting", "STATES",
# "connections".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use Scalar::Util qw(weaken);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $ctx = EV::Websockets::Context->new;
# Callbacks reach the context through a weak copy so that it is not kept
# alive by a reference cycle through its own listener.
my $wctx = $ctx;
weaken($wctx);

my (@events, %server, %client);

my $port = $ctx->listen(
    port       => 0,
    on_connect => sub {
        my ($c) = @_;
        push @events, 'server connect';
        $server{conn}          = $c;
        $server{state}         = $c->state;
        $server{is_connected}  = $c->is_connected;
        $server{is_connecting} = $c->is_connecting;
        $server{in_list}       = grep { $_ == $c } $wctx->connections;
    },
    on_message => sub { },
    on_close   => sub {
        my ($c) = @_;
        push @events, 'server close';
        $server{close_state} = $c->state;
    },
    on_error => sub { push @events, "server error: $_[1]" },
);

my $client;
$client = $ctx->connect(
    url        => "ws://127.0.0.1:$port/",
    on_connect => sub {
        my ($c) = @_;
        push @events, 'client connect';
        $client{state}         = $c->state;
        $client{is_connected}  = $c->is_connected;
        $client{is_connecting} = $c->is_connecting;
        $client{count}         = scalar $wctx->connections;
        $client{in_list}       = grep { $_ == $c } $wctx->connections;

        $c->close(1000);
        $client{closing_state}         = $c->state;
        $client{closing_is_connected}  = $c->is_connected;
        $client{closing_is_connecting} = $c->is_connecting;
        # "closing" connections are still listed
        $client{closing_in_list} = grep { $_ == $c } $wctx->connections;
    },
    on_message => sub { push @events, 'client message' },
    on_close   => sub {
        my ($c) = @_;
        push @events, 'client close';
        $client{close_state}        = $c->state;
        $client{close_is_connected} = $c->is_connected;
    },
    on_error => sub { push @events, "client error: $_[1]" },
);

# Straight after connect: nothing has happened yet.
is($client->state, 'connecting', 'state is "connecting" right after connect');
ok($client->is_connecting, 'is_connecting is true');
ok(!$client->is_connected, 'is_connected is false');
is_deeply(\@events, [], 'no callback fired inside connect');
{
    my @list = $ctx->connections;
    is(scalar @list, 0, 'connections (list context) omits the connecting client');
    is(scalar $ctx->connections, 0, 'connections (scalar context) counts 0');
}

my $done = sub {
    (grep { $_ eq 'client close' } @events) && (grep { $_ eq 'server close' } @events);
};
ok(run_until($done, 5), 'both sides reached on_close');

is_deeply([ grep { /error/ } @events ], [], 'no errors');

# Server side
is($server{state}, 'connected', 'server connection is "connected" in its on_connect');
ok($server{is_connected}, '... is_connected is true there');
ok(!$server{is_connecting}, '... is_connecting is false there');
is($server{in_list}, 1, '... and it is in $ctx->connections inside its own on_connect');
is($server{close_state}, 'closed', 'server connection is "closed" inside on_close');

# Client side
is($client{state}, 'connected', 'client is "connected" inside on_connect');
ok($client{is_connected}, '... is_connected is true there');
ok(!$client{is_connecting}, '... is_connecting is false there');
is($client{count}, 2, 'connections counts both ends once the client is connected');
is($client{in_list}, 1, '... and lists the client connection');
is($client{closing_state}, 'closing', 'state is "closing" right after close(1000)');
ok(!$client{closing_is_connected}, '... is_connected is false while closing');
ok(!$client{closing_is_connecting}, '... is_connecting is false while closing');
is($client{closing_in_list}, 1, '... and the closing connection is still in connections');
is($client{close_state}, 'closed', 'client is "closed" inside on_close');
ok(!$client{close_is_connected}, '... is_connected is false inside on_close');

is($client->state, 'closed', 'client state is "closed" afterwards');
ok(!$client->is_connected, 'is_connected is false afterwards');
ok(!$client->is_connecting, 'is_connecting is false afterwards');
is($server{conn}->state, 'closed', 'held server connection is "closed" afterwards');
{
    my @list = $ctx->connections;
    is(scalar @list, 0, 'connections is empty once both ends closed');
    is(scalar $ctx->connections, 0, '... and counts 0 in scalar context');
}

is((grep { $_ eq 'client connect' } @events), 1, 'client on_connect fired once');
is((grep { $_ eq 'server connect' } @events), 1, 'server on_connect fired once');
is((grep { $_ eq 'client close' } @events), 1, 'client on_close fired once');
is((grep { $_ eq 'server close' } @events), 1, 'server on_close fired once');

# close() while still connecting is a no-op and does not cancel the connect.
{
    my ($connected, $closed) = (0, 0);
    my $c = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $connected++; $_[0]->close },
        on_close   => sub { $closed++ },
    );
    ok(eval { $c->close(1000); 1 }, 'close while connecting does not croak');
    is($c->state, 'connecting', '... and the state stays "connecting"');
    ok(run_until(sub { $closed }, 5), 'the connection still completes and later closes');
    is($connected, 1, '... after on_connect fired once');
}

done_testing;
