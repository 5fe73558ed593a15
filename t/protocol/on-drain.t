# Proves: on_drain fires once each time the send queue empties, with
# send_queue_size 0, never on an idle connection or after close().
# POD: EV::Websockets, "on_drain" and "send_queue_size".
#
# on_drain fires when the send queue goes
# from non-empty to empty, once per drain, with send_queue_size 0 inside;
# never on an idle connection, never after close().
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

subtest 'one send, one on_drain, queue empty inside it' => sub {
    my @size_in_drain;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub { $_[0]->send('hello') },
        on_drain   => sub { push @size_in_drain, $_[0]->send_queue_size },
    );
    ok(run_until(sub { $ev->{drain} && $peer->messages }), 'message written and received');
    run_for(0.2);
    is(scalar @{ $ev->{drain} }, 1, 'on_drain fired once');
    is_deeply(\@size_in_drain, [0], 'send_queue_size is 0 inside on_drain');
    is_deeply($ev->{drain}[0], [], 'on_drain gets only $conn');
    is_deeply($ev->{order}, [qw(connect drain)], 'after on_connect');
};

subtest 'no on_drain on an idle connection' => sub {
    my ($conn, $peer, $ev) = connect_raw(
        peer => { on_open => sub { $_[0]->send_frame(opcode => 9, payload => 'ping') } },
    );
    # The server side of an idle pair as well.
    my ($rpeer, $sev) = listen_raw();
    ok(run_until(sub { $ev->{connect} && $sev->{connect} && $peer->frames_of(10) }), 'connected; a ping was answered');
    run_for(0.3);
    is($ev->{drain},  undef, 'client: no on_drain without sends');
    is($sev->{drain}, undef, 'server: no on_drain without sends');
};

subtest 'once per drain' => sub {
    my $drains = 0;
    my @size_in_drain;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub { $_[0]->send('one'); $_[0]->send_binary('two'); $_[0]->send('three') },
        on_drain   => sub {
            my ($c) = @_;
            push @size_in_drain, $c->send_queue_size;
            # a send from inside on_drain starts a new drain
            $c->send('four') if ++$drains == 1;
        },
    );
    ok(run_until(sub { $peer->messages >= 4 && $drains >= 2 }), 'all four messages arrived');
    run_for(0.2);
    is($drains, 2, 'on_drain fired once for the three sends, once for the send inside on_drain');
    is_deeply(\@size_in_drain, [ 0, 0 ], 'send_queue_size was 0 each time');
    is_deeply([ map { $_->[1] } $peer->messages ], [qw(one two three four)], 'messages in order');
};

subtest 'our server: three sends, one on_drain' => sub {
    my ($peer, $ev) = listen_raw(
        on_connect => sub { $_[0]->send("s$_") for 1 .. 3 },
        on_drain   => sub { push @{ $_[0]->stash->{sizes} }, $_[0]->send_queue_size },
    );
    ok(run_until(sub { $peer->messages >= 3 && $ev->{drain} }), 'messages arrived');
    run_for(0.2);
    is(scalar @{ $ev->{drain} }, 1, 'on_drain fired once');
    is_deeply($ev->{conn}->stash->{sizes}, [0], 'send_queue_size 0 inside it');
};

subtest 'an 8 MiB send drains once, when everything was written' => sub {
    my $big = 'D' x (8 << 20);
    my (%seen, @samples);
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $c->send_binary($big);
            $seen{after_send} = $c->send_queue_size;
        },
        on_drain => sub {
            my ($c) = @_;
            push @{ $seen{in_drain} }, $c->send_queue_size;
        },
    );
    # Sample the queue at every loop iteration while the data goes out.
    # Alongside, what the peer has received so far (header included).
    my $sampler = EV::check(sub {
        push @samples, [ $conn->send_queue_size, length $peer->{rbuf} ] if $conn->is_connected;
    });
    ok(run_until(sub { $peer->messages && $ev->{drain} }, 5), 'the peer received the message');
    undef $sampler;
    run_for(0.2);
    is($seen{after_send}, 8 << 20, 'send_queue_size was 8 MiB right after send');
    is(scalar @{ $ev->{drain} || [] }, 1, 'on_drain fired exactly once');
    is_deeply($seen{in_drain}, [0], 'send_queue_size 0 inside it');
    is(length(($peer->messages)[0][1]), 8 << 20, 'the peer got all 8 MiB in one message');
    # send_queue_size counts payload bytes not yet handed to the socket: once
    # the peer has received some of the message, the count must be lower.
    my @stale = grep { $_->[1] > 14 && $_->[0] == 8 << 20 } @samples;
    ok(!@stale, 'send_queue_size went down as the bytes were written')
        or diag(sprintf '%d samples with the peer holding bytes but the queue still at 8 MiB, e.g. queue %d, peer %d',
            scalar @stale, @{ $stale[-1] });
    ok(@samples && $samples[-1][0] == 0, 'the queue ended empty');
    my $monotone = 1;
    $samples[$_][0] > $samples[ $_ - 1 ][0] and $monotone = 0 for 1 .. $#samples;
    ok($monotone, 'the queue only shrank');
};

subtest 'no on_drain after close()' => sub {
    my $drains = 0;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub { $_[0]->send('first') },
        on_drain   => sub {
            my ($c) = @_;
            return if ++$drains > 1;
            # after the first drain: queue more and close at once
            $c->send_binary('x' x (1 << 20));
            $c->send('last');
            $c->close(1000);
        },
    );
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    run_for(0.2);
    is($drains, 1, 'on_drain fired for the first send only, not after close()');
    is_deeply([ map { length $_->[1] } $peer->messages ], [ 5, 1 << 20, 4 ], 'everything queued was delivered');
    is($peer->{close_code}, 1000, 'then the close frame');
};

done_testing;
