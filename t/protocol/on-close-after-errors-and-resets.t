# Proves: on_close still follows an on_error that paused or resumed, a close
# frame then a reset is a clean close, and keepalive waits while paused.
# POD: EV::Websockets, "on_close", "pause_recv, resume_recv", "connect"
# (ping_interval).
#
# Regressions in the events a connection reports at its end: on_close after
# an on_error that paused or resumed, the peer's close frame followed by a
# reset, and keepalive on a paused connection.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

for my $side (qw(client server)) {
    my $who = "our $side";

    for my $method (qw(pause_recv resume_recv)) {
        subtest "$who: $method inside on_error, on_close still follows" => sub {
            # A message over max_message_size: on_error, then on_close(1009).
            my ($peer, $ev) = raw_pair($side,
                { on_open => sub { $_[0]->send_frame(payload => 'x' x 11) } },
                max_message_size => 10,
                on_error         => sub { $_[0]->$method },
            );
            ok(run_until(sub { $ev->{close} }, 3), 'on_close fired');
            is_deeply($ev->{order}, [qw(connect error close)], 'connect, error, close');
            like($ev->{error}[0][0], qr/max_message_size/, 'the error names the limit');
            is($ev->{close} && $ev->{close}[0][0], 1009, 'on_close with 1009');
            ok(run_until(sub { $peer->{got_close} }, 2), 'the peer got the close frame');
            is($peer->{close_code}, 1009, '... with 1009');
            run_for(0.1);
            is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
        };
    }

    subtest "$who: the peer's close frame followed by a reset is a clean close" => sub {
        my ($peer, $ev) = raw_pair($side, { reply_close => 0 });
        ok(run_until(sub { $ev->{connect} && $peer->{open} }), 'connected');
        $peer->send_frame(opcode => 8, payload => RawPeer::close_payload(4001, 'bye'));
        $peer->reset_tcp;
        ok(run_until(sub { $ev->{close} || $ev->{error} }, 3), 'the end was reported');
        run_for(0.2);
        is($ev->{error}, undef, 'no on_error') or diag(explain($ev->{error}));
        is_deeply($ev->{close}, [ [ 4001, 'bye' ] ], "on_close with the peer's code and reason");
        is($ev->{conn} && $ev->{conn}->state, 'closed', 'closed');
    };

    subtest "$who: keepalive waits while paused" => sub {
        my ($peer, $ev) = raw_pair($side, {}, ping_interval => 0.2, ping_timeout => 0.2);
        ok(run_until(sub { $ev->{connect} && $peer->{open} }), 'connected');
        run_for(0.5);
        ok($ev->{pong} && @{ $ev->{pong} } >= 1, 'pongs arrive while receiving');
        my $conn = $ev->{conn};
        $conn->pause_recv;
        run_for(1.0);
        is($ev->{error}, undef, 'no error while paused (the peer answers pings)') or diag(explain($ev->{error}));
        is($ev->{close}, undef, 'no close while paused') or diag(explain($ev->{close}));
        is($conn->state, 'connected', 'still connected after 1 s paused');
        my $pongs = @{ $ev->{pong} || [] };
        $conn->resume_recv;
        ok(run_until(sub { @{ $ev->{pong} || [] } > $pongs }, 2), 'pongs arrive again after resume_recv');
        is($ev->{error}, undef, 'no error after resume_recv');
        is($conn->state, 'connected', 'still connected');
    };
}

is_deeply(\@warnings, [], 'no warnings') or diag(explain(\@warnings));
done_testing;
