# Proves: a context with pubsub, however it ends (destroyed once
# connected, shut down, destroyed from its own on_error or on_connect),
# leaves no Perl value behind: its callbacks and what they capture go.
# POD: EV::Websockets, "pubsub", "Destroying a context".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use EV;
use EV::Websockets;
use TestWS qw(run_until closed_port need_peer);
use RedisServer;

BEGIN {
    my $have = eval { require Test::LeakTrace; Test::LeakTrace->import; 1 };
    need_peer('Test::LeakTrace', $have, 'Test::LeakTrace is not installed (Debian: libtest-leaktrace-perl)');
}

my $guard = EV::timer(60, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });
my $ROUNDS = 5;
my $redis  = RedisServer->start;
my $url    = $redis->url;
my $refused = 'redis://127.0.0.1:' . closed_port();

# Each scenario counts the rounds it completed: one that stopped early
# cannot pass as leak-free.
my $done;

no_leaks_ok {
    for (1 .. $ROUNDS) {
        my $up = 0;
        my $ctx = EV::Websockets::Context->new(pubsub => {
            redis => $url, on_connect => sub { $up++ }, on_error => sub { },
        });
        run_until(sub { $up }, 5) or next;
        $ctx->publish(leak => 'x');
        my $stats = $ctx->pubsub_stats;
        undef $ctx;
        $done++;
    }
} 'connected, publishing, destroyed';
is $done, 2 * $ROUNDS, '... every round';

$done = 0;
no_leaks_ok {
    for (1 .. $ROUNDS) {
        my ($up, $shut) = (0, 0);
        my $ctx = EV::Websockets::Context->new(pubsub => { redis => $url, on_connect => sub { $up++ } });
        run_until(sub { $up }, 5) or next;
        $ctx->shutdown(cb => sub { $shut++ });
        run_until(sub { $shut }, 5) or next;
        $done++;
    }
} 'connected, shut down';
is $done, 2 * $ROUNDS, '... every round';

$done = 0;
no_leaks_ok {
    for (1 .. $ROUNDS) {
        my $ctx;
        $ctx = EV::Websockets::Context->new(pubsub => { redis => $url, on_connect => sub { undef $ctx } });
        run_until(sub { !$ctx }, 5) and $done++;
    }
} 'destroyed from on_connect';
is $done, 2 * $ROUNDS, '... every round';

$done = 0;
no_leaks_ok {
    for (1 .. $ROUNDS) {
        my $ctx;
        $ctx = EV::Websockets::Context->new(pubsub => { redis => $refused, on_error => sub { undef $ctx } });
        run_until(sub { !$ctx }, 5) and $done++;
    }
} 'destroyed from on_error';
is $done, 2 * $ROUNDS, '... every round';

no_leaks_ok {
    eval { EV::Websockets::Context->new(pubsub => { redis => $url, on_connect => sub { }, nope => 1 }) };
    eval { EV::Websockets::Context->new(pubsub => { redis => 'http://x', on_error => sub { } }) };
} 'bad settings croak without a leak';

done_testing;
