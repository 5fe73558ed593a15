#!/usr/bin/env perl
# WebSocket echo server.
#
#   perl -Mblib eg/echo_server.pl [port]      (default port 9001)
#
# Echoes every text and binary message back to its sender and prints one
# line per event.  Stop it with Ctrl-C (SIGINT) or SIGTERM: open connections
# are closed with 1001 "server shutting down" before the script exits.
# Try it with eg/echo_client.pl.

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my $port = shift // 9001;
die "usage: $0 [port]\n" unless $port =~ /^\d+\z/ && $port <= 65535;

# Shorten long messages for the log.
sub show {
    my ($data, $is_binary) = @_;
    my $len = length $data;
    return "binary, $len bytes" if $is_binary;
    return qq{"$data"} if $len <= 60;
    return sprintf '"%s..." (%d bytes)', substr($data, 0, 40), $len;
}

my $ctx = EV::Websockets::Context->new;

# First signal: close every connection with 1001 "server shutting down" and
# leave once they are all gone (at most 2 seconds).  A second signal leaves
# at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down', grace => 2);

my $bound = $ctx->listen(
    port => $port,

    on_connect => sub {
        my ($conn, $headers) = @_;
        printf "client connected from %s path %s\n",
            $conn->peer_address // '?', $headers->{Path} // '/';
    },

    on_message => sub {
        my ($conn, $data, $is_binary) = @_;
        print 'message: ', show($data, $is_binary), "\n";
        $is_binary ? $conn->send_binary($data) : $conn->send($data);
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        print join(' ', 'closed:', $code, $reason // ()), "\n";
    },

    on_error => sub {
        my ($conn, $err) = @_;
        print "error: $err\n";
    },
);

print "listening on ws://127.0.0.1:$bound/ (Ctrl-C to stop)\n";

EV::run;
undef $ctx;    # closes the listening socket
print "bye\n";
exit 0;
