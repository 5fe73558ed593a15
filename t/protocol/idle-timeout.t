# Proves: idle_timeout closes an open connection with 1001 "idle timeout"
# once nothing went either way for that long, on a client and on a server;
# traffic keeps the connection open.
# POD: EV::Websockets, "idle_timeout", "Limits and their defaults".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# A pair with %srv_opts on the server and %cli_opts on the client.
sub pair {
    my ($srv_opts, $cli_opts) = @_;
    my $ctx = EV::Websockets::Context->new;
    my (%srv, %cli);
    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub { $srv{conn} = $_[0] },
        on_close   => sub { $srv{closed} = [ @_[ 1, 2 ] ] },
        %$srv_opts,
    );
    $cli{conn} = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $cli{open} = 1 },
        on_close   => sub { $cli{closed} = [ @_[ 1, 2 ] ] },
        %$cli_opts,
    );
    ok(run_until(sub { $srv{conn} && $cli{open} }), 'connected');
    return ($ctx, \%srv, \%cli);
}

for my $side (qw(client server)) {
    subtest "$side: traffic keeps it open, then idle closes it" => sub {
        my %opt = (idle_timeout => 0.3);
        my ($ctx, $srv, $cli) = $side eq 'client' ? pair({}, \%opt) : pair(\%opt, {});
        my $sender = $side eq 'client' ? $cli->{conn} : $srv->{conn};
        my $sends = 0;
        my $tick = EV::timer(0.1, 0.1, sub { $sender->send('tick') if ++$sends <= 5 });
        ok(!run_until(sub { $cli->{closed} || $srv->{closed} }, 0.55), 'not closed while a message goes every 0.1 s');
        is($sender->state, 'connected', 'still connected');
        my $stopped = EV::now;
        ok(run_until(sub { $cli->{closed} && $srv->{closed} }, 3), 'closed once idle');
        ok(EV::now - $stopped >= 0.1, 'after the quiet time');
        my ($us, $peer) = $side eq 'client' ? ($cli, $srv) : ($srv, $cli);
        is($peer->{closed}[0], 1001, 'the peer sees 1001');
        is($peer->{closed}[1], 'idle timeout', 'with the reason');
        is($us->{closed}[0], 1001, 'and so does the side that timed out');
    };
}

subtest 'pings count as traffic' => sub {
    my ($ctx, $srv, $cli) = pair({}, { idle_timeout => 0.3, ping_interval => 0.1 });
    ok(!run_until(sub { $cli->{closed} }, 0.6), 'not closed while pings flow');
    $cli->{conn}->close;
    ok(run_until(sub { $cli->{closed} }), 'closed');
};

done_testing;
