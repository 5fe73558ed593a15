#!/usr/bin/env perl
# WebSocket echo client.
#
#   perl -Mblib eg/echo_client.pl [url]       (default ws://127.0.0.1:9001/)
#
# Connects, sends a few messages (text, binary, a 64 KiB text message), checks
# and prints the echoes, closes with 1000 "done" and exits: 0 if every echo
# matched, 1 on any error or if nothing happens for 10 seconds.
# Start eg/echo_server.pl first.

use strict;
use warnings;

use EV;
use EV::Websockets;

$| = 1;

my $url = shift // 'ws://127.0.0.1:9001/';

# [ type, payload ].  Text is sent as UTF-8 and comes back as bytes, so the
# non-ASCII line is compared with its encoded form.
my $snowman = "snow \x{2603} caf\x{e9}";
my @messages = (
    [ text   => 'Hello, WebSocket!' ],
    [ text   => $snowman ],
    [ binary => pack('C*', 0 .. 255) ],
    [ text   => 'x' x 65536 ],
);

sub show {
    my ($data, $is_binary) = @_;
    my $len = length $data;
    return "binary, $len bytes" if $is_binary;
    return qq{"$data"} if $len <= 60;
    return sprintf '"%s..." (%d bytes)', substr($data, 0, 20), $len;
}

my $status = 0;
my @expected;    # echoes still to come, in order

my $ctx  = EV::Websockets::Context->new;
my $conn = $ctx->connect(
    url             => $url,
    connect_timeout => 5,

    on_connect => sub {
        my ($conn, $headers) = @_;
        print "connected to $url\n";
        for my $m (@messages) {
            my ($type, $data) = @$m;
            if ($type eq 'binary') {
                $conn->send_binary($data);
            } else {
                $conn->send($data);
                utf8::encode($data);    # what the echo will hold
            }
            push @expected, [ $data, $type eq 'binary' ? 1 : 0 ];
            print "sent:     ", show($data, $type eq 'binary'), "\n";
        }
    },

    on_message => sub {
        my ($conn, $data, $is_binary) = @_;
        my $want = shift @expected;
        my $ok   = $want && $data eq $want->[0] && $is_binary == $want->[1];
        print $ok ? 'echo ok:  ' : 'MISMATCH: ', show($data, $is_binary), "\n";
        $status = 1 unless $ok;
        $conn->close(1000, 'done') unless @expected;
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        print join(' ', 'closed:', $code, $reason // ()), "\n";
        EV::break;
    },

    on_error => sub {
        my ($conn, $err) = @_;
        print STDERR "error: $err\n";
        $status = 1;
        EV::break;
    },
);

my $guard = EV::timer(10, 0, sub {
    print STDERR "error: no complete exchange with $url within 10 seconds",
        " (is eg/echo_server.pl running?)\n";
    $status = 1;
    EV::break;
});

EV::run;
undef $conn;
undef $ctx;
exit $status;
