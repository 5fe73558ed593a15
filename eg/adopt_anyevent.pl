#!/usr/bin/env perl
# WebSocket on sockets accepted by AnyEvent: adopt().
#
#   perl -Mblib eg/adopt_anyevent.pl [port]      (default port 9019)
#
# AnyEvent::Socket's tcp_server accepts the TCP connections; each accepted
# socket is handed to EV::Websockets with $ctx->adopt(fh => $fh), which
# answers the client's upgrade request on it and speaks WebSocket from then
# on.  This is how to add WebSocket to a program whose sockets come from
# somewhere else: an AnyEvent server, a pre-forked listener, a socket
# passed by systemd, an HTTP server that saw "Upgrade: websocket" (then
# pass the bytes it already read as initial_data).
#
# AnyEvent runs on top of EV here (use EV before AnyEvent, and AnyEvent
# picks EV as its backend), so AnyEvent watchers (the accept, the status
# timer below), EV watchers (the signals, from eg/lib/Shutdown.pm) and
# EV::Websockets share one loop.
#
# Adopted connections get undef as on_connect's headers; on_handshake still
# sees the request headers.  Since each adopt() call has its own callbacks,
# its on_handshake can keep what it needs (the path here) in a variable
# that the same socket's on_connect then reads.
#
# It echoes every message, prefixed with the path.  Try it with
#   perl -Mblib eg/echo_client.pl ws://127.0.0.1:9019/
# (the echoes then differ, and it says so).  Stop it with Ctrl-C (SIGINT) or
# SIGTERM: open connections are closed with 1001.

use strict;
use warnings;

use EV;    # first: AnyEvent then uses EV
use AnyEvent;
use AnyEvent::Socket qw(tcp_server);
use EV::Websockets;
use FindBin;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my $port = shift // 9019;
die "usage: $0 [port]\n" unless $port =~ /^\d+\z/ && $port <= 65535;

print "AnyEvent backend: ", AnyEvent::detect(), "\n";

my $ctx = EV::Websockets::Context->new;
my $accepted = 0;
my ($server, $bound);

# First signal: stop accepting, close every connection with 1001 and leave
# once they are all gone (at most 2 seconds).  A second signal leaves at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
    grace   => 2,
    on_stop => sub { undef $server },    # AnyEvent closes the listening socket
);

$server = tcp_server '127.0.0.1', $port,
    # Called for each accepted TCP connection.
    sub {
        my ($fh, $host, $peer_port) = @_;
        return if $shutdown->stopping;    # $fh goes out of scope: the socket closes

        my $n = ++$accepted;
        print "accepted TCP connection #$n from $host:$peer_port\n";
        my $path;    # from on_handshake, for on_connect: this socket only

        # adopt duplicates the descriptor and keeps a reference to $fh
        # until the connection ends; we need not keep $fh.
        $ctx->adopt(
            fh               => $fh,
            max_message_size => 1024 * 1024,

            on_handshake => sub {
                my ($headers) = @_;
                $path = $headers->{Path} // '/';
                return 1;    # accept (false would answer 403)
            },

            on_connect => sub {
                my ($conn, $headers) = @_;    # $headers: undef for adopted sockets
                $conn->stash->{path} = $path;
                print "#$n upgraded to WebSocket, path $path\n";
            },

            on_message => sub {
                my ($conn, $data, $is_binary) = @_;
                my $prefix = '[' . $conn->stash->{path} . '] ';
                $is_binary ? $conn->send_binary($prefix . $data) : $conn->send($prefix . $data);
            },

            on_close => sub {
                my ($conn, $code, $reason) = @_;
                print "#$n closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
            },

            on_error => sub {
                my ($conn, $err) = @_;
                print "#$n error: $err\n";
            },
        );
    },
    # Called once the socket is bound, before it listens: its third
    # argument is the port.
    sub {
        (undef, undef, $bound) = @_;
        return 128;    # listen backlog
    };

# tcp_server has returned: the socket listens now.
print "listening on ws://127.0.0.1:$bound/ (accepted by AnyEvent)\n";

# An AnyEvent timer next to the WebSocket connections.
my $status = AE::timer 10, 10, sub {
    my @open = $ctx->connections;
    printf "%d WebSocket connection(s) open, %d accepted in all\n", scalar @open, $accepted;
};

EV::run;    # the same loop as AE::cv->recv would run
undef $ctx;
print "bye\n";
exit 0;
