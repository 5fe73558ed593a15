# Soak: 100,000 connect / echo / close cycles against our own server in one
# process, $WINDOW connections in flight at a time, must leave memory and
# file descriptors where they were.
#
#   prove -b xt/soak.t
#   SOAK_CYCLES=20000 SOAK_WINDOW=64 prove -b xt/soak.t    # other sizes
#
# Each cycle is a whole connection, both ends in this process: TCP connect,
# upgrade, one text message echoed, the closing handshake, on_close on both
# sides (the server's counted too).  Every 10,000 cycles the resident set
# size (VmRSS) is sampled.  The first 10,000 cycles are a warm-up: the
# allocator's arenas, Perl's and the core's pools and the kernel's socket
# buffers reach their working size.  Over the remaining cycles RSS must
# then stay flat, growing less than $RSS_BOUND_KIB (2 MiB).  That is a
# tight bound for a leak, loose for noise: anything a cycle leaves behind
# (a Perl SV alone is 24 bytes or more, a connection's core state and
# buffers several KB) adds up to more than 2 MiB over 90,000 cycles, while
# the steady state moves RSS by a few hundred KB at most (allocator
# fragmentation, pages touched late).  The number of open descriptors
# (/proc/self/fd) must come back to where it started: once all cycles are
# done, with the context and the listener still open, and again after both
# are destroyed.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use EchoCycle;

plan skip_all => 'needs /proc/self/status and /proc/self/fd (Linux)'
    unless -r '/proc/self/status' && -d '/proc/self/fd';

my $CYCLES        = $ENV{SOAK_CYCLES} // 100_000;
my $WINDOW        = $ENV{SOAK_WINDOW} // 32;
my $SAMPLE_EVERY  = 10_000;
my $WARMUP        = $CYCLES >= 2 * $SAMPLE_EVERY ? $SAMPLE_EVERY : 0;
my $RSS_BOUND_KIB = 2048;
my $TIME_LIMIT    = 300;    # seconds; the soak takes about 18 s here (2 cores)

my $guard = EV::timer($TIME_LIMIT, 0, sub { fail("timed out after $TIME_LIMIT s"); EV::break(EV::BREAK_ALL) });

# Resident set size in KiB.
sub rss_kib {
    open(my $fh, '<', '/proc/self/status') or die "/proc/self/status: $!";
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/ }
    die "no VmRSS in /proc/self/status\n";
}

# The number of open file descriptors (the one opendir uses is counted each
# time, so the counts compare).
sub open_fds {
    opendir(my $dh, '/proc/self/fd') or die "/proc/self/fd: $!";
    return scalar grep { /^\d+\z/ } readdir $dh;
}

my $fds_at_start = open_fds();
my $srv = EV::Websockets::Context->new;
my $cli = EV::Websockets::Context->new;
my $server_closed = 0;
my $url = 'ws://127.0.0.1:' . echo_server($srv, host => '127.0.0.1', on_close => sub { $server_closed++ }) . '/';
my $fds_idle = open_fds();

my ($started, $done, $failed) = (0, 0, 0);
my @samples;    # [ cycles done, RSS in KiB ]

# Start one cycle; when it ends, sample if due and start the next one, so
# that $WINDOW cycles stay in flight until all are started.
my $start;
$start = sub {
    $started++;
    echo_cycle($cli, $url, sub {
        $failed++ unless $_[0];
        $done++;
        push @samples, [ $done, rss_kib() ] if $done % $SAMPLE_EVERY == 0;
        $start->() if $started < $CYCLES;
    }, message => "cycle $started");
};

my $t0 = EV::time;
$start->() for 1 .. ($WINDOW < $CYCLES ? $WINDOW : $CYCLES);
my $finished = run_until(sub { $done == $CYCLES && $server_closed == $CYCLES }, $TIME_LIMIT);
my $elapsed = EV::time - $t0;
undef $start;    # the sub refers to itself

ok($finished, "all $CYCLES cycles ended on both sides")
    or diag("client cycles ended: $done, server connections closed: $server_closed");
is($failed, 0, 'every cycle echoed its message and closed with 1000');
diag(sprintf '%d cycles, %d in flight, in %.1f s: %.0f cycles/s', $done, $WINDOW, $elapsed, $done / ($elapsed || 1));
diag(sprintf 'VmRSS after %6d cycles: %7d KiB', @$_) for @samples;

SKIP: {
    skip 'too few cycles for a warm-up and a comparison', 1 unless $WARMUP && @samples >= 2;
    my ($base) = grep { $_->[0] == $WARMUP } @samples;
    my $last   = $samples[-1];
    my $growth = $last->[1] - $base->[1];
    cmp_ok($growth, '<', $RSS_BOUND_KIB,
        "RSS flat after the $WARMUP-cycle warm-up: $growth KiB more after $last->[0] cycles than after $base->[0]"
        . " (bound $RSS_BOUND_KIB KiB)");
}

is(open_fds(), $fds_idle, 'open descriptors back to their count before the cycles (context and listener open)');
undef $cli;
undef $srv;
is(open_fds(), $fds_at_start, 'open descriptors back to their count at the start once the contexts are gone');

done_testing;
