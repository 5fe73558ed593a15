# Proves: the scripts in bench/ run and measure something.
# POD: README.pod, "BENCHMARKS"; EV::Websockets, "PERFORMANCE AND MEMORY".
#
# The scripts in bench/ run, end with their JSON line and measure something
# (with tiny counts and times: no timing is checked here).
use strict;
use warnings;
use Test::More;
use JSON::PP qw(decode_json);
use File::Temp qw(tempdir);
use lib 't/lib';
use PeerSetup qw(run_bounded);
use TestWS qw(slurp);

my $dir = tempdir(CLEANUP => 1);

sub bench {
    my ($script, @args) = @_;
    my $log = "$dir/$script.log";
    my $failed = run_bounded(60, $log, $^X, '-Mblib', "bench/$script", @args);
    my $out = slurp($log) // '';
    ok(!$failed, "$script @args runs") or diag($failed, $out);
    my ($last) = $out =~ /^(\{.*\})\s*\z/m;
    my $result = eval { decode_json($last // '') };
    ok($result, "$script ends with a JSON line") or diag($out);
    return $result // {};
}

my $r = bench('throughput.pl', '--time', 0.2, '--sizes', '64,70000', '--window', 4);
is(scalar @{ $r->{results} // [] }, 4, 'throughput: two sizes, sequential and pipelined');
ok(!grep({ $_->{msgs_per_sec} <= 0 } @{ $r->{results} // [] }), 'throughput: every figure measured');

$r = bench('latency.pl', '--count', 500, '--time', 1, '--connects', 20);
is($r->{connect}{count}, 20, 'latency: every connect timed');
ok($r->{echo}{count} > 0 && $r->{echo}{p50_us} <= $r->{echo}{p99_us}, 'latency: percentiles in order');

$r = bench('compare.pl', '--rounds', 1, '--count', 500, '--time', 1);
my ($ours) = grep { $_->{peer} eq 'EV::Websockets' } @{ $r->{peers} // [] };
is($ours && $ours->{ratio}, 1, 'compare: ratios are relative to EV::Websockets');
ok((grep { $_->{peer} eq 'raw TCP floor' } @{ $r->{peers} // [] }), 'compare: the raw-TCP floor ran');

$r = bench('accept.pl', '--time', 0.3, '--warmup', 0.1, '--concurrency', 4);
ok($r->{handshakes} > 0 && $r->{failures} == 0, 'accept: handshakes completed without failures');

$r = bench('fanout.pl', qw(--subscribers 5,20 --deliveries 400 --rounds 1 --ways publish,loop,raw));
is(scalar @{ $r->{results} // [] }, 6, 'fanout: publish, the Perl loop and the floor, to 5 and to 20');
ok(!grep({ $_->{deliveries_per_sec} <= 0 } @{ $r->{results} // [] }), 'fanout: every figure measured');

$r = bench('memory.pl', '--count', 50);
is($r->{connections}, 50, 'memory: all connections opened');

SKIP: {
    skip 'no redis-server', 2 unless TestWS::find_program('redis-server');
    $r = bench('cluster.pl', '--time', 0.3, '--subscribers', 4, '--window', 4);
    is(scalar @{ $r->{results} // [] }, 2, 'cluster: 1 and 2 workers');
    ok(!grep({ $_->{deliveries_per_sec} <= 0 } @{ $r->{results} // [] }), 'cluster: every figure measured');
}

SKIP: {
    skip 'no gnuplot', 2 unless grep { -x "$_/gnuplot" } split /:/, $ENV{PATH};
    bench('compare.pl', '--rounds', 1, '--count', 200, '--time', 1, '--chart', "$dir/c.png");
    ok(-s "$dir/c.png", 'compare: the chart is written');
}

done_testing;
