#!/usr/bin/env perl
# WebSocket echo behind Feersum's native interface.
#
#   perl -Mblib eg/feersum_native.pl [port]      (default port 9003)
#
# Feersum serves HTTP on 127.0.0.1; its native request handler hands every
# WebSocket upgrade request to EV::Websockets with adopt(), which answers
# the handshake on the same socket and echoes messages from then on.  Other
# requests get a short text answer.  Both share one EV loop.  Try it with
#   perl -Mblib eg/echo_client.pl ws://127.0.0.1:9003/
# Stop it with Ctrl-C (SIGINT) or SIGTERM.
#
# Getting the socket from a Feersum::Connection ($req):
# - newer Feersum has $req->io, which returns the socket as a handle;
# - Feersum 1.41 (Debian) has no io method, and $req->env has no psgix.io
#   in the native interface.  It does have $req->fileno, the descriptor
#   number.  Feersum closes that descriptor itself when $req is freed (just
#   after this handler returns, as no response is started), so the handler
#   takes a duplicate with open(my $fh, '+<&', $req->fileno): a descriptor
#   of its own, which adopt() serves and closes when the WebSocket ends.
#   (Wrapping the number without dup, '+<&=', would close Feersum's
#   descriptor a second time later, possibly someone else's by then.)
# The method is chosen with can(), so neither path calls a method that
# does not exist.  Either way a duplicate is adopted.

use strict;
use warnings;

use EV;
use EV::Websockets;
use Feersum;
use FindBin;
use IO::Socket::INET;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my $port = shift // 9003;
die "usage: $0 [port]\n" unless $port =~ /^\d+\z/ && $port <= 65535;

my $ctx = EV::Websockets::Context->new;

my $socket = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Listen    => 128,
    Proto     => 'tcp',
    ReuseAddr => 1,
    Blocking  => 0,
) or die "cannot listen on 127.0.0.1:$port: $@\n";

my $feersum = Feersum->endjinn;
$feersum->use_socket($socket);

# First signal: stop taking HTTP requests, close the WebSockets with 1001
# and leave once they are gone (at most 2 seconds).  A second signal leaves
# at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
    grace   => 2,
    on_stop => sub { $feersum->unlisten },
);

# The upgrade request, rebuilt from the request's environment (Feersum has
# already read it from the socket).
sub upgrade_request {
    my ($env) = @_;
    my $request = 'GET ' . ($env->{REQUEST_URI} // '/') . " HTTP/1.1\r\n";
    for my $key (sort keys %$env) {
        next unless $key =~ /^HTTP_(.+)/;
        (my $name = $1) =~ s/_/-/g;
        $request .= "$name: $env->{$key}\r\n";
    }
    return "$request\r\n";
}

# A handle of our own on the request's socket.
sub socket_of {
    my ($req) = @_;
    my $source = $req->can('io') ? $req->io : $req->fileno;
    open(my $fh, '+<&', $source) or return;
    return $fh;
}

$feersum->request_handler(sub {
    my ($req) = @_;
    my $env = $req->env;
    if (($env->{HTTP_UPGRADE} // '') !~ /websocket/i) {
        $req->send_response(400, [ 'Content-Type' => 'text/plain' ],
            \"This is a WebSocket echo server: connect to ws://127.0.0.1:$port/\n");
        return;
    }
    my $fh = socket_of($req) or do {
        $req->send_response(500, [ 'Content-Type' => 'text/plain' ], \"cannot take the socket: $!\n");
        return;
    };

    my $peer = $env->{REMOTE_ADDR} // '?';
    my $path = $env->{PATH_INFO} // '/';
    $ctx->adopt(
        fh           => $fh,
        initial_data => upgrade_request($env),
        on_connect   => sub { print "client $peer connected, path $path\n" },
        on_message   => sub {
            my ($conn, $data, $is_binary) = @_;
            $is_binary ? $conn->send_binary($data) : $conn->send($data);
        },
        on_close => sub {
            my ($conn, $code, $reason) = @_;
            print join(' ', "client $peer closed:", $code, $reason // ()), "\n";
            $shutdown->closed;    # shutting down and the last one gone: leave
        },
        on_error => sub { print "client $peer error: $_[1]\n" },
    );
    return;    # no response: the socket now belongs to the WebSocket
});

print "listening on ws://127.0.0.1:$port/ (Ctrl-C to stop)\n";

EV::run;
undef $ctx;
print "bye\n";
exit 0;
