# Proves: eg/feersum_psgi.pl and eg/feersum_native.pl serve and shut down as
# their headers say.
# POD: README.pod, "EXAMPLES"; EV::Websockets, "adopt" and "EXAMPLES".
#
# Smoke test of eg/feersum_psgi.pl and eg/feersum_native.pl: each runs in a
# child process on a free port, serves an echo to our client, and shuts down
# on SIGTERM, closing an open WebSocket with 1001.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

BEGIN {
    plan skip_all => "Feersum cannot be loaded: $@" unless eval { require Feersum; 1 };
}

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

for my $example (qw(eg/feersum_psgi.pl eg/feersum_native.pl)) {
    subtest $example => sub {
        my $port = closed_port();
        my $pid  = open(my $out, '-|') // die "fork: $!";
        if (!$pid) {
            open STDERR, '>&', \*STDOUT;
            exec $^X, '-Mblib', $example, $port or die "exec: $!";
        }
        my ($transcript, $eof, $status) = ('', 0);
        my $reader = EV::io($out, EV::READ, sub {
            my $n = sysread $out, my $buf, 65536;
            if ($n) { $transcript .= $buf; return }
            $eof = 1;
            $_[0]->stop;
        });
        my $child = EV::child($pid, 0, sub { $status = $_[0]->rstatus });

        ok(run_until(sub { $transcript =~ /listening on / || defined $status }, 5), 'example started');
        like($transcript, qr{^listening on ws://127\.0\.0\.1:$port/}m, '... on the given port');

        my $r = ws_roundtrip("ws://127.0.0.1:$port/smoke", message => "hello $example");
        is($r->{reply}, "hello $example", 'echo');
        is_deeply($r->{close}, [ 1000, '' ], 'clean close');

        # A client left open, then SIGTERM.
        my %held;
        my $cctx = EV::Websockets::Context->new;
        my $held = $cctx->connect(url => "ws://127.0.0.1:$port/held", recording(\%held));
        ok(run_until(sub { $held{connect} || $held{error} }), 'a second client connected');
        kill 'TERM', $pid;
        ok(run_until(sub { $held{close} || $held{error} }, 3), 'SIGTERM: the open client is closed');
        is_deeply($held{close}, [ [ 1001, 'server shutting down' ] ], '... with 1001');
        ok(run_until(sub { defined $status && $eof }, 3), 'the example exits');
        if (!defined $status) {
            kill 'KILL', $pid;
            run_until(sub { defined $status }, 2);
        }
        is($status, 0, '... with status 0');
        like($transcript, qr{client 127\.0\.0\.1 connected, path /smoke}, 'it logged the connection');
        like($transcript, qr{^bye$}m, '... and its exit');
        unlike($transcript, qr/exception in|EV::Websockets: /, 'no callback died, no warning from the module');
        diag $transcript unless Test::More->builder->is_passing;
    };
}

done_testing;
