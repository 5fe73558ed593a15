#!/usr/bin/perl
# The server attacked by t/server/hostile-peers.t, in a process of its own so
# that the test can see it survive and read its memory from /proc.
#
#   perl -Iblib/lib -Iblib/arch t/bin/hostile_echo_server.pl \
#       [max_message_size [handshake_timeout [lifetime]]]
#
# Listens on 127.0.0.1 (port chosen by the system) and prints the port as
# the first line of stdout.  Echoes every message with its type.  Exits on
# SIGTERM or after `lifetime` seconds (default 120), so a test that died
# leaves nothing behind.  SIGPIPE keeps its default action on purpose: a
# write to a peer that reset its connection must not kill the server.
use strict;
use warnings;
use EV;
use EV::Websockets;

my ($max_message_size, $handshake_timeout, $lifetime) = @ARGV;
$| = 1;

my $ctx  = EV::Websockets::Context->new;
my $port = $ctx->listen(
    port              => 0,
    host              => '127.0.0.1',
    max_message_size  => $max_message_size // 1 << 20,
    handshake_timeout => $handshake_timeout // 10,
    on_message        => sub {
        my ($conn, $data, $is_binary) = @_;
        $is_binary ? $conn->send_binary($data) : $conn->send($data);
    },
);
print "$port\n";

my $term = EV::signal('TERM', sub { EV::break });
my $life = EV::timer($lifetime // 120, 0, sub { print STDERR "lifetime over\n"; EV::break });
EV::run;
