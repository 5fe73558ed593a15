#!/usr/bin/env perl
# WebSocket echo behind Feersum's PSGI interface.
#
#   perl -Mblib eg/feersum_psgi.pl [port]      (default port 9002)
#
# Feersum serves HTTP on 127.0.0.1; a PSGI app hands every WebSocket upgrade
# request to EV::Websockets with adopt(), which answers the handshake on the
# same socket and echoes messages from then on.  Other requests get a short
# text answer from the app.  Both share one EV loop.  Try it with
#   perl -Mblib eg/echo_client.pl ws://127.0.0.1:9002/
# Stop it with Ctrl-C (SIGINT) or SIGTERM.
#
# Works with Feersum 1.41 (Debian) and newer:
# - newer Feersum offers psgix.io only after set_psgix_io(1); 1.41 always
#   does and has no such method, so it is called only if it exists.
# - the app answers an upgrade with a streaming response (a code ref) that
#   never calls its responder: Feersum then leaves the socket alone.  A
#   plain `return;` makes Feersum 1.41 complain about an invalid PSGI
#   response and write a 500 into the socket.
# - psgix.io in 1.41 wraps Feersum's own descriptor, which Feersum closes
#   itself when the request is over.  adopt() serves the WebSocket on a
#   duplicate of it and, seeing the handle's descriptor closed behind its
#   back, never closes that number again, so psgix.io is adopted as it is.

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

my $port = shift // 9002;
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
$feersum->set_psgix_io(1) if $feersum->can('set_psgix_io');

# First signal: stop taking HTTP requests, close the WebSockets with 1001
# and leave once they are gone (at most 2 seconds).  A second signal leaves
# at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
    grace   => 2,
    on_stop => sub { $feersum->unlisten },
);

# The upgrade request, rebuilt from the PSGI environment (Feersum has
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

$feersum->psgi_request_handler(sub {
    my ($env) = @_;
    if (($env->{HTTP_UPGRADE} // '') !~ /websocket/i) {
        return [ 400, [ 'Content-Type' => 'text/plain' ],
            ["This is a WebSocket echo server: connect to ws://127.0.0.1:$port/\n"] ];
    }
    my $io = $env->{'psgix.io'}
        or return [ 500, [ 'Content-Type' => 'text/plain' ], ["no psgix.io in this Feersum\n"] ];

    # The callbacks capture only plain values, not $env.
    my $peer = $env->{REMOTE_ADDR} // '?';
    my $path = $env->{PATH_INFO} // '/';
    $ctx->adopt(
        fh           => $io,
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
    return sub { };    # streaming response that is never started
});

print "listening on ws://127.0.0.1:$port/ (Ctrl-C to stop)\n";

EV::run;
undef $ctx;
print "bye\n";
exit 0;
