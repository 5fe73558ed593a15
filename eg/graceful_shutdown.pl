#!/usr/bin/env perl
# Graceful shutdown: on SIGTERM, stop taking clients, close every open
# connection with 1001 "going away", wait for the closing handshakes, exit 0.
#
#   perl -Mblib eg/graceful_shutdown.pl [--port 9017] [--grace 5]
#
# An echo server that shuts down the way a service manager (systemd,
# Kubernetes, a deploy script) expects on SIGTERM or Ctrl-C (SIGINT).
# $ctx->shutdown does all of it:
#
# 1. The listening socket closes at once: late clients are refused by the
#    system and can go to another instance.
# 2. Each open connection is closed with 1001 "going away".  The close
#    frame goes out behind anything still being sent; on_close fires when
#    the client answers.
# 3. Its cb is called once every connection is gone, or after --grace
#    seconds, when the clients that have not answered are dropped (their
#    on_close says 1006).  The cb leaves the loop, and the server exits 0.
#
# A second signal skips the wait.  The other server examples do the same
# through eg/lib/Shutdown.pm, which maps the signals to $ctx->shutdown.

use strict;
use warnings;

use EV;
use EV::Websockets;
use Getopt::Long;

$| = 1;

my %opt = (port => 9017, grace => 5);
GetOptions(\%opt, 'port=i', 'grace=f') && !@ARGV
    or die "usage: $0 [--port N] [--grace SECONDS]\n";

my $ctx = EV::Websockets::Context->new;
my $stopping;

my $port = $ctx->listen(
    port => $opt{port},

    on_connect => sub {
        my ($conn, $headers) = @_;
        print "client connected from ", $conn->peer_address // '?', "\n";
        $conn->send('welcome');
    },

    on_message => sub {
        my ($conn, $data, $is_binary) = @_;
        $is_binary ? $conn->send_binary($data) : $conn->send($data);
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        print "closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
        my $left = $ctx->connections;    # without this one: it is closed now
        print "$left connection(s) still closing\n" if $stopping && $left;
    },

    on_error => sub {
        my ($conn, $err) = @_;
        print "error: $err\n";
    },
);

print "listening on ws://127.0.0.1:$port/ (SIGTERM or Ctrl-C to shut down)\n";

sub shut_down {
    my ($signal) = @_;
    if ($stopping++) {
        print "second signal: not waiting any longer\n";
        return EV::break;
    }
    print "SIG$signal: shutting down, closing ", scalar($ctx->connections), " connection(s)\n";
    $ctx->shutdown(
        code    => 1001,
        reason  => 'going away',
        timeout => $opt{grace},
        cb      => sub {
            print "all connections closed\n";
            EV::break;
        },
    );
}

my @signals = map { my $sig = $_; EV::signal($sig, sub { shut_down($sig) }) } qw(TERM INT);

EV::run;
undef $ctx;    # after a second signal: drops whatever is left
print "bye\n";
exit 0;
