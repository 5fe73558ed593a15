package Bench;
# What the scripts in bench/ share: a time guard, the echo driver (one
# client, a window of messages in flight), statistics, the JSON result line
# and gnuplot bar charts.
use strict;
use warnings;

use EV;
use JSON::PP ();
use Time::HiRes ();
use Exporter 'import';

our @EXPORT_OK = qw(guard echo stats emit chart rss_kib);

$| = 1;

# Die (ending the script) if the loop still runs after $seconds.
sub guard {
    my ($seconds, $what) = @_;
    return EV::timer($seconds, 0, sub { die "$0: $what not done after ${seconds}s\n" });
}

# Echo messages through a peer and time them.
#
#   my $r = echo(
#       start  => sub { my ($peer) = @_; ... },   # connect; see below
#       size   => 64,       # payload bytes
#       count  => 100_000,  # round trips to measure, at most ...
#       time   => 5,        # ... seconds
#       warmup => 1000,     # round trips before measuring
#       window => 1,        # messages in flight (1: sequential)
#       binary => 0,
#       latency => 0,       # keep each round trip's time (in $r->{samples})
#   );
#
# start() gets a $peer hash: once connected it calls $peer->{ready}->($send,
# $close), where $send->($payload, $binary) sends one message and $close->()
# ends the connection; it calls $peer->{echo}->($length) for each echoed
# message and $peer->{fail}->($why) on any error.  Returns { count,
# seconds, msgs_per_sec, rtt_us, mb_per_sec, samples } or dies.
sub echo {
    my (%a) = (count => 100_000, time => 5, warmup => 1000, window => 1, binary => 0, @_);
    my $payload = 'x' x $a{size};
    my ($send, $close, $error, $t0, $t1, $budget, @sent_at, @samples);
    my ($phase, $in_flight, $done, $started) = ('connect', 0, 0, 0);
    my $want = $a{warmup};

    my $fire = sub {
        push @sent_at, Time::HiRes::time() if $a{latency};
        $in_flight++;
        $started++;
        $send->($payload, $a{binary});
    };
    my $stop = sub { $error //= $_[0]; $close->() if $close; EV::break };
    my $measure = sub {
        ($phase, $done, $started) = ('measure', 0, $in_flight);
        $want   = $a{count};
        @samples = ();
        $budget = EV::timer($a{time}, 0, sub { $want = $started });
        $t0     = EV::time;
    };
    my %peer = (
        ready => sub {
            ($send, $close) = @_;
            $phase = 'warmup';
            $measure->() unless $a{warmup};
            $fire->() while $in_flight < $a{window} && $started < $want;
        },
        echo => sub {
            return $stop->("an echo of $_[0] bytes, not $a{size}") if $_[0] != $a{size};
            $in_flight--;
            $done++;
            push @samples, Time::HiRes::time() - shift @sent_at if $a{latency};
            $measure->() if $phase eq 'warmup' && $done == $a{warmup};
            $fire->() while $in_flight < $a{window} && $started < $want;
            return if $in_flight || $phase ne 'measure';
            $t1    = EV::time;
            $phase = 'done';
            $close->();
            EV::break;
        },
        fail => sub { $stop->("$_[0] (during $phase)") },
    );
    my $keep = $a{start}->(\%peer);
    my $limit = guard($a{time} + 30, 'echo');
    EV::run;
    undef $budget;
    die "$error\n" if defined $error;
    die "the loop ended during $phase\n" unless defined $t1;
    my $seconds = $t1 - $t0 || 1e-9;
    return {
        count        => $done,
        seconds      => $seconds,
        msgs_per_sec => $done / $seconds,
        rtt_us       => $seconds / $done * 1e6,
        mb_per_sec   => $done * $a{size} / $seconds / 1e6,
        samples      => \@samples,
    };
}

# avg, min, max and percentiles of a list of seconds, in microseconds.
sub stats {
    my @s = sort { $a <=> $b } @_;
    return {} unless @s;
    my $sum = 0;
    $sum += $_ for @s;
    my $pct = sub { $s[ int($_[0] / 100 * $#s + 0.5) ] * 1e6 };
    return {
        avg_us => $sum / @s * 1e6,
        min_us => $s[0] * 1e6,
        p50_us => $pct->(50),
        p99_us => $pct->(99),
        max_us => $s[-1] * 1e6,
    };
}

# The last line of every script: one JSON object, keys sorted.
sub emit {
    my ($result) = @_;
    print JSON::PP->new->canonical->encode($result), "\n";
}

# A PNG bar chart of [label, value] pairs with gnuplot, if it is installed.
# Returns the file written, or undef with a warning.
sub chart {
    my (%a) = (width => 800, @_);    # file, title, ylabel, bars, width in pixels
    if (system('command -v gnuplot >/dev/null 2>&1') != 0) {
        warn "no chart: gnuplot is not installed (apt-get install gnuplot-nox)\n";
        return undef;
    }
    my $data = "$a{file}.dat";
    open my $fh, '>', $data or die "$data: $!";
    printf $fh qq("%s" %g\n), $_->[0], $_->[1] for @{ $a{bars} };
    close $fh;
    open my $gp, '|-', 'gnuplot' or die "gnuplot: $!";
    print $gp <<"GNUPLOT";
set terminal png size $a{width},450
set output '$a{file}'
set title "$a{title}"
set ylabel "$a{ylabel}"
set style fill solid 0.7
set boxwidth 0.6
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
set grid ytics
unset key
plot '$data' using 0:2:xtic(1) with boxes lc rgb '#3465a4', '' using 0:2:(sprintf('%.3g', \$2)) with labels offset 0,1
GNUPLOT
    close $gp;
    unlink $data;
    return $? == 0 ? $a{file} : do { warn "gnuplot failed\n"; undef };
}

sub rss_kib {
    my ($pid) = @_;
    open my $fh, '<', '/proc/' . ($pid // 'self') . '/status' or die "no /proc: $!";
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    die "no VmRSS\n";
}

1;
