# Proves: destroying the context or dropping the connection inside a callback
# is safe; what is left is detached and says so.
# POD: EV::Websockets, "Destroying a context", "EV::Websockets::Connection".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $NOT_OPEN = qr/^Connection is not open at /;
my $GONE     = qr/^Context has been destroyed at /;

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# In each case the peer lives in a second context, so that it survives and
# can observe what happens to the connection.

subtest 'undef $ctx inside on_message, seen from a peer context' => sub {
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

# A client connection whose raw server sends two messages in one write; the
# context is destroyed inside the first on_message by $destroy->(\$ctx).
# Returns what was observed.
sub destroy_in_on_message {
    my ($destroy) = @_;
    my %r = (ev => {}, ev2 => {});
    my $ctx = EV::Websockets::Context->new;
    $r{peer} = RawPeer->server(on_open => sub {
        my ($p) = @_;
        $p->send_raw(join '', map { $p->frame(payload => $_) } 'a', 'b');
    });
    $r{peer2} = RawPeer->server;    # a second, idle connection of the same context
    my $open_message_connection = sub {
        $r{conn} = $ctx->connect(
            url => 'ws://127.0.0.1:' . $r{peer}->port . '/',
            recording($r{ev}, on_message => sub {
                my ($c) = @_;
                return if $r{destroyed}++;
                $c->stash->{before} = 'kept';
                $c->send('queued before the destroy');
                $destroy->(\$ctx);
                $r{inside}{state} = $c->state;
                $r{inside}{send}  = croak_of(sub { $c->send('x') });
                $r{ctx} = $ctx;
            }),
        );
    };
    # The messages must arrive once the idle connection is open.
    $r{conn2} = $ctx->connect(
        url => 'ws://127.0.0.1:' . $r{peer2}->port . '/',
        recording($r{ev2}, on_connect => $open_message_connection),
    );
    run_until(sub { $r{ev2}{connect} && $r{destroyed} && $r{peer}{eof} && $r{peer2}{eof} }, 3);
    run_for(0.3);    # any callback after the destroy would fire here
    return \%r;
}

sub check_detached {
    my ($label, $r) = @_;
    my $c = $r->{conn};
    ok($r->{destroyed}, "$label: the context was destroyed inside on_message");
    is_deeply($r->{ev}{order}, [qw(connect message)], "$label: no callback after the destroy, no second message");
    is_deeply($r->{ev2}{order}, ['connect'], "$label: none on the other connection either");
    is($r->{inside}{state}, 'closed', qq{$label: "closed" right after the destroy});
    like($r->{inside}{send}, $NOT_OPEN, "$label: send croaks there");

    for my $held ([ 'message connection', $c ], [ 'idle connection', $r->{conn2} ]) {
        my ($name, $h) = @$held;
        is($h->state, 'closed', "$label, $name: state \"closed\"");
        ok(!$h->is_connected, "$label, $name: not connected");
        for my $m (qw(send send_binary send_ping send_pong send_fragment)) {
            like(croak_of(sub { $h->$m('x') }), $NOT_OPEN, "$label, $name: $m croaks \"Connection is not open\"");
        }
        is(croak_of(sub { $h->close(1000) }), '', "$label, $name: close is a no-op");
        like(croak_of(sub { $h->close(999) }), qr/^close: invalid close code 999 /,
            "$label, $name: an invalid close code still croaks");
        is(croak_of(sub { $h->pause_recv; $h->resume_recv }), '', "$label, $name: pause_recv/resume_recv are no-ops");
        is($h->peer_address, undef, "$label, $name: peer_address undef");
        is($h->get_protocol, undef, "$label, $name: get_protocol undef");
        is($h->send_queue_size, 0, "$label, $name: send_queue_size 0");
    }
    is($c->stash->{before}, 'kept', "$label: the stash kept its contents");
    $c->stash->{after} = 1;
    is($c->stash->{after}, 1, "$label: the stash still works");

    for my $p ([ 'message connection', $r->{peer} ], [ 'idle connection', $r->{peer2} ]) {
        my ($name, $peer) = @$p;
        is($peer->{close_code}, 1001, "$label, $name: the peer got a close frame 1001");
        is(scalar $peer->frames_of(8), 1, "$label, $name: ... one");
        is(($peer->opcodes)[-1], 8, "$label, $name: ... as the last frame");
        ok($peer->{eof}, "$label, $name: ... and the socket was closed");
    }
}

subtest 'undef $ctx inside on_message leaves its connections detached' => sub {
    my $r = destroy_in_on_message(sub { undef ${ $_[0] } });
    ok(!defined $r->{ctx}, 'the context is gone');
    check_detached('undef', $r);
};

subtest 'explicit $ctx->DESTROY inside on_message leaves its connections detached' => sub {
    my $r = destroy_in_on_message(sub { ${ $_[0] }->DESTROY });
    check_detached('DESTROY', $r);
    my $ctx = $r->{ctx};
    is(croak_of(sub { $ctx->DESTROY }), '', 'a second DESTROY is harmless');
    like(croak_of(sub { $ctx->connect(url => 'ws://127.0.0.1:1/') }), $GONE, 'connect croaks "Context has been destroyed"');
    like(croak_of(sub { $ctx->listen(port => 0) }), $GONE, 'listen croaks "Context has been destroyed"');
    is_deeply([ $ctx->connections ], [], 'connections is empty');
    is(scalar $ctx->connections, 0, '... count 0');
};

subtest 'explicit DESTROY of a context with a listener' => sub {
    my ($peer, $ev) = listen_raw(on_message => sub {
        my ($c) = @_;
        $c->stash->{seen}++;
        $c->send('reply');
    });
    ok(run_until(sub { $ev->{connect} }), 'raw client connected');
    my $port = $peer->port;
    $peer->send_frame(payload => 'hello');
    ok(run_until(sub { $ev->{message} && $peer->messages }), 'message received and answered');
    my @before = @{ $ev->{order} };
    $ev->{ctx}->DESTROY;
    ok(run_until(sub { $peer->{eof} }), 'the raw client was disconnected');
    run_for(0.2);
    is($peer->{close_code}, 1001, 'the raw client got a close frame 1001');
    is_deeply($ev->{order}, \@before, 'no server callback after DESTROY');
    is_deeply([ $peer->messages ], [ [ 1, 'reply' ] ], 'the raw client got the reply before');
    is($ev->{conn}->state, 'closed', 'the held server connection is "closed"');
    is(croak_of(sub { $ev->{ctx}->DESTROY }), '', 'a second DESTROY is harmless');

    my $refused;
    my $cctx = EV::Websockets::Context->new;
    my %cev;
    $cctx->connect(url => "ws://127.0.0.1:$port/", recording(\%cev));
    ok(run_until(sub { $cev{error} || $cev{connect} }), 'a new connection attempt finished');
    is_deeply($cev{order}, ['error'], 'the listening socket is closed: the connect fails');
};

done_testing;
