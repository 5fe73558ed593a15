#!/usr/bin/env perl
# Handshakes per second: this process runs an EV::Websockets server; a
# separate client process keeps --concurrency raw-socket handshakes in
# flight (connect, send the upgrade request, read the 101, close) for
# --time seconds.
#
#   perl -Mblib bench/accept.pl [--time 3] [--concurrency 32] [--warmup 0.5]
#
# The client is plain sockets so that the figure is the server's.  The last
# line is JSON.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Getopt::Long;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Bench qw(guard emit);

my %o = (time => 3, concurrency => 32, warmup => 0.5);
GetOptions(\%o, 'time=f', 'concurrency=i', 'warmup=f')
    && $o{time} > 0 && $o{concurrency} > 0
    or die "usage: $0 [--time S] [--concurrency N] [--warmup S]\n";

my $ctx = EV::Websockets::Context->new(proxy => '');
my ($accepted, $errors) = (0, 0);
my $port = $ctx->listen(
    port       => 0,
    on_connect => sub { $accepted++ },
    on_error   => sub { $errors++ },
);

pipe(my $result_r, my $result_w) or die "pipe: $!";
my $pid = fork // die "fork: $!";
if (!$pid) {
    close $result_r;
    undef $ctx;
    exit client($result_w);
}
close $result_w;

my $result = '';
my $limit  = guard($o{warmup} + $o{time} + 30, 'accept');
my $reader = EV::io($result_r, EV::READ, sub {
    sysread($result_r, $result, 256, length $result) or EV::break;
});
EV::run;
waitpid $pid, 0;
my ($count, $seconds, $failed) = split ' ', $result;
die "the client failed: " . ($result || "exit status $?") . "\n" unless $seconds;

my $per_sec = $count / $seconds;
printf "%d handshakes in %.2f s from a separate process, %d in flight: %.0f handshakes/s\n",
    $count, $seconds, $o{concurrency}, $per_sec;
printf "client failures: %d, server errors: %d\n", $failed, $errors if $failed || $errors;
emit({
    bench          => 'accept',
    concurrency    => $o{concurrency},
    handshakes     => $count + 0,
    seconds        => sprintf('%.3f', $seconds) + 0,
    handshakes_per_sec => sprintf('%.0f', $per_sec) + 0,
    failures       => $failed + $errors,
});

# The client process: writes "count seconds failures" and exits.
sub client {
    my ($out) = @_;
    my $loop    = EV::Loop->new;
    my $request = "GET / HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    my ($counting, $done, $failed, $t0, $report) = (0, 0, 0);
    my %open;
    my $start;
    $start = sub {
        if ($report) {    # the time is up
            $report->() unless %open;
            return;
        }
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Blocking => 0)
            or return $failed++;
        my $answer = '';
        $open{$s} = $loop->io($s, EV::WRITE, sub {
            my ($w) = @_;
            if ($w->events == EV::WRITE) {
                return $failed++, delete $open{$s}, $start->() unless defined syswrite $s, $request;
                return $w->events(EV::READ);
            }
            my $n = sysread $s, $answer, 4096, length $answer;
            return if !defined $n && $!{EAGAIN};
            return if $n && $answer !~ /\r\n\r\n/;
            $answer =~ m{^HTTP/1\.1 101 } ? $counting && $done++ : $failed++;
            delete $open{$s};
            close $s;
            $start->();
        });
    };
    my $warm = $loop->timer($o{warmup}, 0, sub { ($counting, $done, $t0) = (1, 0, EV::time) });
    # At the end no new handshake starts; those in flight finish (rather
    # than being reset by the exit), then the result goes to the parent.
    my $end = $loop->timer($o{warmup} + $o{time}, 0, sub {
        my ($count, $seconds) = ($done, EV::time - $t0);
        $report = sub {
            syswrite $out, "$count $seconds $failed\n";
            $loop->break;
        };
        $report->() unless %open;
    });
    $start->() for 1 .. $o{concurrency};
    $loop->run;
    return 0;
}
