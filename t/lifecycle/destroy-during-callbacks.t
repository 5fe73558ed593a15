use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# In each case the peer lives in a second context, so that it survives and
# can observe what happens to the connection.

subtest 'undef $ctx inside on_message' => sub {
    my $sctx = EV::Websockets::Context->new;
    my @server_close;
    my $port = echo_server($sctx, on_close => sub { push @server_close, [ @_[1, 2] ] });

    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };

    my $cctx = EV::Websockets::Context->new;
    my (@got, $client_closed, @client_errors);
    my $conn;
    $conn = $cctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send('a'); $_[0]->send('b') },
        on_message => sub {
            push @got, $_[1];
            undef $cctx;    # the only reference to the context
        },
        on_close => sub { $client_closed++ },
        on_error => sub { push @client_errors, $_[1] },
    );

    ok(run_until(sub { @server_close }, 5), 'server noticed the client went away');
    run_for(0.3);    # any late client callback would fire here

    ok(!defined $cctx, 'client context is gone');
    is_deeply(\@got, ['a'], 'no message delivered after the context was destroyed');
    ok(!$client_closed, 'client on_close did not fire');
    is_deeply(\@client_errors, [], 'client on_error did not fire');

    is($conn->state, 'closed', 'held connection reports "closed"');
    ok(!$conn->is_connected, 'is_connected is false');
    ok(!eval { $conn->send('x'); 1 }, 'send croaks');
    like($@, qr/^Connection is not open at /, '... with "Connection is not open"');
    ok(!eval { $conn->send_binary('x'); 1 }, 'send_binary croaks');
    like($@, qr/^Connection is not open at /, '... with "Connection is not open"');
    ok(eval { $conn->close(1000); 1 }, 'close is a silent no-op');
    $conn->stash->{k} = 'v';
    is($conn->stash->{k}, 'v', 'stash still works');

    is(scalar @server_close, 1, 'server on_close fired once');
    # 1001 from the best-effort close frame, or 1006 if it was lost.
    like($server_close[0][0] // '', qr/^100[16]\z/, 'server saw code 1001 or 1006');
    is_deeply(\@warnings, [], 'no warnings');
    undef $conn;
};

subtest 'explicit $ctx->DESTROY inside a server on_connect' => sub {
    my $sctx = EV::Websockets::Context->new;
    my (%seen, $server_conn, $server_closed, $server_errors);
    my $port = $sctx->listen(
        port       => 0,
        on_connect => sub {
            $server_conn = $_[0];
            $sctx->DESTROY;
            $seen{state}   = $server_conn->state;
            $seen{connect} = eval { $sctx->connect(url => 'ws://127.0.0.1:1/'); 1 } ? '' : $@;
            $seen{listen}  = eval { $sctx->listen(port => 0); 1 } ? '' : $@;
            $seen{list}    = [ $sctx->connections ];
            $seen{count}   = scalar $sctx->connections;
        },
        on_message => sub { },
        on_close   => sub { $server_closed++ },
        on_error   => sub { $server_errors++ },
    );

    my $cctx = EV::Websockets::Context->new;
    my ($client_closed, $client_errors) = (0, 0);
    my $client = $cctx->connect(
        url      => "ws://127.0.0.1:$port/",
        on_close => sub { $client_closed++ },
        on_error => sub { $client_errors++ },
    );

    # Whether the 101 got out first decides between on_close and on_error.
    ok(run_until(sub { $client_closed || $client_errors }, 5), 'client noticed the server went away');
    run_for(0.3);

    is($seen{state}, 'closed', 'server connection is "closed" right after DESTROY');
    like($seen{connect}, qr/^Context has been destroyed at /, 'connect croaks "Context has been destroyed"');
    like($seen{listen},  qr/^Context has been destroyed at /, 'listen croaks "Context has been destroyed"');
    is_deeply($seen{list}, [], 'connections is empty');
    is($seen{count}, 0, '... and counts 0');
    ok(!$server_closed, 'server on_close did not fire');
    ok(!$server_errors, 'server on_error did not fire');
    ok($client_closed <= 1, 'client on_close fired at most once');
    is($server_conn->state, 'closed', 'held server connection stays "closed"');
    ok(!eval { $server_conn->send('x'); 1 }, 'send on it croaks');
    like($@, qr/^Connection is not open at /, '... with "Connection is not open"');

    ok(eval { $sctx->DESTROY; 1 }, 'a second DESTROY is harmless');

    # The listening socket was closed too.
    my ($refused, $connected);
    $cctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $connected++; $_[0]->close },
        on_error   => sub { $refused++ },
    );
    ok(run_until(sub { $refused || $connected }, 5), 'a new connection attempt finished');
    ok($refused && !$connected, 'the destroyed context no longer accepts connections');
    undef $server_conn;
};

subtest 'dropping the last reference to $conn inside its own callback' => sub {
    my $sctx = EV::Websockets::Context->new;
    my $port = echo_server($sctx);

    my $cctx = EV::Websockets::Context->new;
    my (@got, $closed, @errors);
    my $conn;
    $conn = $cctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send('one') },
        on_message => sub {
            push @got, $_[1];
            if ($_[1] eq 'one') {
                undef $conn;             # the user's only reference
                $_[0]->send('two');      # the argument is still usable
            }
            else {
                $_[0]->close;
            }
        },
        on_close => sub { $closed++ },
        on_error => sub { push @errors, $_[1] },
    );

    ok(run_until(sub { $closed }, 5), 'connection went on to close normally');
    is_deeply(\@got, [qw(one two)], 'the connection kept working after the reference was dropped');
    is_deeply(\@errors, [], 'no errors');
};

done_testing;
