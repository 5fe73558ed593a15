#!/usr/bin/env perl
# Echo throughput of EV::Websockets: messages per second for several
# sizes, sequential (one message in flight) and pipelined (a window of
# messages in flight), client and server in this process's EV loop.
#
#   perl -Mblib bench/throughput.pl [--sizes 64,4096,65536,1048576]
#       [--window 64] [--time 2] [--binary] [--chart throughput.png]
#
# MB/s counts the payload echoed (one direction), in 10^6 bytes.  The last
# line is JSON.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Getopt::Long;
use Bench qw(echo emit chart);
use EchoPeers;

my %o = (sizes => '64,4096,65536,1048576', window => 64, time => 2, count => 1_000_000);
GetOptions(\%o, 'sizes=s', 'window=i', 'time=f', 'count=i', 'binary', 'chart=s')
    && $o{window} > 0
    or die "usage: $0 [--sizes N,N...] [--window N] [--time S] [--binary] [--chart FILE.png]\n";
my @sizes = split /,/, $o{sizes};

printf "echo throughput, %s messages, up to %gs per figure\n", $o{binary} ? 'binary' : 'text', $o{time};
printf "%10s %8s %12s %10s\n", 'size', 'window', 'msgs/s', 'MB/s';
my @rows;
for my $size (@sizes) {
    for my $window (1, $o{window}) {
        my $r = echo(
            start  => \&EchoPeers::ours,
            size   => $size,
            window => $window,
            binary => $o{binary},
            time   => $o{time},
            count  => $o{count},
            # a warm-up that fits in a fraction of the time at any size
            warmup => $size >= 65536 ? 20 : 1000,
        );
        push @rows, {
            size         => $size,
            window       => $window,
            msgs_per_sec => sprintf('%.0f', $r->{msgs_per_sec}),
            mb_per_sec   => sprintf('%.1f', $r->{mb_per_sec}),
        };
        printf "%10d %8d %12.0f %10.1f\n", $size, $window, $r->{msgs_per_sec}, $r->{mb_per_sec};
    }
}

if ($o{chart}) {
    my $file = chart(
        file   => $o{chart},
        title  => 'EV::Websockets echo throughput',
        ylabel => 'MB/s of payload echoed',
        bars   => [ map { [ "$_->{size} B x$_->{window}", $_->{mb_per_sec} ] } @rows ],
    );
    print "chart: $file\n" if $file;
}
emit({ bench => 'throughput', binary => $o{binary} ? JSON::PP::true() : JSON::PP::false(), results => \@rows });
