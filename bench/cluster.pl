#!/usr/bin/env perl
# Broadcast through Redis: deliveries per second of eg/cluster.pl with 1
# and 2 worker processes, against a redis-server of its own.
#
#   perl -Mblib bench/cluster.pl [--workers 1,2] [--subscribers 20]
#       [--publishers 2] [--window 64] [--time 3] [--size 64]
#
# The subscriber clients (spread over the workers by the kernel's
# reuse_port) receive every message; the publisher clients send --size
# byte messages, at most --window per publisher not yet delivered to
# every subscriber.  A delivery is one message arriving at one
# subscriber: with 2 workers each message crosses Redis once to reach the
# other worker's subscribers.  All the clients run in this process's EV
# loop, redis-server and the workers in their own: on a small machine
# they share its cores.  The last line is JSON.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../t/lib";
use Getopt::Long;
use File::Temp qw(tempdir);
use EV;
use EV::Websockets;
use Bench qw(guard emit);
use TestWS qw(find_program spawn_daemon stop_daemon slurp run_until);

my %o = (workers => '1,2', subscribers => 20, publishers => 2, window => 64, time => 3, size => 64);
GetOptions(\%o, 'workers=s', 'subscribers=i', 'publishers=i', 'window=i', 'time=f', 'size=i')
    && $o{subscribers} > 0 && $o{publishers} > 0 && $o{window} > 0
    or die "usage: $0 [--workers N,N] [--subscribers N] [--publishers N] [--window N] [--time S] [--size B]\n";
find_program('redis-server') or die "$0: needs redis-server (apt-get install redis-server)\n";
require RedisServer;    # t/lib: the tests' own server starter

my $redis = RedisServer->start;
my $dir   = tempdir(CLEANUP => 1);
my $payload = 'x' x $o{size};

printf "broadcast through Redis: %d subscribers, %d publishers, %d B messages, %gs per figure\n",
    @o{qw(subscribers publishers size time)};
printf "%8s %14s %14s\n", 'workers', 'deliveries/s', 'published/s';
my @rows;
for my $workers (split /,/, $o{workers}) {
    my $r = run_cluster($workers);
    push @rows, { workers => $workers, %$r };
    printf "%8d %14.0f %14.0f\n", $workers, $r->{deliveries_per_sec}, $r->{published_per_sec};
}
emit({ bench => 'cluster', subscribers => $o{subscribers}, publishers => $o{publishers},
       size => $o{size}, results => \@rows });

sub run_cluster {
    my ($workers) = @_;
    my $guard = guard($o{time} + 30, "the run with $workers workers");
    my $log = "$dir/cluster-$workers.log";
    my $d = spawn_daemon([ $^X, '-Mblib', "$FindBin::Bin/../eg/cluster.pl", '--port', 0,
        '--workers', $workers, '--redis', $redis->url ], $log);
    my $port;
    my $poll = EV::timer(0, 0.02, sub { ($port) = slurp($log) =~ m{listening on ws://[^/]+:(\d+)/} });
    run_until(sub { $port || defined $d->{status} }, 10) && $port
        or die "$0: eg/cluster.pl did not start: " . slurp($log);
    undef $poll;

    my $ctx = EV::Websockets::Context->new;
    my ($received, $open, $sent) = (0, 0, 0);
    my (@subs, @pubs);
    # Send while fewer than `window` messages per publisher are still on
    # their way to some subscriber.  Called from the clients' callbacks:
    # what they send is written before the loop next waits.
    my $pump = sub {
        return unless $open == @subs + @pubs;
        my $limit = $o{window} * @pubs;
        while ($sent - $received / @subs < $limit) {
            $_->send($payload) for @pubs;
            $sent += @pubs;
        }
    };
    @subs = map {
        $ctx->connect(
            url        => "ws://127.0.0.1:$port/",
            on_connect => sub { $open++; $pump->() },
            on_message => sub { $received++, $pump->() if $_[1] =~ /^</ },
            on_error   => sub { die "$0: a subscriber failed: $_[1]\n" },
        );
    } 1 .. $o{subscribers};
    @pubs = map {
        $ctx->connect(
            url        => "ws://127.0.0.1:$port/",
            on_connect => sub { $open++; $pump->() },
            on_error   => sub { die "$0: a publisher failed: $_[1]\n" },
        );
    } 1 .. $o{publishers};
    run_until(sub { $open == @subs + @pubs }, 10) or die "$0: clients did not connect\n";

    my $settle = EV::timer(0.5, 0, sub { EV::break });    # warm up
    EV::run;
    my ($r0, $s0, $t0) = ($received, $sent, EV::time);
    my $stop = EV::timer($o{time}, 0, sub { EV::break });
    EV::run;
    my $secs = EV::time - $t0;
    my %result = (
        deliveries_per_sec => sprintf('%.0f', ($received - $r0) / $secs),
        published_per_sec  => sprintf('%.0f', ($sent - $s0) / $secs),
    );
    $_->close for @subs, @pubs;
    undef $ctx;
    stop_daemon($d);
    return \%result;
}
