# Proves: max_backpressure drops a message that would take the send queue
# past the limit (send returns false, dropped_messages counts it), queues
# it otherwise (send returns true), exempts pings; close_on_backpressure_limit
# closes with 1008 instead; without a limit every send is queued; publish
# skips (or, with close_on_backpressure_limit, closes) a subscriber over
# its limit and still reaches the others.
# POD: EV::Websockets, "max_backpressure", "close_on_backpressure_limit",
# "send", "dropped_messages", "publish", "Limits and their defaults".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $LIMIT = 1 << 20;
my $BIG   = 'B' x (256 << 10);

# A server with %opts and a client that pauses reading as soon as it is
# open, so what the server sends stays queued once the kernel's buffers
# are full.  Returns the server's connection and the client's events.
sub paused_pair {
    my (%opts) = @_;
    my $ctx = EV::Websockets::Context->new;
    my (%srv, %cli);
    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub { $srv{conn} = $_[0] },
        on_pong    => sub { push @{ $srv{pongs} }, $_[1] },
        on_close   => sub { $srv{closed} = [ @_[ 1, 2 ] ] },
        %opts,
    );
    $cli{conn} = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->pause_recv; $cli{open} = 1 },
        on_message => sub { $cli{messages}++ },
        on_close   => sub { $cli{closed} = [ @_[ 1, 2 ] ] },
        on_error   => sub { $cli{error} = $_[1] },
    );
    ok(run_until(sub { $srv{conn} && $cli{open} }), 'connected; the client paused');
    return ($ctx, \%srv, \%cli);
}

# Send $BIG until a send returns false (bounded), running the loop between
# sends so the queue is written as far as the kernel takes it.
sub fill {
    my ($conn) = @_;
    my ($queued, $dropped_at) = (0, 0);
    for my $i (1 .. 400) {
        if ($conn->send_binary($BIG)) {
            $queued++;
        }
        else {
            $dropped_at = $i;
            last;
        }
        EV::run(EV::RUN_NOWAIT);
    }
    return ($queued, $dropped_at);
}

subtest 'over the limit: dropped and counted; pings still go' => sub {
    my ($ctx, $srv, $cli) = paused_pair(max_backpressure => $LIMIT);
    my $conn = $srv->{conn};
    is($conn->dropped_messages, 0, 'nothing dropped yet');
    is($conn->send('small'), 1, 'send returns 1 when queued');
    my ($queued, $dropped_at) = fill($conn);
    ok($dropped_at, "a send returned false after $queued were queued");
    ok($conn->send_queue_size <= $LIMIT, 'the queue stays within the limit');
    is($conn->dropped_messages, 1, 'dropped_messages counts it');
    ok(!$conn->send('x' x ($LIMIT + 1)), 'a message larger than the limit is dropped');
    ok(!$conn->send_fragment('f' x (256 << 10), 1, 0), 'a first fragment over the limit is dropped');
    is($conn->dropped_messages, 3, 'each drop counted');
    is($conn->state, 'connected', 'the connection stays open');
    $conn->send_ping('still');
    $cli->{conn}->resume_recv;
    ok(run_until(sub { $srv->{pongs} }), 'the ping went out and was answered');
    is_deeply($srv->{pongs}, ['still'], 'its pong');
    ok(run_until(sub { ($cli->{messages} // 0) >= $queued + 1 }), 'every queued message arrived');
    $conn->close;
    ok(run_until(sub { $cli->{closed} }), 'closed');
    is($cli->{closed}[0], 1000, 'with the normal code');
};

subtest 'close_on_backpressure_limit: closes with 1008' => sub {
    my ($ctx, $srv, $cli) = paused_pair(max_backpressure => $LIMIT, close_on_backpressure_limit => 1);
    my $conn = $srv->{conn};
    my ($queued, $dropped_at) = fill($conn);
    ok($dropped_at, 'a send returned false');
    is($conn->dropped_messages, 1, 'the message was dropped');
    is($conn->state, 'closing', 'the connection is closing');
    $cli->{conn}->resume_recv;
    ok(run_until(sub { $cli->{closed} }), "the client's on_close ran");
    is_deeply($cli->{closed}, [ 1008, 'backpressure limit exceeded' ], 'with 1008 and the reason');
    is($cli->{messages}, $queued, 'after what was queued');
};

subtest 'no limit: every send is queued' => sub {
    my ($ctx, $srv, $cli) = paused_pair();
    my $conn = $srv->{conn};
    my $all = 1;
    for (1 .. 24) {
        $all &&= $conn->send_binary($BIG);
        EV::run(EV::RUN_NOWAIT);
    }
    ok($all, 'send returned true every time');
    ok($conn->send_queue_size > 0, 'with data waiting');
    is($conn->dropped_messages, 0, 'nothing dropped');
    ok($cli->{conn}->send('from the client'), 'a client without a limit: true');
    $cli->{conn}->resume_recv;
    ok(run_until(sub { ($cli->{messages} // 0) >= 24 }), 'all arrived');
    $conn->close;
    ok(run_until(sub { $cli->{closed} }), 'closed');
};

# A server with %opts whose connections all subscribe to 'feed', a slow
# client that pauses reading once open, and a fast one.  Publish $BIG
# until a publish reaches only one subscriber (bounded), running the loop
# between publishes.
sub publish_to_slow_and_fast {
    my (%opts) = @_;
    my $ctx = EV::Websockets::Context->new;
    my (%srv, %slow, %fast);
    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub { $_[0]->subscribe('feed'); $srv{open}++ },
        %opts,
    );
    for my $client (\%slow, \%fast) {
        $client->{conn} = $ctx->connect(
            url        => "ws://127.0.0.1:$port/",
            on_connect => sub { $_[0]->pause_recv if $client == \%slow; $client->{open} = 1 },
            on_message => sub { $client->{messages}++ },
            on_close   => sub { $client->{closed} = [ @_[ 1, 2 ] ] },
        );
        ok(run_until(sub { $client->{open} && $srv{open} == ($client == \%slow ? 1 : 2) }),
            $client == \%slow ? 'the slow client connected and paused' : 'the fast client connected');
    }
    my ($published, $to_one) = (0, 0);
    for (1 .. 400) {
        my $n = $ctx->publish('feed', $BIG, binary => 1);
        $published++;
        $to_one = 1, last if $n == 1;
        is($n, 2, 'a publish within the limit reaches both') or last;
        EV::run(EV::RUN_NOWAIT);
    }
    ok($to_one, "publish number $published reached one subscriber: the slow one was over its limit");
    return ($ctx, $published, \%slow, \%fast);
}

subtest 'publish skips a subscriber over its limit' => sub {
    my ($ctx, $published, $slow, $fast) = publish_to_slow_and_fast(max_backpressure => $LIMIT);
    is($ctx->subscribers('feed'), 2, 'the slow subscriber stays subscribed');
    ok(run_until(sub { ($fast->{messages} // 0) == $published }), 'the fast client got every message');
    $slow->{conn}->resume_recv;
    ok(run_until(sub { ($slow->{messages} // 0) == $published - 1 }), 'the slow one all but the skipped one');
    is($ctx->publish('feed', 'after'), 2, 'once drained, it is published to again');
    ok(run_until(sub { $slow->{messages} == $published && $fast->{messages} == $published + 1 }),
        'both got it');
};

subtest 'publish with close_on_backpressure_limit closes the slow subscriber' => sub {
    my ($ctx, $published, $slow, $fast) =
        publish_to_slow_and_fast(max_backpressure => $LIMIT, close_on_backpressure_limit => 1);
    $slow->{conn}->resume_recv;
    ok(run_until(sub { $slow->{closed} }), "the slow client's on_close ran");
    is_deeply($slow->{closed}, [ 1008, 'backpressure limit exceeded' ], 'with 1008');
    is($ctx->publish('feed', 'after'), 1, 'later publishes reach the fast one alone');
    ok(run_until(sub { ($fast->{messages} // 0) == $published + 1 }), 'which got every message');
    ok(!$fast->{closed}, 'and stays open');
};

subtest 'connect takes the options' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $open;
    my $port = echo_server($ctx);
    my $c    = $ctx->connect(
        url                         => "ws://127.0.0.1:$port/",
        max_backpressure            => 10,
        close_on_backpressure_limit => 0,
        on_connect                  => sub { $open = 1 },
    );
    ok(run_until(sub { $open }), 'connected');
    ok($c->send('0123456789'), 'a message up to the limit is queued');
    ok(!$c->send('x'), 'one more byte is not');
    is($c->dropped_messages, 1, 'counted on the client');
    $c->close;
    run_until(sub { $c->state eq 'closed' });
    is($c->dropped_messages, 1, 'still known once closed');
};

done_testing;
