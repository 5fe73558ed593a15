#!/usr/bin/env perl
# Backpressure: a producer that sends as fast as the consumer takes, no
# faster, keeping its send queue under a high-water mark.
#
#   perl -Mblib eg/backpressure.pl [--total 16M] [--chunk 64K] [--high 1M] [--rate 16M]
#   perl -Mblib eg/backpressure.pl --consumer [--port 9013] [--rate 16M]
#   perl -Mblib eg/backpressure.pl --url ws://127.0.0.1:9013/ [--total ...]
#
# send() never blocks and never fails because the peer is slow: it queues.
# A producer that ignores this fills memory with everything the peer has not
# read yet.  This one sends while send_queue_size is under --high, then
# waits for on_drain (the queue became empty) to send more.  The queue then
# never holds more than --high + --chunk bytes, however slow the consumer.
#
# The consumer reads at most --rate bytes per second: after each message it
# stops reading (pause_recv) for as long as the message "took", so TCP
# flow control pushes back on the producer.  It checks that the messages
# come in order and complete.
#
# Without --consumer or --url, both run in this process and it exits 0 if
# everything arrived.  --consumer runs only the consumer (stop it with
# Ctrl-C or SIGTERM), --url only the producer.  Sizes take K and M suffixes.
#
# Protocol: binary messages of --chunk bytes, each starting with its number
# (pack 'N'); then the producer sends the text "end <messages> <bytes>" and
# the consumer answers "ok ..." if that is what it got, "bad ..." if not.

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use Getopt::Long;
use List::Util qw(min max);
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

sub size_arg {
    my ($name, $value) = @_;
    $value =~ /\A(\d+)([kKmM]?)\z/ or die "--$name: expected a size like 512K or 16M\n";
    return $1 * { '' => 1, k => 1024, m => 1024 * 1024 }->{ lc $2 };
}

my %opt = (port => 9013, total => '16M', chunk => '64K', high => '1M', rate => '16M');
GetOptions(\%opt, 'consumer', 'port=i', 'url=s', 'total=s', 'chunk=s', 'high=s', 'rate=s') && !@ARGV
    or die "usage: $0 [--consumer [--port N]] [--url URL] [--total SIZE] [--chunk SIZE] [--high SIZE] [--rate SIZE]\n";
$opt{$_} = size_arg($_, $opt{$_}) for qw(total chunk high rate);
die "--chunk must be at least 5 bytes\n" if $opt{chunk} < 5;

my $ctx = EV::Websockets::Context->new(proxy => '');    # loopback: never via a proxy
my ($status, $shutdown, $producer) = (1);    # $shutdown: --consumer only

sub mb { sprintf '%.1f MB', $_[0] / (1024 * 1024) }

# ---------------------------------------------------------------- consumer

sub consume {
    my ($port) = @_;
    return $ctx->listen(
        port             => $port,
        max_message_size => 16 * 1024 * 1024,

        on_connect => sub {
            my ($conn) = @_;
            @{ $conn->stash }{qw(messages bytes in_order)} = (0, 0, 1);
            print "consumer: producer connected, reading at most ", mb($opt{rate}), "/s\n";
        },

        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            my $st = $conn->stash;
            if (!$is_binary) {    # "end <messages> <bytes>"
                my ($messages, $bytes) = $data =~ /\Aend (\d+) (\d+)\z/;
                my $ok = $st->{in_order} && defined $bytes && $messages == $st->{messages} && $bytes == $st->{bytes};
                my $summary = "$st->{messages} messages, $st->{bytes} bytes" . ($st->{in_order} ? ', in order' : ', OUT OF ORDER');
                print "consumer: ", ($ok ? 'got everything: ' : 'INCOMPLETE: '), $summary, "\n";
                $conn->send(($ok ? 'ok ' : 'bad ') . $summary);
                return;
            }
            $st->{in_order} = 0 if unpack('N', $data) != $st->{messages};
            $st->{messages}++;
            $st->{bytes} += length $data;
            # A slow reader: stop reading for the time this message "costs".
            $conn->pause_recv;
            $st->{resume} = EV::timer(length($data) / $opt{rate}, 0, sub { $conn->resume_recv });
        },

        on_close => sub {
            my ($conn, $code) = @_;
            delete $conn->stash->{resume};    # the timer holds $conn
            print "consumer: closed: $code\n";
        },

        on_error => sub { print "consumer: error: $_[1]\n" },
    );
}

# ---------------------------------------------------------------- producer

sub produce {
    my ($url) = @_;
    my ($messages, $sent, $peak, $waits, $next_report) = (0, 0, 0, 0, 0);
    my $filler = 'x' x $opt{chunk};

    # Send until the queue reaches the high-water mark or all is sent.
    my $pump = sub {
        my ($conn) = @_;
        while ($sent < $opt{total} && $conn->send_queue_size < $opt{high}) {
            my $len = min($opt{chunk}, max(4, $opt{total} - $sent));
            $conn->send_binary(pack('N', $messages++) . substr($filler, 0, $len - 4));
            $sent += $len;
            $peak = max($peak, $conn->send_queue_size);
        }
        if ($sent >= $next_report) {    # progress, every quarter
            printf "producer: %3d%% sent (%s), queue %d bytes, waited for on_drain %d times\n",
                100 * $sent / $opt{total}, mb($sent), $conn->send_queue_size, $waits;
            $next_report += $opt{total} / 4;
        }
        if ($sent >= $opt{total}) {
            $conn->send("end $messages $sent");
            printf "producer: all %d messages queued; peak queue %d bytes (high-water %d + chunk %d)\n",
                $messages, $peak, $opt{high}, $opt{chunk};
        } else {
            $waits++;    # on_drain calls us again when the queue is empty
        }
    };

    $producer = $ctx->connect(
        url             => $url,
        connect_timeout => 5,

        on_connect => sub {
            print "producer: connected to $url, sending ", mb($opt{total}), "\n";
            $pump->($_[0]);
        },

        # The queue is empty: send the next batch (if any is left).
        on_drain => sub {
            my ($conn) = @_;
            $pump->($conn) if $sent < $opt{total};
        },

        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            return if $is_binary;    # an echo server would send the data back
            print "producer: consumer says: $data\n";
            $status = 0 if $data =~ /\Aok /;
            $conn->close(1000, 'done');
        },

        on_close => sub {
            print "producer: closed: $_[1]\n";
            EV::break;
        },

        on_error => sub {
            print "producer: error: $_[1]\n";
            EV::break;
        },
    );
}

# -------------------------------------------------------------------- main

if ($opt{consumer}) {
    my $port = consume($opt{port});
    print "listening on ws://127.0.0.1:$port/ (slow consumer, Ctrl-C to stop)\n";
    # First signal: close every connection with 1001, leave once they are
    # gone (at most 2 seconds).  A second signal leaves at once.
    $shutdown = Shutdown->on_signals($ctx, 'consumer shutting down', grace => 2, quiet => 1);
    EV::run;
    $status = 0;
} else {
    my $url = $opt{url};
    if (!defined $url) {
        my $port = consume(0);
        print "listening on ws://127.0.0.1:$port/ (in-process consumer)\n";
        $url = "ws://127.0.0.1:$port/";
    }
    produce($url);
    my $guard = EV::timer(60, 0, sub { print "timed out\n"; EV::break });
    EV::run;
}

undef $producer;
undef $ctx;
exit $status;
