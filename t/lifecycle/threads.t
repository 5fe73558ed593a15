# Proves: connections survive threads that start and end, and contexts work in
# any thread.
# POD: EV::Websockets, "Threads".
#
# Regressions with ithreads.  A thread created while connection objects
# exist must not get copies of them: a clone shared the parent's connection
# and freed it when the thread ended, so the parent later used or freed it a
# second time.  And nothing interpreter-specific may be kept in a static:
# the Connection stash was, so a context made in a thread blessed its
# connections into another interpreter's stash and crashed.
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
use B ();
use Scalar::Util qw(refaddr);
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

# Whether an object is blessed into the calling interpreter's own
# Connection stash (not merely one of that name).
sub own_stash {
    my ($obj) = @_;
    my $stash = B::svref_2object($obj)->SvSTASH->object_2svref;
    return refaddr($stash) == refaddr(\%EV::Websockets::Connection::) ? 'own stash' : 'foreign stash';
}

# An echo on a loop of its own, all inside the calling interpreter: what a
# thread does with its own context.  Returns what came back, and the class
# and stash of the client's and the server's connection objects.
sub echo_on_own_loop {
    my ($text) = @_;
    my $loop = EV::Loop->new;
    my $ctx  = EV::Websockets::Context->new(loop => $loop, proxy => '');
    my $server;
    my $port = $ctx->listen(port => 0, host => '127.0.0.1',
        on_message => sub { $server = ref($_[0]) . ' in its ' . own_stash($_[0]); $_[0]->send($_[1]) });
    my $got;
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send($text) },
        on_message => sub { $got = $_[1]; $loop->break },
    );
    my $limit = $loop->timer(5, 0, sub { $loop->break });
    $loop->run;
    my $client = ref($conn) . ' in its ' . own_stash($conn);
    $conn->close;
    undef $conn;
    undef $ctx;
    return ($got // 'nothing') . " ($client; $server)";
}

subtest 'contexts made in two threads at once, then in the main interpreter' => sub {
    my @threads = map { my $n = $_; threads->create(sub { echo_on_own_loop("thread $n") }) } 1, 2;
    my @got = map { $_->join } @threads;
    my $own = 'EV::Websockets::Connection in its own stash';
    is_deeply(\@got, [ "thread 1 ($own; $own)", "thread 2 ($own; $own)" ],
        'each thread echoed on its own loop, with connection objects of its own interpreter');
    is(echo_on_own_loop('main'), "main ($own; $own)", 'the main interpreter still works afterwards');
    my $ctx  = EV::Websockets::Context->new(proxy => '');
    my $port = echo_server($ctx, host => '127.0.0.1');
    my $got;
    my $conn = $ctx->connect(url => "ws://127.0.0.1:$port/", on_connect => sub { $_[0]->send('default') },
        on_message => sub { $got = $_[1] });
    ok(run_until(sub { defined $got }, 3), '... and on the default loop');
    is($got, 'default', '... echoing');
};

done_testing;
