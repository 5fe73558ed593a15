# Proves: random sequences of calls from every callback and DESTROY give no
# crash, no undocumented croak and no leaked socket.
# POD: EV::Websockets, "Perl code at the boundary" and "ERRORS".
#
# The API under chaos: seeded random sequences in which every callback kind,
# and the DESTROY of objects kept in stashes, call random methods, shut
# down or destroy contexts, drop connections and die.  No crash, no croak
# the POD does not document, no warning but the reports of deliberate dies
# and bad on_handshake headers, and no socket left once a sequence's
# objects are gone.
#
#   CHAOS_SEQUENCES=N (default 150)   how many sequences
#   CHAOS_SEED=S      (default 1)     the first seed; sequence i uses S+i
#
# A failure prints the seed; CHAOS_SEED=<seed> CHAOS_SEQUENCES=1 replays it.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use Chaos qw(run_sequence);

my $sequences = $ENV{CHAOS_SEQUENCES} || 150;
my $first     = $ENV{CHAOS_SEED} || 1;

my $guard = EV::timer(60 + $sequences * 2, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL); exit 1 });

sub open_fds { opendir my $d, '/proc/self/fd' or return -1; return scalar grep { /^\d+$/ } readdir $d }

my $closed_port = closed_port();
my $fds_before  = open_fds();
my ($failed, %seen) = (0);
for my $seed ($first .. $first + $sequences - 1) {
    my ($unexpected, $log, $events, $end) = run_sequence($seed, closed_port => $closed_port);
    $seen{$_} += $events->{$_} for keys %$events;
    $seen{"action $_"}++ for map { /:(\w+)$/ } @$log;
    $seen{"DESTROY acted"}++ if grep { /^DESTROY:/ } @$log;
    $seen{"ended by $end"}++;
    next unless @$unexpected;
    $failed++;
    fail("sequence $seed: nothing unexpected");
    diag("replay: CHAOS_SEED=$seed CHAOS_SEQUENCES=1 prove -b $0");
    diag($_) for @$unexpected;
    diag('actions: ' . join ' ', @$log);
    last if $failed >= 3;
}
ok(!$failed, "$sequences sequences from seed $first: no crash, only documented croaks");
note(join ', ', map { "$_: $seen{$_}" } sort keys %seen);
# The sequences did reach what they are for (counted over all of them).
if ($sequences >= 100) {
    for my $what (qw(on_connect on_message on_close on_error on_drain on_pong on_handshake), 'DESTROY acted',
        map { "action $_" } qw(destroy_ctx drop_ctx drop_conn stash_object send_large close)) {
        ok($seen{$what}, "the sequences exercised $what") or diag("$what never happened");
    }
}

# Every socket of every sequence is closed (the loop runs a moment so that
# nothing still pending holds one).
my $fired;
my $t = EV::timer(0.05, 0, sub { $fired = 1 });
run_until(sub { $fired }, 2);
is(open_fds(), $fds_before, 'no descriptor left open');

# The module still works after all that.
my $ctx  = EV::Websockets::Context->new(proxy => '');
my $port = echo_server($ctx, host => '127.0.0.1');
my $got;
my $conn = $ctx->connect(url => "ws://127.0.0.1:$port/", on_connect => sub { $_[0]->send('still here') },
    on_message => sub { $got = $_[1] });
run_until(sub { defined $got }, 3);
is($got, 'still here', 'a new pair still echoes');

done_testing;
