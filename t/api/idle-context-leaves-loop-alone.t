# Proves: an idle context holds no active watcher: it never spins and does not
# keep EV::run alive.
# POD: EV::Websockets, "DESCRIPTION" (an idle context) and "new".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });
# The guard must not itself keep EV::run alive in the idle-context checks.
$guard->keepalive(0);

sub cpu_time { my ($user, $system) = times; return $user + $system }

# EV::run with nothing but a non-keepalive 2 s timer must return at once:
# the contexts that exist must not hold an active watcher of their own.
sub loop_is_not_kept_alive {
    my ($name) = @_;
    my $fired = 0;
    my $t = EV::timer(2, 0, sub { $fired++; EV::break });
    $t->keepalive(0);
    my $t0 = EV::time;
    EV::run;
    my $elapsed = EV::time - $t0;
    ok(!$fired, "$name: EV::run returned before the 2 s timer fired");
    cmp_ok($elapsed, '<', 1, "$name: EV::run returned at once");
}

{
    my $ctx = EV::Websockets::Context->new;
    loop_is_not_kept_alive('a fresh context');
}

my $sctx = EV::Websockets::Context->new;
my $cctx = EV::Websockets::Context->new;
my ($server_conn, $client_connected, $client_closed);
my $port   = echo_server($sctx, on_connect => sub { $server_conn = $_[0] });
my $client = $cctx->connect(
    url        => "ws://127.0.0.1:$port/",
    on_connect => sub { $client_connected++ },
    on_close   => sub { $client_closed++ },
);
ok(run_until(sub { $server_conn && $client_connected }, 3), 'idle client/server pair connected');

# With a listener and an open, silent connection, the user's timers keep
# their pace and the process does not burn CPU.
{
    my $ticks = 0;
    EV::now_update;
    my $tick = EV::timer(0.25, 0.25, sub { $ticks++ });
    my $stop = EV::timer(4, 0, sub { EV::break });
    my $cpu0 = cpu_time();
    EV::run;
    my $cpu = cpu_time() - $cpu0;

    cmp_ok($ticks, '>=', 15, "a 0.25 s timer ticked $ticks times in 4 s");
    cmp_ok($cpu, '<', 1, sprintf('idle loop used %.2f s of CPU in 4 s', $cpu));
    is($client->state, 'connected', 'client is still connected after 4 idle seconds');
    is($server_conn->state, 'connected', 'server side is still connected');
}

$client->close;
ok(run_until(sub { $client_closed }, 3), 'client closed');
undef $server_conn;
undef $sctx;    # drops the listener

# The client context's only connection has closed: it is idle again.
loop_is_not_kept_alive('a context whose connection has closed');

done_testing;
