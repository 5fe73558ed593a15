# Regression: a thread created while connection objects exist must not get
# copies of them.  A clone shared the parent's connection and freed it when
# the thread ended, so the parent later used or freed it a second time.
use strict;
use warnings;
use Config;

BEGIN {
    # threads must be loaded before Test::More to be supported by it.
    if (!$Config{useithreads} || !eval { require threads; threads->import; 1 }) {
        require Test::More;
        Test::More::plan(skip_all => 'this perl has no working threads');
    }
}

use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

subtest 'connections survive a thread that starts and ends' => sub {
    my $ctx = EV::Websockets::Context->new;
    my @server;
    my $port = echo_server($ctx, host => '127.0.0.1', on_connect => sub { push @server, $_[0] });
    my @got;
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_message => sub { push @got, $_[1] },
    );
    ok(run_until(sub { $conn->is_connected && @server }, 3), 'connected (client and server objects exist)');

    my $in_thread = threads->create(sub {
        # The thread's copies are not connection objects.
        my $copy = $conn;
        return ref($copy) && eval { $copy->isa('EV::Websockets::Connection') } ? 'connection' : 'no connection';
    })->join;
    is($in_thread, 'no connection', 'the thread got no copy of the connection');

    # A second thread, after the first one's copies were freed.
    threads->create(sub { 1 })->join;

    is($conn->state, 'connected', 'still connected after the threads ended');
    $conn->send('after the threads');
    ok(run_until(sub { @got }, 3), 'the connection still works');
    is_deeply(\@got, ['after the threads'], '... and echoes the message');

    $conn->close(1000);
    ok(run_until(sub { $conn->state eq 'closed' }, 3), 'closed normally');
    undef $conn;
    @server = ();
    undef $ctx;
    pass('connection and context freed once');
};

subtest 'a thread created inside a callback' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx, host => '127.0.0.1');
    my ($joined, @got);
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c) = @_;
            threads->create(sub { 1 })->join;
            $joined = 1;
            $c->send('from on_connect');
        },
        on_message => sub { push @got, $_[1] },
    );
    ok(run_until(sub { @got }, 3), 'message echoed after a thread ran inside on_connect');
    ok($joined, 'the thread was joined');
    is_deeply(\@got, ['from on_connect'], 'the right message');
    $conn->close;
    run_until(sub { $conn->state eq 'closed' }, 2);
};

done_testing;
