# Proves: bad pubsub settings croak with a message naming what is wrong
# (and create nothing); without pubsub, pubsub_stats is undef; a bridge to
# a port where nothing listens reports on_error once per attempt and
# counts publishes as dropped; destroying the context inside on_error is
# safe and stops the bridge.
# POD: EV::Websockets, "pubsub", "pubsub_stats", "Topics across processes
# (Redis)".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use EV;
use EV::Websockets;
use TestWS qw(closed_port run_until);

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $url = 'redis://127.0.0.1:' . closed_port();
my @bad = (
    [ [],                                        qr/^pubsub must be a hash reference/ ],
    [ 'redis://127.0.0.1',                       qr/^pubsub must be a hash reference/ ],
    [ {},                                        qr/^pubsub: redis is required \(a redis:\/\/ URL\)/ ],
    [ { redis => $url, port => 1 },              qr/^pubsub: unknown key 'port' \(known: redis, prefix, on_connect, on_error\)/ ],
    [ { redis => [] },                           qr/^pubsub: redis must be a string/ ],
    [ { redis => undef },                        qr/^pubsub: redis must be a string/ ],
    [ { redis => $url, prefix => {} },           qr/^pubsub: prefix must be a string/ ],
    [ { redis => 'http://127.0.0.1' },           qr/^pubsub: redis: scheme must be redis:\/\/, not http:\/\// ],
    [ { redis => 'rediss://127.0.0.1' },         qr/^pubsub: redis: rediss:\/\/ \(TLS\) is not supported/ ],
    [ { redis => 'redis://127.0.0.1/zero' },     qr/^pubsub: redis: database must be a number, not 'zero'/ ],
    [ { redis => 'redis://u@127.0.0.1' },        qr/^pubsub: redis: a user name needs a password/ ],
    [ { redis => '127.0.0.1:6379' },             qr/^pubsub: redis: '127.0.0.1:6379' is not a URL/ ],
    [ { redis => $url, on_connect => 'x' },      qr/^pubsub: on_connect must be a code reference/ ],
    [ { redis => $url, on_error => {} },         qr/^pubsub: on_error must be a code reference/ ],
);
for my $case (@bad) {
    my ($value, $want) = @$case;
    my $ctx = eval { EV::Websockets::Context->new(pubsub => $value) };
    like $@, $want, 'croaks: ' . ($want =~ s/^\(\?\^:\^?//r);
    ok !$ctx, '... and makes no context';
}

is +EV::Websockets::Context->new->pubsub_stats, undef, 'no pubsub: no stats';
ok +EV::Websockets::Context->new(pubsub => undef), 'pubsub => undef: none';
ok +EV::Websockets::Context->new(pubsub => { redis => 'redis://[::1]:1/2', prefix => '' }),
    'an IPv6 address, a database, an empty prefix';

subtest 'nothing listens: on_error per attempt, publishes dropped' => sub {
    my @errors;
    my $ctx = EV::Websockets::Context->new(pubsub => {
        redis    => $url,
        on_error => sub { push @errors, [ @_ ] },
        on_connect => sub { fail('no server: never connected') },
    });
    is $ctx->publish('news', 'lost'), 0, 'no local subscriber';
    is_deeply $ctx->pubsub_stats,
        { connected => 0, published => 0, received => 0, dropped => 1, reconnects => 0, channels => 0 },
        'not connected: dropped, not queued';
    ok run_until(sub { @errors >= 2 }, 10), 'retried after the first failure';
    is $errors[0][0], $ctx, 'on_error gets the context';
    like $errors[0][1], qr/^cannot connect to Redis at 127\.0\.0\.1:\d+: /, '... and what failed';
};

subtest 'destroying the context inside on_error' => sub {
    my ($ctx, $calls);
    $ctx = EV::Websockets::Context->new(pubsub => {
        redis    => $url,
        on_error => sub { $calls++; undef $ctx },
    });
    ok run_until(sub { !$ctx }, 10), 'on_error ran and dropped the context';
    my $after = 0;
    my $t = EV::timer(0.5, 0, sub { $after = 1 });
    ok run_until(sub { $after }, 2), 'the loop goes on';
    is $calls, 1, 'no call after the context went';
};

subtest 'shutdown stops the bridge' => sub {
    my $errors = 0;
    my $ctx = EV::Websockets::Context->new(pubsub => { redis => $url, on_error => sub { $errors++ } });
    ok run_until(sub { $errors }, 10), 'failing';
    my $done;
    $ctx->shutdown(cb => sub { $done = 1 });
    ok run_until(sub { $done }, 5), 'shut down';
    my $before = $errors;
    my $t = EV::timer(0.6, 0, sub { EV::break });
    EV::run;
    is $errors, $before, 'no attempt after shutdown';
    is $ctx->pubsub_stats->{connected}, 0, 'stats stay readable';
};

done_testing;
