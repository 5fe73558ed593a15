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
# - Feersum 1.5 has $req->io, which hands the socket over as a handle, with
#   whatever Feersum read past the request head pushed back into the
#   handle's buffer.  It is adopted as it is: adopt() takes those bytes
#   (a duplicate made with open would not have them).  On a TLS listener
#   (set_tls) the handle is one end of a socketpair that Feersum relays
#   through TLS; adopt() serves that just the same.
# - Feersum 1.41 (Debian) has no io method, and $req->env has no psgix.io
#   in the native interface.  It does have $req->fileno, the descriptor
#   number.  Feersum closes that descriptor itself when $req is freed (just
#   after this handler returns, as no response is started), so the handler
#   takes a duplicate with open(my $fh, '+<&', $req->fileno): a descriptor
#   of its own, which adopt() serves and closes when the WebSocket ends.
#   (Wrapping the number without dup, '+<&=', would close Feersum's
#   descriptor a second time later, possibly someone else's by then.)
# The method is chosen with can(), so neither path calls a method that
# does not exist.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use FeersumEcho;    # eg/lib/FeersumEcho.pm: the Feersum and echo plumbing

$| = 1;

my $port = shift // 9003;
die "usage: $0 [port]\n" unless $port =~ /^\d+\z/ && $port <= 65535;

my $echo = FeersumEcho->new($port);

# A handle on the request's socket: $req->io where there is one (1.5),
# else a duplicate of $req->fileno (1.41).
sub socket_of {
    my ($req) = @_;
    return $req->io if $req->can('io');
    open(my $fh, '+<&', $req->fileno) or return;
    return $fh;
}

$echo->{feersum}->request_handler(sub {
    my ($req) = @_;
    my $env = $req->env;
    if (!$echo->is_upgrade($env)) {
        $req->send_response(400, [ 'Content-Type' => 'text/plain' ], \$echo->not_websocket);
        return;
    }
    my $fh = socket_of($req) or do {
        $req->send_response(500, [ 'Content-Type' => 'text/plain' ], \"cannot take the socket: $!\n");
        return;
    };
    $echo->adopt($fh, $env);
    return;    # no response: the socket now belongs to the WebSocket
});

$echo->run;
exit 0;
