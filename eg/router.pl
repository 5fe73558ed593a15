#!/usr/bin/env perl
# One listener, several services, chosen by the request path.
#
#   perl -Mblib eg/router.pl [port]      (default port 9016)
#
#   ws://127.0.0.1:9016/echo    echoes every message (text or binary)
#   ws://127.0.0.1:9016/upper   answers each text message in upper case
#   ws://127.0.0.1:9016/time    pushes the time every second, whatever you send
#   anything else               refused during the handshake
#
# The request headers given to on_handshake and on_connect carry the path
# as "Path" (percent-decoded and normalised; the query string is in
# "Query").  on_handshake refuses unknown paths before the upgrade: the
# client gets "403 Forbidden", the only refusal status the API offers (there
# is no 404 for WebSocket upgrades), and no other callback fires for it.
# on_connect records the route in the connection's stash, and the shared
# callbacks hand each event to that route's handlers.
#
# Try it with eg/echo_client.pl ws://127.0.0.1:9016/echo.  Stop it with
# Ctrl-C (SIGINT) or SIGTERM: open connections are closed with 1001.

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use POSIX qw(strftime);
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my $port = shift // 9016;
die "usage: $0 [port]\n" unless $port =~ /^\d+\z/ && $port <= 65535;

# path => { open => sub ($conn), message => sub ($conn, $data, $is_binary),
#           close => sub ($conn) }, each optional.
my %routes = (
    '/echo' => {
        message => sub {
            my ($conn, $data, $is_binary) = @_;
            $is_binary ? $conn->send_binary($data) : $conn->send($data);
        },
    },

    '/upper' => {
        message => sub {
            my ($conn, $data, $is_binary) = @_;
            return $conn->close(1003, 'text only') if $is_binary;
            utf8::decode($data);    # bytes -> characters, so that uc knows é
            $conn->send(uc $data);
        },
    },

    '/time' => {
        open => sub {
            my ($conn) = @_;
            my $tick = sub {
                $conn->send(strftime('%Y-%m-%d %H:%M:%S', localtime)) if $conn->is_connected;
            };
            $tick->();
            # The timer lives in the stash, as long as the connection.
            $conn->stash->{timer} = EV::timer(1, 1, $tick);
        },
        close => sub { delete $_[0]->stash->{timer} },    # it holds $conn: break the cycle
    },
);

sub route_of { return $routes{ $_[0]->stash->{path} // '' } }

my $ctx = EV::Websockets::Context->new;

# First signal: stop the routes' work (the /time timers), close every
# connection with 1001 and leave once they are all gone (at most 2
# seconds).  A second signal leaves at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
    grace   => 2,
    on_stop => sub {    # the open connections, before they are closed
        for my $conn (@_) {
            my $close = route_of($conn)->{close};
            $close->($conn) if $close;
        }
    },
);

my $bound = $ctx->listen(
    port => $port,

    on_handshake => sub {
        my ($headers) = @_;
        my $path = $headers->{Path} // '';
        return 1 if $routes{$path};
        print "refused $path\n";
        return 0;    # 403 Forbidden
    },

    on_connect => sub {
        my ($conn, $headers) = @_;
        $conn->stash->{path} = $headers->{Path};
        print "client connected to $headers->{Path} from ", $conn->peer_address // '?', "\n";
        my $open = route_of($conn)->{open};
        $open->($conn) if $open;
    },

    on_message => sub {
        my ($conn, $data, $is_binary) = @_;
        my $message = route_of($conn)->{message};
        $message->($conn, $data, $is_binary) if $message;
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        my $close = route_of($conn)->{close};
        $close->($conn) if $close;
        print "closed ", $conn->stash->{path}, ": $code", (length($reason // '') ? " $reason" : ''), "\n";
    },

    on_error => sub {
        my ($conn, $err) = @_;
        print "error: $err\n";
    },
);

print "listening on ws://127.0.0.1:$bound/ (routes: ", join(' ', sort keys %routes), ")\n";

EV::run;
undef $ctx;
print "bye\n";
exit 0;
