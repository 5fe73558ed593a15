# Proves: a context made with loop => $loop runs on that loop and leaves the
# default loop unused.
# POD: EV::Websockets, "new" (loop => $loop).
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

# Everything here runs on a private loop; the default loop must stay unused.
my $loop  = EV::Loop->new;
my $guard = $loop->timer(10, 0, sub { fail('timed out'); $loop->break(EV::BREAK_ALL) });

my $ctx = EV::Websockets::Context->new(loop => $loop);
my (@events, @got, $server_closed, $client_closed);

my $port = echo_server(
    $ctx,
    on_connect => sub { push @events, 'server connect' },
    on_close   => sub { push @events, 'server close'; $server_closed++; $loop->break if $client_closed },
);
my $conn = $ctx->connect(
    url        => "ws://127.0.0.1:$port/",
    on_connect => sub { push @events, 'client connect'; $_[0]->send('hello') },
    on_message => sub { push @got, $_[1]; $_[0]->close },
    on_close   => sub { push @events, 'client close'; $client_closed++; $loop->break if $server_closed },
    on_error   => sub { push @events, "client error: $_[1]" },
);

# The listener and the connecting client live on $loop, so the default loop
# has nothing to wait for.
{
    my $fired = 0;
    my $t = EV::timer(2, 0, sub { $fired++; EV::break });
    $t->keepalive(0);
    my $t0 = EV::time;
    EV::run;
    ok(!$fired && EV::time - $t0 < 1, 'the default loop has no watchers of the context');
    is_deeply(\@events, [], 'no callback fired while the default loop ran');
}

$loop->run;

is_deeply(\@got, ['hello'], 'echo over a context on a private loop');
is((grep { $_ eq 'client connect' } @events), 1, 'client connected once');
is((grep { $_ eq 'server connect' } @events), 1, 'server connected once');
ok($client_closed && $server_closed, 'both sides closed');
is_deeply([ grep { /error/ } @events ], [], 'no errors');

undef $conn;
undef $ctx;    # before its loop
pass('context destroyed before its private loop');

done_testing;
