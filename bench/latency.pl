#!/usr/bin/env perl
# Latency of EV::Websockets on 127.0.0.1, client and server in this
# process's EV loop: each echo round trip of a message (one in flight), and
# each connect (TCP connect plus the WebSocket handshake, until on_connect).
#
#   perl -Mblib bench/latency.pl [--size 64] [--count 100000] [--time 3]
#                                [--connects 2000]
#
# Prints avg, p50, p99, min and max in microseconds; the last line is JSON.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Getopt::Long;
use EV;
use EV::Websockets;
use Time::HiRes ();
use feature qw(current_sub);
use Bench qw(guard echo stats emit);
use EchoPeers;

my %o = (size => 64, count => 100_000, time => 3, connects => 2000);
GetOptions(\%o, 'size=i', 'count=i', 'time=f', 'connects=i')
    && $o{connects} > 0
    or die "usage: $0 [--size N] [--count N] [--time S] [--connects N]\n";

my $echo = echo(start => \&EchoPeers::ours, latency => 1, map { $_ => $o{$_} } qw(size count time));
my $rtt = stats(@{ $echo->{samples} });

# Connects one after another; each is closed once open.
my ($ctx, $port) = @{ EchoPeers::our_server() };
my (@connect, $conn, $error);
my $next = sub {
    return EV::break if @connect == $o{connects};
    my $t0 = Time::HiRes::time();
    $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { push @connect, Time::HiRes::time() - $t0; $_[0]->close(1000) },
        on_close   => __SUB__,
        on_error   => sub { $error = $_[1]; EV::break },
    );
};
my $limit = guard($o{time} + 30, 'connect latency');
$next->();
EV::run;
die "connect: $error\n" if $error;
my $handshake = stats(@connect);

my $line = "%-22s %8s %8s %8s %8s %8s %8s\n";
printf $line, '', qw(count avg p50 p99 min max);
printf "%-22s %8d %8.2f %8.2f %8.2f %8.2f %8.2f\n", "$o{size} B echo (us)", scalar @{ $echo->{samples} },
    @$rtt{qw(avg_us p50_us p99_us min_us max_us)};
printf "%-22s %8d %8.2f %8.2f %8.2f %8.2f %8.2f\n", 'connect (us)', scalar @connect,
    @$handshake{qw(avg_us p50_us p99_us min_us max_us)};
my $round = sub { my $h = shift; +{ map { $_ => sprintf('%.2f', $h->{$_}) + 0 } keys %$h } };
emit({
    bench   => 'latency',
    size    => $o{size},
    echo    => { count => scalar @{ $echo->{samples} }, %{ $round->($rtt) } },
    connect => { count => scalar @connect, %{ $round->($handshake) } },
});
