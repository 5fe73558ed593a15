#!/usr/bin/env perl
# The same echo through every WebSocket implementation available here, in
# one run, next to a raw-TCP echo (no WebSocket at all) as the floor:
# client and server in this process's EV loop, one message in flight.
#
#   perl -Mblib bench/compare.pl [--size 64] [--count 100000] [--time 3]
#                                [--rounds 3] [--chart compare.png]
#
# Each peer runs --rounds times, interleaved, and keeps its best round (the
# least disturbed by the rest of the machine).  Peers whose modules are
# missing are listed as skipped.  The table gives each peer's round trip
# and its ratio to EV::Websockets (above 1: slower than ours); the last
# line is JSON.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Getopt::Long;
use Bench qw(echo emit chart);
use EchoPeers;

my %o = (size => 64, count => 100_000, time => 3, rounds => 3, warmup => 1000);
GetOptions(\%o, 'size=i', 'count=i', 'time=f', 'rounds=i', 'warmup=i', 'chart=s')
    && $o{rounds} > 0
    or die "usage: $0 [--size N] [--count N] [--time S] [--rounds N] [--chart FILE.png]\n";

my (@peers, %skipped);
for my $peer (@EchoPeers::ALL) {
    my $why = EchoPeers::missing($peer);
    defined $why ? ($skipped{ $peer->{name} } = $why) : push @peers, $peer;
}

printf "echo of %d-byte text messages, one in flight, best of %d rounds of up to %d round trips or %gs\n",
    @o{qw(size rounds count time)};
my %best;
for my $round (1 .. $o{rounds}) {
    for my $peer (@peers) {
        my $r = eval {
            echo(start => sub { $peer->{start}->($_[0], $o{size}) }, map { $_ => $o{$_} } qw(size count time warmup));
        };
        if (!$r) {
            $skipped{ $peer->{name} } = "failed: $@";
            @peers = grep { $_ != $peer } @peers;
            next;
        }
        my $b = $best{ $peer->{name} };
        $best{ $peer->{name} } = $r if !$b || $r->{rtt_us} < $b->{rtt_us};
    }
}
my $ours = $best{'EV::Websockets'} or die "EV::Websockets did not run: $skipped{'EV::Websockets'}\n";

my @rows = sort { $a->{rtt_us} <=> $b->{rtt_us} }
    map { { peer => $_, rtt_us => $best{$_}{rtt_us}, msgs_per_sec => $best{$_}{msgs_per_sec} } } keys %best;
$_->{ratio} = $_->{rtt_us} / $ours->{rtt_us} for @rows;
printf "\n%-30s %10s %12s %8s\n", 'peer', 'us/rt', 'msgs/s', 'ratio';
printf "%-30s %10.2f %12.0f %8.2f\n", @$_{qw(peer rtt_us msgs_per_sec ratio)} for @rows;
printf "%-30s skipped: %s\n", $_, $skipped{$_} =~ s/\s+\z//r for sort keys %skipped;

if ($o{chart}) {
    my $file = chart(
        file   => $o{chart},
        title  => "WebSocket echo, $o{size} B, one in flight (lower is better)",
        ylabel => 'microseconds per round trip',
        bars   => [ map { [ $_->{peer}, sprintf '%.2f', $_->{rtt_us} ] } @rows ],
    );
    print "chart: $file\n" if $file;
}
emit({ bench => 'compare', size => $o{size}, peers => \@rows, skipped => \%skipped });
