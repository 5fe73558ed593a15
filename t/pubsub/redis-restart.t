# Proves: when Redis goes away the bridge reports on_error, publishes still
# reach local subscribers and are counted dropped (not queued), and after
# Redis comes back it reconnects (on_connect again, reconnects counted),
# resubscribes, and messages flow again with none duplicated or replayed;
# destroying the context inside on_connect or on_error is safe.
# POD: EV::Websockets, "pubsub", "pubsub_stats", "Topics across processes
# (Redis)".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use EV;
use EV::Websockets;
use TestWS qw(run_until);
use RedisServer;
use PubsubNode;

my $guard = EV::timer(60, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $redis = RedisServer->start;
# Two contexts, two bridges (each its own origin): as two processes.
my ($a, $b) = map { PubsubNode->new(redis => $redis->url) } 1 .. 2;
ok run_until(sub { $a->connects && $b->connects }, 10), 'both bridged';

my $clients = EV::Websockets::Context->new;
my (%got, %open, @replies);
my %conn;
for my $name (qw(a b)) {
    my $node = $name eq 'a' ? $a : $b;
    $conn{$name} = $clients->connect(
        url        => 'ws://127.0.0.1:' . $node->port . '/',
        on_connect => sub { $open{$name} = 1 },
        on_message => sub {
            my (undef, $data) = @_;
            if ($data =~ /\Aok\b/) { push @replies, $data } else { push @{ $got{$name} }, $data }
        },
    );
}
ok run_until(sub { $open{a} && $open{b} }, 10), 'a client on each';
sub ask { my $n = @replies; $conn{ $_[0] }->send($_[1]); run_until(sub { @replies > $n }, 10); $replies[-1] }
is ask('b', 'sub news'), 'ok', 'the client of b subscribes';
my $poll = EV::timer(0.02, 0.02, sub {});
ok run_until(sub { $redis->command('PUBSUB', 'NUMSUB', 'test:news')->[1] == 1 }, 10), 'b SUBSCRIBEd';
undef $poll;

is $a->ctx->publish('news', 'before'), 0, 'a publishes (no local subscriber)';
ok run_until(sub { @{ $got{b} // [] } == 1 }, 10), 'b\'s client got it through Redis';

$redis->kill_now;
ok run_until(sub { @{ $a->errors } && @{ $b->errors } }, 10), 'both report the loss';
like $a->errors->[0], qr/Redis/, 'on_error says what: ' . $a->errors->[0];
is $a->ctx->pubsub_stats->{connected}, 0, 'not connected';
is ask('b', 'pub news during'), 'ok 1', 'a publish during the outage still reaches the local subscriber';
$a->ctx->publish('news', 'lost');
is $a->ctx->pubsub_stats->{dropped}, 1, 'a: counted dropped';
is $b->ctx->pubsub_stats->{dropped}, 1, 'b: counted dropped';

$redis->start_again;
ok run_until(sub { $a->connects == 2 && $b->connects == 2 }, 15), 'both reconnected: on_connect again';
is $a->ctx->pubsub_stats->{reconnects}, 1, 'reconnects: 1';
is $b->ctx->pubsub_stats->{connected}, 1, 'connected again';
is $b->ctx->pubsub_stats->{channels}, 1, 'still one channel';
is $redis->command('PUBSUB', 'NUMSUB', 'test:news')->[1], 1, 'b resubscribed before on_connect';
$a->ctx->publish('news', 'after');
ok run_until(sub { grep { $_ eq 'after' } @{ $got{b} } }, 10), 'messages flow again';
is_deeply $got{b}, [ 'before', 'during', 'after' ], 'nothing lost but the outage\'s, nothing twice';
my $s = $a->ctx->pubsub_stats;
is_deeply [ @$s{qw(published dropped)} ], [ 2, 1 ], 'a: published 2, dropped 1';

subtest 'destroying the context inside on_connect' => sub {
    my ($ctx, $calls);
    $ctx = EV::Websockets::Context->new(pubsub => {
        redis => $redis->url, on_connect => sub { $calls++; undef $ctx },
    });
    ok run_until(sub { !$ctx }, 10), 'on_connect ran and dropped the context';
    is $calls, 1, 'once';
};

subtest 'destroying the context inside on_error after a loss' => sub {
    my ($ctx, $errors) = (undef, 0);
    my $up;
    $ctx = EV::Websockets::Context->new(pubsub => {
        redis => $redis->url, on_connect => sub { $up = 1 }, on_error => sub { $errors++; undef $ctx },
    });
    ok run_until(sub { $up }, 10), 'connected';
    $redis->kill_now;
    ok run_until(sub { !$ctx }, 10), 'on_error ran and dropped the context';
    is $errors, 1, 'once';
};

done_testing;
