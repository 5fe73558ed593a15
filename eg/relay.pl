#!/usr/bin/env perl
# WebSocket relay (proxy): every client gets its own connection to an
# upstream server, and messages are passed both ways.
#
#   perl -Mblib eg/relay.pl [--port 9018] [--upstream ws://127.0.0.1:9001/]
#
# For each client that connects, the relay opens a connection to the
# upstream URL (ws:// or wss://) and then forwards every message, text as
# text and binary as binary, in both directions.  When one side closes, the
# other is closed with the same code and reason.  Codes that cannot be
# sent in a close frame are translated: 1005 (no code) becomes 1000, a
# connection lost without a close (1006) becomes 1014 "bad gateway"
# towards the client and 1001 "going away" towards the upstream, and so
# does an upstream that cannot be reached.
#
# Two details worth copying:
# - The client may send before the upstream connection is open.  Instead of
#   buffering, the relay stops reading from the client (pause_recv) until
#   the upstream is open, and TCP holds the messages back.
# - Backpressure: when one side receives faster than the other can take,
#   the relay stops reading from the fast side while the slow side's send
#   queue is over 1 MB, and resumes on the slow side's on_drain.
#
# Try it with eg/echo_server.pl as the upstream:
#   perl -Mblib eg/echo_server.pl
#   perl -Mblib eg/relay.pl
#   perl -Mblib eg/echo_client.pl ws://127.0.0.1:9018/
# Stop it with Ctrl-C (SIGINT) or SIGTERM: both sides of every pair are
# closed with 1001.

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use Getopt::Long;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my %opt = (port => 9018, upstream => 'ws://127.0.0.1:9001/');
GetOptions(\%opt, 'port=i', 'upstream=s') && !@ARGV
    or die "usage: $0 [--port N] [--upstream URL]\n";

my $HIGH_WATER = 1024 * 1024;

my $ctx = EV::Websockets::Context->new;

# First signal: close both sides of every pair with 1001 and leave once
# they are all gone (at most 2 seconds).  A second signal leaves at once.
my $shutdown = Shutdown->on_signals($ctx, 'relay shutting down', grace => 2);

# The code and reason to close one side with, after the other side closed
# with ($code, $reason).  $lost is what to say if the other side was lost.
sub onward {
    my ($code, $reason, $lost) = @_;
    return (1000, '') if $code == 1005;
    return ($code, $reason // '') if ($code >= 1000 && $code <= 1003) || ($code >= 1007 && $code <= 1014)
        || ($code >= 3000 && $code <= 4999);
    return @$lost;    # 1006 and anything else that cannot be sent
}

# Each connection's stash holds its partner as {peer}.

# A message from $from: pass it on, and stop reading from $from while the
# partner's queue is long.
sub forward {
    my ($from, $data, $is_binary) = @_;
    my $to = $from->stash->{peer} or return;
    return unless $to->is_connected;
    $is_binary ? $to->send_binary($data) : $to->send($data);    # text stays valid UTF-8
    $from->pause_recv if $to->send_queue_size > $HIGH_WATER;
}

# $conn's queue is empty: its partner may send again.
sub drained {
    my ($conn) = @_;
    my $from = $conn->stash->{peer} or return;
    $from->resume_recv;
}

# Close $conn.  A paused connection does not read, so it would not see the
# peer's answering close frame and would wait close_timeout for it: reading
# resumes first.
sub close_side {
    my ($conn, $code, $reason) = @_;
    $conn->resume_recv;
    $conn->close($code, $reason);
}

# $conn closed with ($code, $reason): close its partner the same way.
sub closed {
    my ($who, $conn, $code, $reason, @lost) = @_;
    print "$who closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
    my $other = delete $conn->stash->{peer};    # break the pair (and the cycle)
    if ($other) {
        delete $other->stash->{peer};
        # A client that went away while its upstream was still connecting:
        # close() cannot cancel a connect, so the upstream's on_connect
        # closes it once it is open.
        close_side($other, onward($code, $reason, \@lost));
    }
}

my $port = $ctx->listen(
    port => $opt{port},

    on_connect => sub {
        my ($client, $headers) = @_;
        print "client connected from ", $client->peer_address // '?', ", opening $opt{upstream}\n";
        $client->pause_recv;    # until the upstream is open

        my $upstream = $ctx->connect(
            url             => $opt{upstream},
            connect_timeout => 10,

            on_connect => sub {
                my ($up) = @_;
                if (!$client->is_connected) {    # the client left meanwhile
                    $up->close(1001, 'client went away');
                    return;
                }
                print "upstream open\n";
                $up->stash->{opened} = 1;
                $client->resume_recv;
            },
            on_message => \&forward,
            on_drain   => \&drained,
            on_close   => sub { closed(upstream => @_, 1014, 'bad gateway') },

            on_error => sub {
                my ($up, $err) = @_;
                print "upstream error: $err\n";
                # Once open, on_close follows and closes the client.  If it
                # never opened, on_close will not come: give up on the client.
                return if $up->stash->{opened};
                my $c = delete $up->stash->{peer} or return;
                delete $c->stash->{peer};
                close_side($c, 1014, 'bad gateway: upstream unavailable');
            },
        );
        $client->stash->{peer}   = $upstream;
        $upstream->stash->{peer} = $client;
    },

    on_message => \&forward,
    on_drain   => \&drained,
    on_close   => sub { closed(client => @_, 1001, 'going away') },

    on_error => sub {
        my ($conn, $err) = @_;
        print "client error: $err\n";
    },
);

print "listening on ws://127.0.0.1:$port/ (relaying to $opt{upstream})\n";

EV::run;
undef $ctx;
print "bye\n";
exit 0;
