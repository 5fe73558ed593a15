# Proves: a name lookup runs off the event loop: timers keep ticking while it
# is pending.
# POD: EV::Websockets, "DESCRIPTION" (nothing blocks the loop) and "connect".
#
# A name lookup runs off the event loop: while it is pending (300 ms, made
# slow by t/dns/slow_getaddrinfo.c preloaded into a child perl) a 10 ms
# timer keeps ticking, and the connection completes afterwards.
use strict;
use warnings;
use Test::More;
use Config;
use File::Temp qw(tempdir);

my $dir = tempdir(CLEANUP => 1);
my $shim = "$dir/slow_getaddrinfo.so";
my $cc = $Config{cc} || 'cc';
system("$cc -shared -fPIC -o $shim t/dns/slow_getaddrinfo.c -ldl 2>&1") == 0
    or plan skip_all => "cannot build the getaddrinfo shim with $cc";

my $child = <<'PERL';
use strict; use warnings; use EV; use EV::Websockets;
delete @ENV{qw(https_proxy http_proxy all_proxy)};
my $guard = EV::timer(10, 0, sub { print "timeout\n"; exit 1 });
my $ctx  = EV::Websockets::Context->new;
my $port = $ctx->listen(port => 0, host => '127.0.0.1', on_message => sub { $_[0]->send($_[1]) });
my ($ticks, $ticks_at_connect, $t0) = (0, undef, EV::time);
my $tick = EV::timer(0.01, 0.01, sub { $ticks++ });
my $conn = $ctx->connect(
    url        => "ws://slow.ev-websockets.test:$port/",
    on_connect => sub { $ticks_at_connect = $ticks; $_[0]->send('hi') },
    on_message => sub { printf "ticks=%d elapsed=%.3f echo=%s\n", $ticks_at_connect, EV::time - $t0, $_[1]; EV::break },
    on_error   => sub { print "error: $_[1]\n"; EV::break },
);
print "state=", $conn->state, "\n";
EV::run;
PERL

my $script = "$dir/child.pl";
open my $fh, '>', $script or die "$script: $!";
print $fh $child;
close $fh;
local $ENV{LD_PRELOAD} = $shim;
open my $run, '-|', $^X, '-Mblib', $script or die "run: $!";
my $out = do { local $/; <$run> } // '';
close $run;
like($out, qr/^state=connecting$/m, 'connect returns at once, connecting');
my ($ticks, $elapsed, $echo) = $out =~ /^ticks=(\d+) elapsed=([\d.]+) echo=(\S+)$/m
    or diag($out);
is($echo, 'hi', 'the name resolved (after 300 ms) and the connection works');
cmp_ok($elapsed // 0, '>=', 0.28, 'the lookup took its 300 ms');
cmp_ok($ticks // 0, '>=', 15, "a 10 ms timer ticked ${\($ticks // 0)} times meanwhile: the loop was not blocked");

done_testing;
