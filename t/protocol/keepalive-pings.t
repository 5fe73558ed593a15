# Proves: ping_interval pings an idle connection, traffic postpones the ping,
# no pong within ping_timeout closes with 1011 "ping timeout".
# POD: EV::Websockets, "connect" (ping_interval, ping_timeout), "listen",
# "on_error messages".
#
# Keepalive pings: ping_interval and ping_timeout on connect and listen.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

for my $side (qw(client server)) {
    my $who = "our $side";

    subtest "$who: pings every ping_interval of idleness, answered" => sub {
        @warnings = ();
        my ($t_open, $stop);
        my ($peer, $ev) = raw_pair($side, { on_open => sub { $t_open = EV::now } }, ping_interval => 0.2);
        is_deeply(\@warnings, [], 'ping_interval is a known option (no warning)')
            or diag(explain(\@warnings));
        ok(run_until(sub { $ev->{connect} && $t_open }), 'connected');
        run_for(1.0);
        my @pings = $peer->frames_of(9);
        my @times = ($t_open, map { $_->{time} } @pings);
        my @gaps  = map { $times[$_] - $times[ $_ - 1 ] } 1 .. $#times;
        cmp_ok(scalar @pings, '>=', 3, 'at least 3 pings in 1 s (' . scalar(@pings) . ')');
        cmp_ok(scalar @pings, '<=', 5, '... and at most 5');
        ok(!grep({ $_ < 0.15 || $_ > 0.45 } @gaps), 'about 0.2 s apart')
            or diag(join ' ', map { sprintf '%.3f', $_ } @gaps);
        ok(!grep({ length $_->{payload} > 125 || !$_->{fin} } @pings), 'valid ping frames');
        is($ev->{conn} && $ev->{conn}->state, 'connected', 'the connection stays up');
        is($ev->{error}, undef, 'no error');
        is($ev->{close}, undef, 'no close');
        my $pongs = scalar @{ $ev->{pong} || [] };
        ok($pongs >= @pings - 1 && $pongs <= @pings, "on_pong fired for the answers ($pongs for " . scalar(@pings) . ' pings)');
    };

    subtest "$who: traffic in both directions postpones the ping" => sub {
        @warnings = ();
        my ($sender, $count);
        my ($peer, $ev) = raw_pair($side,
            { on_open => sub {
                my ($p) = @_;
                $sender = EV::timer(0, 0.08, sub { $p->send_frame(payload => 'tick') if ++$count <= 9 });
            } },
            ping_interval => 0.2,
            on_message    => sub { $_[0]->send('tock') },
        );
        ok(run_until(sub { $count && $count >= 9 && $peer->messages >= 9 }, 3),
            'the peer sent a message every 0.08 s for 0.7 s, each was answered');
        undef $sender;
        is(scalar $peer->frames_of(9), 0, 'no ping while messages flowed');
        is(scalar $peer->messages, 9, 'nine answers');
        is_deeply(\@warnings, [], 'no warnings');
        ok(run_until(sub { $peer->frames_of(9) }, 1), 'a ping once the traffic stopped');
    };

    subtest "$who: no pong within ping_timeout: \"ping timeout\", close 1011" => sub {
        @warnings = ();
        my ($t_open, $t_error);
        my ($peer, $ev) = raw_pair($side,
            { auto_pong => 0, on_open => sub { $t_open = EV::now } },
            ping_interval => 0.2,
            ping_timeout  => 0.2,
            on_error      => sub { $t_error = EV::now },
        );
        ok(run_until(sub { $ev->{close} && $peer->{got_close} }, 3), 'the connection was closed');
        run_for(0.2);
        is_deeply(\@warnings, [], 'no warnings');
        is_deeply($ev->{error}, [ ['ping timeout'] ], 'on_error "ping timeout" once');
        is_deeply($ev->{order}, [qw(connect error close)], 'then on_close');
        is($ev->{close}[0][0], 1011, 'on_close got 1011');
        is($peer->{close_code}, 1011, 'the peer got close code 1011');
        is(scalar $peer->frames_of(9), 1, 'after one unanswered ping');
        my $after = ($t_error // 0) - ($t_open // 0);
        ok($after > 0.3 && $after < 1, sprintf 'about interval + timeout after the upgrade (%.2f s)', $after);
    };

    subtest "$who: no pings while the feature is off" => sub {
        @warnings = ();
        my ($peer, $ev) = raw_pair($side, {});
        ok(run_until(sub { $ev->{connect} }), 'connected');
        run_for(0.5);
        is(scalar $peer->frames_of(9), 0, 'no ping in 0.5 s');
        is($ev->{close}, undef, 'still open');
        is_deeply(\@warnings, [], 'no warnings');
    };
}

done_testing;
