#!/usr/bin/env perl
# Echo round-trip benchmark: one context, one server that echoes, one client
# doing sequential round trips (send, wait for the echo, send again), all in
# one process and one EV loop on 127.0.0.1.
#
#   perl -Mblib bench/echo.pl [--count N] [--size BYTES] [--time SECONDS]
#
# After 1000 warm-up round trips it measures --count round trips (default
# 100000) or as many as fit in --time seconds (default 5), whichever comes
# first.  The last line of output is one JSON object for scripts:
#
#   {"bench":"echo","size":64,"count":N,"seconds":S,"rtt_us":X,"msgs_per_sec":Y}
#
# msgs_per_sec counts echoed messages (completed round trips) per second.
# Client and server share one process so that the figure measures the
# module, not the scheduler's cross-process wake-ups (which dominate on small
# virtual machines).

use strict;
use warnings;

use EV;
use EV::Websockets;
use Getopt::Long;

$| = 1;

my ($count, $size, $budget, $warmup) = (100_000, 64, 5, 1000);
GetOptions(
    'count=i'  => \$count,
    'size=i'   => \$size,
    'time=f'   => \$budget,
    'warmup=i' => \$warmup,
) && $count > 0 && $size >= 0 && $budget > 0 && $warmup >= 0
    or die "usage: $0 [--count N] [--size BYTES] [--time SECONDS] [--warmup N]\n";

my $payload = 'x' x $size;

# proxy => '': never route the loopback connection through an environment
# proxy.
my $ctx  = EV::Websockets::Context->new(proxy => '');
my $port = $ctx->listen(
    port       => 0,
    on_message => sub { $_[0]->send($_[1]) },
);

my ($done, $error) = (0, undef);
my ($t_start, $t_end, $out_of_time, $budget_timer);
my $phase = 'connect';    # connect, warmup, measure, close

sub stop {
    ($error) = @_;
    EV::break;
}

sub start_measuring {
    $phase = 'measure';
    $done  = 0;
    $budget_timer = EV::timer($budget, 0, sub { $out_of_time = 1 });
    $t_start = EV::time;
}

my $client = $ctx->connect(
    url             => "ws://127.0.0.1:$port/echo",
    connect_timeout => 5,

    on_connect => sub {
        my ($conn) = @_;
        $phase = 'warmup';
        start_measuring() unless $warmup;
        $conn->send($payload);
    },

    on_message => sub {
        my ($conn, $data) = @_;
        return stop('echo has the wrong length') if length $data != $size;
        $done++;
        if ($phase eq 'warmup') {
            start_measuring() if $done == $warmup;
        } elsif ($done == $count || $out_of_time) {
            $t_end = EV::time;
            $phase = 'close';
            return $conn->close(1000, 'done');
        }
        $conn->send($payload);
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        return stop("connection closed during $phase: $code " . ($reason // ''))
            if $phase ne 'close';
        EV::break;
    },

    on_error => sub { stop("error during $phase: $_[1]") },
);

my $limit = $budget + 30;
my $guard = EV::timer($limit, 0, sub { stop("no result after $limit seconds (stuck in $phase)") });

print "echo benchmark: $size-byte text messages, client and server in one EV loop\n";
print "warm-up: $warmup round trips; then up to $count round trips or ${budget}s\n";

EV::run;

die "bench/echo.pl: $error\n" if defined $error;
die "bench/echo.pl: loop ended before the measurement finished\n" unless defined $t_end;

my $seconds = $t_end - $t_start;
$seconds = 1e-9 if $seconds <= 0;
my $rtt_us  = $seconds / $done * 1e6;
my $per_sec = $done / $seconds;

printf "measured: %d round trips in %.3f s\n", $done, $seconds;
printf "  %.0f round trips/s, %.2f us per round trip\n", $per_sec, $rtt_us;
printf qq({"bench":"echo","size":%d,"count":%d,"seconds":%.6f,"rtt_us":%.3f,"msgs_per_sec":%.0f}\n),
    $size, $done, $seconds, $rtt_us, $per_sec;

undef $client;
undef $ctx;
exit 0;
