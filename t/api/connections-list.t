# $ctx->connections and context destruction (BEHAVIOR.md section 2
# "DESTROY" and API.md "connections").
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
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

subtest 'connections lists connected and closing connections only' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%ev, %peer, %conn);
    my $url = sub { 'ws://127.0.0.1:' . $_[0]->port . '/' };

    $peer{open}    = RawPeer->server;
    $peer{closing} = RawPeer->server(reply_close => 0);    # keeps it "closing"
    $peer{dropped} = RawPeer->server(on_open => sub { $_[0]->send_frame(opcode => 8, payload => RawPeer::close_payload(1000)) });
    # A TCP listener that never answers: the client stays "connecting".
    my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "listen: $@";
    my $dead = closed_port();

    for my $name (qw(open closing dropped)) {
        $ev{$name} = {};
        $conn{$name} = $ctx->connect(url => $url->($peer{$name}), recording($ev{$name}));
    }
    $conn{connecting} = $ctx->connect(url => 'ws://127.0.0.1:' . $silent->sockport . '/');
    $ev{failed}       = {};
    $conn{failed}     = $ctx->connect(url => "ws://127.0.0.1:$dead/", recording($ev{failed}));

    is(scalar $ctx->connections, 0, 'nothing listed while all are connecting');
    ok(run_until(sub {
        $ev{open}{connect} && $ev{closing}{connect} && $ev{dropped}{close} && $ev{failed}{error}
    }), 'connections reached their states');
    $conn{closing}->close(1000);

    my %state = map { $_ => $conn{$_}->state } keys %conn;
    is_deeply(\%state, { open => 'connected', closing => 'closing', dropped => 'closed',
        connecting => 'connecting', failed => 'closed' }, 'the five states');
    my @list = $ctx->connections;
    is(scalar @list, 2, 'list context: two connections');
    my %listed = map { my $c = $_; map { $_ => 1 } grep { $conn{$_} == $c } keys %conn } @list;
    is_deeply(\%listed, { open => 1, closing => 1 }, '... the connected and the closing one');
    is(scalar $ctx->connections, 2, 'scalar context: the count, 2');
    isa_ok($_, 'EV::Websockets::Connection') for @list;

    $conn{open}->close;
    ok(run_until(sub { $ev{open}{close} }), 'the open one closed');
    is(scalar $ctx->connections, 1, 'count 1 once it is closed');
};

subtest 'server connections are listed until they close' => sub {
    my ($peer, $ev) = listen_raw();
    ok(run_until(sub { $ev->{connect} }), 'raw client connected');
    my @list = $ev->{ctx}->connections;
    is(scalar @list, 1, 'one connection listed');
    ok(@list && $list[0] == $ev->{conn}, '... the server connection');
    $peer->send_frame(opcode => 8, payload => RawPeer::close_payload(1000));
    ok(run_until(sub { $ev->{close} }), 'closed by the peer');
    is(scalar $ev->{ctx}->connections, 0, 'none listed afterwards');
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

subtest 'undef $ctx inside on_message' => sub {
    my $r = destroy_in_on_message(sub { undef ${ $_[0] } });
    ok(!defined $r->{ctx}, 'the context is gone');
    check_detached('undef', $r);
};

subtest 'explicit $ctx->DESTROY inside on_message' => sub {
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
