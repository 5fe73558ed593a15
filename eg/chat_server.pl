#!/usr/bin/env perl
# Chat server with rooms and token authentication, and a line-mode client.
#
#   perl -Mblib eg/chat_server.pl [--port 9010] [--user NAME=TOKEN ...]
#   perl -Mblib eg/chat_server.pl --client URL
#
# Server: a client joins room <name> by connecting to /room/<name> and
# proves who it is with a token, either in the query string
# (ws://host:9010/room/lobby?token=wonderland) or in a header
# ("Authorization: Bearer wonderland").  on_handshake checks both before the
# upgrade: a bad path or an unknown token returns false, and the client gets
# "403 Forbidden" without ever becoming a connection.  Every message is sent
# to everybody in the sender's room as "<name> text"; joins and leaves are
# announced to the room.  --user NAME=TOKEN (repeatable) sets the accounts;
# the default ones are alice=wonderland and bob=builder.
# Stop it with Ctrl-C (SIGINT) or SIGTERM: every member is told, then
# closed with 1001 "server shutting down".
#
# Client: --client URL connects, prints every line it receives, sends each
# line typed on standard input, and leaves (close 1000 "bye") at the end of
# the input (Ctrl-D).  Try it in two terminals:
#
#   perl -Mblib eg/chat_server.pl
#   perl -Mblib eg/chat_server.pl --client 'ws://127.0.0.1:9010/room/lobby?token=wonderland'
#   perl -Mblib eg/chat_server.pl --client 'ws://127.0.0.1:9010/room/lobby?token=builder'

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use Getopt::Long;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my $port = 9010;
my ($client_url, @users);
GetOptions(
    'port=i'   => \$port,
    'user=s'   => \@users,
    'client=s' => \$client_url,
) && !@ARGV or die "usage: $0 [--port N] [--user NAME=TOKEN ...] | --client URL\n";

exit run_client($client_url) if defined $client_url;

# ------------------------------------------------------------------ server

# token => user name
@users = ('alice=wonderland', 'bob=builder') unless @users;
my %user_of_token = map { my ($name, $token) = split /=/, $_, 2; ($token // '') => $name } @users;

# room name => { "$conn" => $conn } of the members
my %rooms;

sub url_decode {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

# Who is this request, and which room does it want?  Returns (user, room),
# or nothing if the request must be refused.  Used by on_handshake to
# decide, and by on_connect to label the connection: both get the same
# request headers.
sub identify {
    my ($headers) = @_;
    my ($room) = ($headers->{Path} // '') =~ m{\A/room/([A-Za-z0-9_.-]{1,32})\z} or return;
    my %query = map { url_decode($_) } map { (split /=/, $_, 2)[0, 1] } split /[&;]/, $headers->{Query} // '';
    my $token = $query{token};
    $token //= $1 if ($headers->{Authorization} // '') =~ /\ABearer\s+(\S+)\z/i;
    my $user = defined $token ? $user_of_token{$token} : undef;
    return unless defined $user;
    return ($user, $room);
}

sub members { return grep { $_->is_connected } values %{ $rooms{ $_[0] } || {} } }

# Send a line to everybody in $room.
sub tell_room {
    my ($room, $line) = @_;
    $_->send($line) for members($room);
}

my $ctx = EV::Websockets::Context->new;

# First signal: tell everyone, close every connection with 1001 and leave
# once they are all gone (at most 2 seconds).  A second signal leaves at once.
my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
    grace   => 2,
    on_stop => sub {    # the open connections, before they are closed
        for my $conn (@_) {
            $conn->send('* server shutting down') if $conn->is_connected;
        }
    },
);

my $bound = $ctx->listen(
    port             => $port,
    max_message_size => 64 * 1024,    # chat lines, not files

    # Runs before the 101 answer.  False: "403 Forbidden", nothing else fires.
    on_handshake => sub {
        my ($headers) = @_;
        my ($user, $room) = identify($headers);
        if (!defined $user) {
            printf "refused %s (bad path or token)\n", $headers->{Path} // '?';
            return 0;
        }
        return 1;
    },

    on_connect => sub {
        my ($conn, $headers) = @_;
        my ($user, $room) = identify($headers);    # accepted, so both are set
        @{ $conn->stash }{qw(user room)} = ($user, $room);
        my @here = sort map { $_->stash->{user} } members($room);
        $rooms{$room}{"$conn"} = $conn;
        printf "%s joined #%s from %s\n", $user, $room, $conn->peer_address // '?';
        $conn->send("* welcome to #$room, $user; here: " . (join(', ', @here) || 'nobody else'));
        tell_room($room, "* $user joined #$room");
    },

    on_message => sub {
        my ($conn, $text, $is_binary) = @_;
        my ($user, $room) = @{ $conn->stash }{qw(user room)};
        return $conn->close(1003, 'text only') if $is_binary;
        print "#$room <$user> $text\n";
        tell_room($room, "<$user> $text");    # $text is UTF-8 bytes, valid for send
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        my ($user, $room) = @{ $conn->stash }{qw(user room)};
        delete $rooms{$room}{"$conn"};
        delete $rooms{$room} unless %{ $rooms{$room} };
        print "$user left #$room: $code", (length($reason // '') ? " $reason" : ''), "\n";
        tell_room($room, "* $user left #$room") unless $shutdown->stopping;
    },

    on_error => sub {
        my ($conn, $err) = @_;
        print "error: $err\n";
    },
);

print "listening on ws://127.0.0.1:$bound/room/<name>?token=<token> (Ctrl-C to stop)\n";

EV::run;
undef $ctx;    # closes the listening socket
print "bye\n";
exit 0;

# ------------------------------------------------------------------ client

# Connect to $url, print what arrives, send what is typed.  Returns the
# exit status: 0 after a clean close, 1 after an error.
sub run_client {
    my ($url) = @_;
    my $status = 0;
    my $ctx = EV::Websockets::Context->new;
    my ($conn, $stdin, $pending) = (undef, undef, '');

    $conn = $ctx->connect(
        url             => $url,
        connect_timeout => 5,

        on_connect => sub {
            print "connected to $url\n";
            # Only now start reading the keyboard (or a pipe).
            $stdin = EV::io(\*STDIN, EV::READ, sub {
                my $n = sysread STDIN, my $buf, 4096;
                if (!$n) {    # end of input: leave the room
                    undef $stdin;
                    $conn->close(1000, 'bye');
                    return;
                }
                $pending .= $buf;
                while ($pending =~ s/\A([^\n]*)\n//) {
                    my $line = $1;
                    $line =~ s/\r\z//;
                    next unless length $line;
                    # send() wants characters or valid UTF-8 bytes
                    if (!utf8::decode($line)) {
                        print STDERR "not UTF-8, not sent\n";
                        next;
                    }
                    $conn->send($line) if $conn->is_connected;
                }
            });
        },

        on_message => sub {
            my ($conn, $text) = @_;
            print "$text\n";
        },

        on_close => sub {
            my ($conn, $code, $reason) = @_;
            print "closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
            EV::break;
        },

        on_error => sub {
            my ($conn, $err) = @_;
            print STDERR "error: $err\n";    # e.g. "handshake failed: HTTP 403 Forbidden"
            $status = 1;
            EV::break;
        },
    );

    # Ctrl-C or SIGTERM: leave politely ("going away"); a second one quits.
    my $leaving;
    my @signals = map {
        EV::signal($_, sub {
            return EV::break if $leaving++;
            undef $stdin;
            $conn->is_connected ? $conn->close(1001, 'going away') : EV::break;
        })
    } qw(INT TERM);

    EV::run;
    return $status;
}
