# Proves: the README's live demo runs to completion.
# POD: README.pod, "TRY IT".
use strict;
use warnings;
use Test::More;
use EV;

my $pid = open(my $out, '-|') // die "fork: $!";
if (!$pid) {
    open STDERR, '>&', \*STDOUT;
    exec $^X, '-Mblib', 'eg/demo.pl' or die "exec: $!";
}

my ($status, $transcript) = (undef, '');
my $reader = EV::io($out, EV::READ, sub {
    my $n = sysread $out, my $buf, 65536;
    if ($n) { $transcript .= $buf; return }
    $_[0]->stop;    # EOF: the demo exited
});
my $child = EV::child($pid, 0, sub { $status = $_[0]->rstatus; EV::break });
my $guard = EV::timer(20, 0, sub { kill 'KILL', $pid; fail('demo timed out'); EV::break });
EV::run;

# drain what the demo printed last
local $/;
$transcript .= <$out> // '';
is($status, 0, 'demo exits 0') or diag($transcript);
like($transcript, qr/alice:\s+received "<bob> neat\. I have to go"/, 'alice hears bob');
like($transcript, qr/server: alice disconnected: 1000 bye/, 'server sees the close code and reason');
like($transcript, qr/everybody left; done/, 'demo finishes');
unlike($transcript, qr/exception in/, 'no callback died');
done_testing;
