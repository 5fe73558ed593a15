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
# Works with Feersum 1.41 (Debian) and 1.5:
# - Feersum 1.5 can leave psgix.io out (set_psgix_io(0)); 1.41 always
#   offers it and has no such method, so set_psgix_io(1) is called only if
#   it exists.
# - psgix.io holds what Feersum read past the request head in its buffer
#   (both versions); adopt() takes those bytes, so it is adopted as it is.
# - on a Feersum 1.5 TLS listener (set_tls) psgix.io is one end of a
#   socketpair that Feersum relays through TLS; adopt() serves it the same.
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

use FindBin;
use lib "$FindBin::Bin/lib";
use FeersumEcho;    # eg/lib/FeersumEcho.pm: the Feersum and echo plumbing

$| = 1;

my $port = shift // 9002;
die "usage: $0 [port]\n" unless $port =~ /^\d+\z/ && $port <= 65535;

my $echo    = FeersumEcho->new($port);
my $feersum = $echo->{feersum};
$feersum->set_psgix_io(1) if $feersum->can('set_psgix_io');

$feersum->psgi_request_handler(sub {
    my ($env) = @_;
    return [ 400, [ 'Content-Type' => 'text/plain' ], [ $echo->not_websocket ] ]
        unless $echo->is_upgrade($env);
    my $io = $env->{'psgix.io'}
        or return [ 500, [ 'Content-Type' => 'text/plain' ], ["no psgix.io in this Feersum\n"] ];
    $echo->adopt($io, $env);
    return sub { };    # streaming response that is never started
});

$echo->run;
exit 0;
