# Proves: $ctx->connections lists the connected and closing connections of
# both ends, and none once they are closed.
# POD: EV::Websockets, "connections" and "STATES".
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

done_testing;
