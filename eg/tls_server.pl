#!/usr/bin/env perl
# wss:// (WebSocket over TLS) echo server, and a client that trusts it.
#
#   perl -Mblib eg/tls_server.pl [--port 9011] [--cert FILE --key FILE]
#   perl -Mblib eg/tls_server.pl --client URL [--ca FILE] [--message TEXT]
#
# Server: listens with ssl_cert/ssl_key and echoes every message.  Without
# --cert/--key it uses the test certificate of this distribution
# (t/certs/server.pem, issued to localhost, 127.0.0.1 and ::1 by the test
# CA t/certs/ca.pem) so that it can be tried at once; use your own for
# anything real: eg/make_certs.pl makes a CA and a server certificate
# signed by it (perl eg/make_certs.pl --dir certs, then --cert
# certs/server.pem --key certs/server-key.pem here and --ca certs/ca.pem
# for the client).  Stop it with Ctrl-C (SIGINT) or SIGTERM: open connections
# are closed with 1001.
#
# Client: connects to URL (default wss://localhost:9011/), sends one message,
# prints the echo and closes.  A client checks the server's certificate
# against the system's trusted roots, which do not know the test CA: it
# must be told to trust it, with ssl_ca on its context:
#
#   my $ctx = EV::Websockets::Context->new(ssl_ca => 't/certs/ca.pem');
#
# --ca FILE does that here (default: t/certs/ca.pem).  The name in the URL
# must be one the certificate names (localhost or 127.0.0.1 here).  Turning
# verification off (connect(..., ssl_verify => 0)) is for experiments only.
#
#   perl -Mblib eg/tls_server.pl &
#   perl -Mblib eg/tls_server.pl --client wss://localhost:9011/

use strict;
use warnings;

use EV;
use EV::Websockets;
use Cwd qw(abs_path);
use FindBin;
use Getopt::Long;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my $certs = abs_path("$FindBin::Bin/../t/certs") // "$FindBin::Bin/../t/certs";
my %opt = (
    port    => 9011,
    cert    => "$certs/server.pem",
    key     => "$certs/server-key.pem",
    ca      => "$certs/ca.pem",
    message => 'Hello over TLS!',
);
GetOptions(\%opt, 'port=i', 'cert=s', 'key=s', 'client=s', 'ca=s', 'message=s') && !@ARGV
    or die "usage: $0 [--port N] [--cert FILE --key FILE] | --client URL [--ca FILE] [--message TEXT]\n";

utf8::decode($opt{message});    # command-line text is UTF-8: make it characters
exit run_client($opt{client}) if defined $opt{client};

# ------------------------------------------------------------------ server

my $ctx = EV::Websockets::Context->new;

# First signal: close every connection with 1001 and leave once they are
# all gone (at most 2 seconds).  A second signal leaves at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down', grace => 2);

# listen croaks "Failed to create vhost for listening: ..." if the files
# cannot be read or the key does not match the certificate.
my $bound = $ctx->listen(
    port     => $opt{port},
    ssl_cert => $opt{cert},    # certificate chain, PEM: the server's first
    ssl_key  => $opt{key},     # its private key, PEM

    on_connect => sub {
        my ($conn, $headers) = @_;
        printf "TLS client connected from %s path %s\n", $conn->peer_address // '?', $headers->{Path} // '/';
    },

    on_message => sub {
        my ($conn, $data, $is_binary) = @_;
        printf "message: %s, %d bytes\n", $is_binary ? 'binary' : 'text', length $data;
        $is_binary ? $conn->send_binary($data) : $conn->send($data);
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        print "closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
    },

    # TLS failures of clients that never completed the handshake (a client
    # that does not trust the certificate, say) end before on_connect and
    # are not reported to a listener.
    on_error => sub {
        my ($conn, $err) = @_;
        print "error: $err\n";
    },
);

print "listening on wss://localhost:$bound/ (certificate $opt{cert})\n";

EV::run;
undef $ctx;
print "bye\n";
exit 0;

# ------------------------------------------------------------------ client

# One echo over wss://, trusting the CA in $opt{ca}.  Returns the exit
# status: 0 if the echo came back intact.
sub run_client {
    my ($url) = @_;
    my $status = 1;

    # ssl_ca replaces the system roots as the trust store of this context.
    my $ctx = EV::Websockets::Context->new(ssl_ca => $opt{ca});
    my $conn = $ctx->connect(
        url             => $url,
        connect_timeout => 5,
        on_connect      => sub {
            my ($conn) = @_;
            print "connected to $url (certificate verified against $opt{ca})\n";
            $conn->send($opt{message});
        },
        on_message => sub {
            my ($conn, $data) = @_;
            my $want = $opt{message};
            utf8::encode($want);    # what comes back is bytes
            print $data eq $want ? "echo ok: $data\n" : "MISMATCH: $data\n";
            $status = 0 if $data eq $want;
            $conn->close(1000, 'done');
        },
        on_close => sub {
            my ($conn, $code) = @_;
            print "closed: $code\n";
            EV::break;
        },
        on_error => sub {
            my ($conn, $err) = @_;
            # e.g. "TLS handshake failed: the server's certificate is not
            # signed by a CA in ssl_ca ..." (see "on_error messages")
            print STDERR "error: $err\n";
            EV::break;
        },
    );
    my $guard = EV::timer(10, 0, sub { print STDERR "error: timed out\n"; EV::break });
    EV::run;
    return $status;
}
