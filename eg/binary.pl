#!/usr/bin/env perl
# Binary messages: a file sent in chunks with packed headers, checked with
# SHA-256 on arrival.
#
#   perl -Mblib eg/binary.pl [--file FILE | --size BYTES] [--corrupt]
#   perl -Mblib eg/binary.pl --server [--port 9012]
#   perl -Mblib eg/binary.pl --url ws://127.0.0.1:9012/ [--file FILE | --size BYTES]
#
# With neither --server nor --url, a server and a client run in this one
# process: the client uploads FILE (default: --size bytes of random data,
# 300000 by default) to the server, and exits 0 if the server's digest of
# what it received matches the client's, 1 otherwise.  --corrupt flips one
# byte after the digest was taken, to see the check fail.  --server runs
# only the server (stop it with Ctrl-C or SIGTERM; open connections are
# closed with 1001), --url only the client.
#
# Every message is binary (send_binary; text would have to be valid UTF-8)
# and starts with a 4-byte type, followed by fields packed in network byte
# order (pack/unpack with N = 32-bit, n = 16-bit, a = raw bytes):
#
#   client -> server  FILE  pack('a4 N n/a*', 'FILE', $size, $name)
#                     DATA  pack('a4 N', 'DATA', $seq) . $chunk
#                     DONE  pack('a4 N a32', 'DONE', $chunks, $sha256)
#   server -> client  RCPT  pack('a4 C N N a32', 'RCPT', $ok, $chunks, $bytes, $sha256)
#
# The server hashes the chunks as they arrive (Digest::SHA, in core Perl),
# and compares its digest with the one in DONE.  A text message, or a binary
# one it cannot parse, closes the connection with 1003 or 1008.

use strict;
use warnings;

use EV;
use EV::Websockets;
use Digest::SHA;
use FindBin;
use Getopt::Long;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my %opt = (port => 9012, size => 300_000, chunk => 64 * 1024);
GetOptions(\%opt, 'server', 'port=i', 'url=s', 'file=s', 'size=i', 'chunk=i', 'corrupt') && !@ARGV
    or die "usage: $0 [--server [--port N]] [--url URL] [--file FILE | --size BYTES] [--corrupt]\n";

my $status = 1;
my $ctx    = EV::Websockets::Context->new(proxy => '');    # loopback: never via a proxy
my ($client, $shutdown);    # $shutdown: --server only

# A run ends when the client is done (or, for --server, on a signal).
sub finish { EV::break }

# ------------------------------------------------------------------ server

sub serve {
    my ($port) = @_;
    return $ctx->listen(
        port             => $port,
        max_message_size => 1024 * 1024,    # no chunk is larger

        on_connect => sub {
            my ($conn) = @_;
            print "server: client connected from ", $conn->peer_address // '?', "\n";
        },

        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            return $conn->close(1003, 'binary messages only') unless $is_binary;
            my $up = $conn->stash;    # this upload's state
            my $type = substr $data, 0, 4;
            if ($type eq 'FILE') {
                my ($size, $name) = unpack 'x4 N n/a*', $data;
                %$up = (name => $name, size => $size, chunks => 0, bytes => 0, sha => Digest::SHA->new(256));
                print "server: receiving '$name', $size bytes\n";
            } elsif ($type eq 'DATA' && $up->{sha} && length $data >= 8) {
                my $seq = unpack 'x4 N', $data;
                return $conn->close(1008, "chunk $seq out of order") if $seq != $up->{chunks};
                $up->{chunks}++;
                $up->{bytes} += length($data) - 8;
                $up->{sha}->add(substr $data, 8);
            } elsif ($type eq 'DONE' && $up->{sha} && length $data == 40) {
                my ($chunks, $their) = unpack 'x4 N a32', $data;
                my $ours = $up->{sha}->digest;
                my $ok = $ours eq $their && $chunks == $up->{chunks} && $up->{bytes} == $up->{size} ? 1 : 0;
                printf "server: '%s' complete: %d bytes in %d chunks, sha256 %s: %s\n",
                    $up->{name}, $up->{bytes}, $up->{chunks}, unpack('H*', $ours),
                    $ok ? 'digest ok' : 'DIGEST MISMATCH';
                $conn->send_binary(pack 'a4 C N N a32', 'RCPT', $ok, $up->{chunks}, $up->{bytes}, $ours);
                %$up = ();
            } else {
                $conn->close(1008, 'unexpected message');
            }
        },

        on_close => sub {
            my ($conn, $code, $reason) = @_;
            print "server: closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
        },

        on_error => sub { print "server: error: $_[1]\n" },
    );
}

# ------------------------------------------------------------------ client

# The bytes to send and the name to give them.
sub payload {
    if (defined $opt{file}) {
        open(my $fh, '<:raw', $opt{file}) or die "cannot read $opt{file}: $!\n";
        local $/;
        my $bytes = <$fh> // '';
        (my $name = $opt{file}) =~ s{.*/}{};
        return ($bytes, $name);
    }
    my $bytes = pack 'C*', map { int rand 256 } 1 .. $opt{size};
    return ($bytes, "random-$opt{size}.bin");
}

sub upload {
    my ($url) = @_;
    my ($bytes, $name) = payload();
    my $digest = Digest::SHA::sha256($bytes);    # 32 raw bytes
    # --corrupt: change one byte after the digest was taken.
    substr($bytes, length($bytes) >> 1, 1) ^= "\x01" if $opt{corrupt} && length $bytes;

    $client = $ctx->connect(
        url             => $url,
        connect_timeout => 5,

        on_connect => sub {
            my ($conn) = @_;
            my $chunks = 0;
            $conn->send_binary(pack 'a4 N n/a*', 'FILE', length $bytes, $name);
            for (my $at = 0; $at < length $bytes; $at += $opt{chunk}) {
                $conn->send_binary(pack('a4 N', 'DATA', $chunks++) . substr($bytes, $at, $opt{chunk}));
            }
            $conn->send_binary(pack 'a4 N a32', 'DONE', $chunks, $digest);
            printf "client: sent '%s': %d bytes in %d chunks, sha256 %s\n",
                $name, length $bytes, $chunks, unpack('H*', $digest);
        },

        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            my ($type, $ok, $chunks, $got, $theirs) = unpack 'a4 C N N a32', $data;
            if (!$is_binary || $type ne 'RCPT') {
                print "client: unexpected answer\n";
            } elsif ($ok && $theirs eq $digest && $got == length $bytes) {
                print "client: server confirms $got bytes, same sha256: transfer intact\n";
                $status = 0;
            } else {
                printf "client: server got %d bytes with sha256 %s: transfer DAMAGED\n", $got, unpack('H*', $theirs);
            }
            $conn->close(1000, 'done');
        },

        on_close => sub {
            my ($conn, $code, $reason) = @_;
            print "client: closed: $code", (length($reason // '') ? " $reason" : ''), "\n";
            finish();
        },

        on_error => sub {
            print "client: error: $_[1]\n";
            finish();
        },
    );
}

# ------------------------------------------------------------------ main

if ($opt{server}) {
    my $port = serve($opt{port});
    print "listening on ws://127.0.0.1:$port/ (Ctrl-C to stop)\n";
    # First signal: close every connection with 1001, leave once they are
    # gone (at most 2 seconds).  A second signal leaves at once.
    $shutdown = Shutdown->on_signals($ctx, 'server shutting down', grace => 2);
    EV::run;
    $status = 0;
} else {
    my $url = $opt{url};
    if (!defined $url) {    # both sides here
        my $port = serve(0);
        print "listening on ws://127.0.0.1:$port/ (in-process server)\n";
        $url = "ws://127.0.0.1:$port/";
    }
    upload($url);
    my $guard = EV::timer(30, 0, sub { print "timed out\n"; EV::break });
    EV::run;
}

undef $client;
undef $ctx;
exit $status;
