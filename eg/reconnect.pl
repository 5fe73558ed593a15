#!/usr/bin/env perl
# A client that stays connected: it reconnects after the connection fails or
# drops, waiting longer after each failure (exponential backoff with jitter).
#
#   perl -Mblib eg/reconnect.pl [--url ws://127.0.0.1:9001/] [--base 0.5]
#                               [--max-delay 30] [--max-attempts N]
#
# After failure number n in a row, it waits base * 2**(n-1) seconds, at most
# --max-delay, then tries again.  The wait is randomised between half and
# all of that ("jitter"), so that many clients dropped at the same moment do
# not all come back at the same moment.  A successful connection resets the
# count.  With --max-attempts N it gives up (exit 1) after N failures in a
# row; by default it tries forever.
#
# Once connected it sends a greeting and prints what the server sends.  Try
# it against eg/echo_server.pl and stop and restart the server.  Stop the
# client with Ctrl-C (SIGINT) or SIGTERM: it closes with 1001 "going away"
# and exits 0.
#
# The two ways a connection attempt ends, and where the retry starts:
# - it never opened (refused, DNS, TLS, timeout, HTTP error): on_error only;
# - it was open and then closed or broke: on_close (after an on_error if the
#   module detected a problem).

use strict;
use warnings;

use EV;
use EV::Websockets;
use Getopt::Long;
use List::Util qw(min);

$| = 1;

my %opt = (url => 'ws://127.0.0.1:9001/', base => 0.5, 'max-delay' => 30, 'max-attempts' => 0);
GetOptions(\%opt, 'url=s', 'base=f', 'max-delay=f', 'max-attempts=i') && !@ARGV
    or die "usage: $0 [--url URL] [--base SECONDS] [--max-delay SECONDS] [--max-attempts N]\n";

my $ctx = EV::Websockets::Context->new;
my $failures    = 0;    # failed attempts since the last successful connection
my $connections = 0;    # successful connections so far
my ($conn, $retry, $stopping);
my $status = 0;

sub connect_now {
    undef $retry;
    my $opened;
    print "connecting to $opt{url}\n";
    $conn = $ctx->connect(
        url             => $opt{url},
        connect_timeout => 5,

        on_connect => sub {
            my ($c) = @_;
            $opened = 1;
            $connections++;
            printf "connected (connection #%d, after %d failed attempt(s))\n", $connections, $failures;
            $failures = 0;    # the backoff starts over
            $c->send("hello, this is connection #$connections");
        },

        on_message => sub {
            my ($c, $data, $is_binary) = @_;
            print $is_binary ? "message: binary, " . length($data) . " bytes\n" : "message: $data\n";
        },

        on_error => sub {
            my ($c, $err) = @_;
            print "error: $err\n";
            retry_later() unless $opened;    # no on_close comes for a failed attempt
        },

        on_close => sub {
            my ($c, $code, $reason) = @_;
            print "closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
            return EV::break if $stopping;
            retry_later();
        },
    );
}

sub retry_later {
    undef $conn;
    $failures++;
    if ($opt{'max-attempts'} && $failures >= $opt{'max-attempts'}) {
        print "giving up after $failures failed attempt(s)\n";
        $status = 1;
        return EV::break;
    }
    my $delay = min($opt{'max-delay'}, $opt{base} * 2**($failures - 1));
    $delay = $delay / 2 + rand($delay / 2);    # jitter: between half and all of it
    printf "reconnecting in %.3f s (attempt %d)\n", $delay, $failures;
    $retry = EV::timer($delay, 0, \&connect_now);
}

connect_now();

# Ctrl-C or SIGTERM: close politely if connected, stop retrying, leave.
# A second signal leaves at once.
my $give_up;
my @signals = map {
    EV::signal($_, sub {
        return EV::break if $stopping++;
        undef $retry;
        print "stopping\n";
        return EV::break unless $conn && $conn->is_connected;
        $conn->close(1001, 'going away');    # on_close then leaves
        $give_up = EV::timer(2, 0, sub { EV::break });
    })
} qw(INT TERM);

EV::run;
undef $conn;
undef $ctx;
exit $status;
