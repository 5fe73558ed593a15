#!/usr/bin/perl
# One side of a wss:// connection for t/tls/close-flushes-tls-records.t, run in
# a perl of its own so that the test can preload t/shim/short_writes.c
# into it (socket writes cut to 1000 bytes).
#
#   perl -Iblib/lib -Iblib/arch t/bin/tls_close_peer.pl server [action...]
#   perl -Iblib/lib -Iblib/arch t/bin/tls_close_peer.pl client <port> [action...]
#
# As the server it listens with TLS on 127.0.0.1 (t/certs) and prints its
# port as the first line of stdout; as the client it connects to <port>
# (compression off).  Once connected it performs the actions in order:
#
#   send:<tag>:<bytes>   send_binary(big_message(<tag>, <bytes>))
#   close                close(1000, 'done')
#
#   wait-drain           the actions after it run in on_drain, once what
#                        was sent before has been written
#
# and with "close-after:<n>" it closes once <n> messages have arrived.
# It prints one line per event: "sent <length> <sha256>" for each message
# it sends, "message <length> <sha256>", "close <code> <reason>", "error
# <text>"; it exits after on_close (or prints "timeout" and exits 2 after
# 10 seconds).
use strict;
use warnings;
use EV;
use EV::Websockets;
use Digest::SHA qw(sha256_hex);
use FindBin;
use lib "$FindBin::Bin/../lib";
use TestWS ();    # clears proxy settings from the environment

my $role = shift @ARGV;
my $port = $role eq 'client' ? shift @ARGV : undef;
my @actions = @ARGV;
$| = 1;
my $CERTS = "$FindBin::Bin/../certs";

my $guard = EV::timer(10, 0, sub { print "timeout\n"; exit 2 });

# $bytes bytes that differ everywhere (a lost or repeated piece changes
# the digest), starting with $tag.
sub big_message {
    my ($tag, $bytes) = @_;
    return substr($tag . pack('N*', map { $_ * 2654435761 % 4294967296 } 0 .. $bytes / 4), 0, $bytes);
}

sub summary { return sprintf '%d %s', length $_[0], sha256_hex($_[0]) }

my ($close_after) = map { /^close-after:(\d+)$/ ? $1 : () } @actions;
my $received = 0;
# Run @_ (actions) on $conn, up to a wait-drain; the rest wait for on_drain.
my @after_drain;
sub act {
    my ($conn, @todo) = @_;
    while (defined(my $action = shift @todo)) {
        for ($action) {
            if ($_ eq 'wait-drain') {
                @after_drain = @todo;
                return;
            }
            elsif (/^send:(\w+):(\d+)$/) {
                my $data = big_message($1, $2);
                print 'sent ', summary($data), "\n";
                $conn->send_binary($data);
            }
            elsif ($_ eq 'close') {
                $conn->close(1000, 'done');
            }
        }
    }
}

my %callbacks = (
    on_connect => sub { act($_[0], @actions) },
    on_drain   => sub { act($_[0], splice @after_drain) },
    on_message => sub {
        print 'message ', summary($_[1]), "\n";
        $_[0]->close(1000, 'done') if $close_after && ++$received == $close_after;
    },
    on_error => sub { print "error $_[1]\n" },
    on_close => sub { print "close $_[1] ", $_[2] // '', "\n"; EV::break },
);

my $ctx = EV::Websockets::Context->new(ssl_ca => "$CERTS/ca.pem");
my $conn;
if ($role eq 'server') {
    print $ctx->listen(
        port     => 0,
        host     => '127.0.0.1',
        ssl_cert => "$CERTS/server.pem",
        ssl_key  => "$CERTS/server-key.pem",
        %callbacks,
    ), "\n";
}
else {
    $conn = $ctx->connect(url => "wss://127.0.0.1:$port/", compression => 0, %callbacks);
}
EV::run;
