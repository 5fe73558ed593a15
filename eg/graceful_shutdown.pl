#!/usr/bin/env perl
# Graceful shutdown: on SIGTERM, stop taking clients, close every open
# connection with 1001 "going away", wait for the closing handshakes, exit 0.
#
#   perl -Mblib eg/graceful_shutdown.pl [--port 9017] [--grace 5]
#
# An echo server that shuts down the way a service manager (systemd,
# Kubernetes, a deploy script) expects on SIGTERM or Ctrl-C (SIGINT):
#
# 1. It stops taking new clients.  A listener cannot be closed on its own
#    (the listening socket closes with its context), so from now on
#    on_handshake refuses every upgrade: late clients get "403 Forbidden"
#    and can go to another instance.
# 2. Each open connection is closed with 1001 "going away".  close() queues
#    the close frame behind anything still being sent, and waits for the
#    client's close frame, at most close_timeout (set to --grace here);
#    then on_close fires (with 1006 if the client never answered).
# 3. It waits until every connection has reported on_close, bounded by a
#    timer (--grace plus a second, a safety net behind close_timeout), then
#    destroys the context, which closes the listening socket and drops
#    whatever is left, and exits 0.
#
# A second signal skips the wait.
#
# The other server examples do the same in a few lines with eg/lib/Shutdown.pm,
# a small module with these steps (minus the logging and close_timeout);
# this one spells them out.

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
my ($stopping, $deadline);

my $port = $ctx->listen(
    port          => $opt{port},
    close_timeout => $opt{grace},

    # Step 1: while shutting down, refuse (403) instead of accepting.
    on_handshake => sub {
        my ($headers) = @_;
        return 1 unless $stopping;
        print "refused a new client: shutting down\n";
        return 0;
    },

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
        return unless $stopping;
        my @open = $ctx->connections;    # without this one: it is closed now
        if (@open) {
            print scalar(@open), " connection(s) still closing\n";
        } else {
            print "all connections closed\n";
            EV::break;                   # step 3 done
        }
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
    my @open = $ctx->connections;
    print "SIG$signal: shutting down, closing ", scalar(@open), " connection(s)\n";
    return EV::break unless @open;
    # Step 2.  close() on a connection already closing does nothing.
    $_->close(1001, 'going away') for @open;
    # The bound on step 3.
    $deadline = EV::timer($opt{grace} + 1, 0, sub {
        my @left = $ctx->connections;
        print "grace period over, dropping ", scalar(@left), " connection(s)\n";
        EV::break;
    });
}

my @signals = map { my $sig = $_; EV::signal($sig, sub { shut_down($sig) }) } qw(TERM INT);

EV::run;
undef $ctx;    # closes the listening socket and anything left
print "bye\n";
exit 0;
