#!/usr/bin/env perl
# Keepalive: automatic pings find out when the other side is gone.
#
#   perl -Mblib eg/keepalive.pl [--interval 0.5] [--timeout 0.5] [--pongs 3]
#   perl -Mblib eg/keepalive.pl --url ws://host:port/ [--interval 5] [--timeout 5]
#   perl -Mblib eg/keepalive.pl --server [--port 9015] [--interval 5] [--timeout 5]
#
# A connection whose peer crashed, hung or vanished behind a dead network
# link may look open for a long time: TCP only notices when it sends.  With
# ping_interval, the module sends a ping whenever it has heard nothing from
# the peer for that many seconds; if no pong (or anything else) comes back
# within ping_timeout, on_error fires with "ping timeout" and the connection
# is closed with 1011, then on_close follows.  Pongs are passed to on_pong.
#
# Without --url or --server, a demo in this process: a client with
# keepalive connects to a server; after --pongs pongs the server "hangs"
# (it stops reading with pause_recv, as a stuck process would), and the
# client detects it.  Exits 0 once it did.
#
# --url: a client only.  It prints each pong and exits when the connection
# ends: 0 after a normal close (Ctrl-C or SIGTERM close it with 1001), 1 if
# the peer stopped answering or the connection failed.
# --server: a server with keepalive towards its clients; it prints their
# pongs and drops the ones that stop answering.  Stop it with Ctrl-C or
# SIGTERM (open connections are closed with 1001).

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use Getopt::Long;
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my %opt = (interval => 0.5, timeout => 0.5, pongs => 3, port => 9015);
GetOptions(\%opt, 'url=s', 'server', 'port=i', 'interval=f', 'timeout=f', 'pongs=i') && !@ARGV
    or die "usage: $0 [--url URL | --server [--port N]] [--interval SECONDS] [--timeout SECONDS] [--pongs N]\n";

my %keepalive = (ping_interval => $opt{interval}, ping_timeout => $opt{timeout});
my $t0 = EV::time;
my ($last_close, $shutdown);    # $last_close: the code on_close reported

sub say_at {
    my ($who, $what) = @_;
    printf "%6.2f s  %-7s %s\n", EV::time - $t0, "$who:", $what;
}

sub close_text { my ($code, $reason) = @_; return $code . (length($reason // '') ? " $reason" : '') }

# A client with keepalive.  $on_pong->($conn, $count) after each pong.
sub client {
    my ($ctx, $url, $on_pong) = @_;
    my $pongs = 0;
    return $ctx->connect(
        url             => $url,
        connect_timeout => 5,
        close_timeout   => 2,
        %keepalive,

        on_connect => sub {
            say_at(client => "connected; a ping after every $opt{interval} s of silence, "
                . "a pong expected within $opt{timeout} s");
        },
        on_message => sub { say_at(client => "message: $_[1]") },
        on_pong    => sub {
            my ($conn) = @_;
            say_at(client => 'pong #' . ++$pongs . ': the server is alive');
            $on_pong->($conn, $pongs) if $on_pong;
        },
        on_error => sub {
            my ($conn, $err) = @_;
            say_at(client => "error: $err");    # "ping timeout" for a dead peer
        },
        on_close => sub {
            my ($conn, $code, $reason) = @_;
            say_at(client => 'closed: ' . close_text($code, $reason));
            $last_close = $code;
            EV::break;
        },
    );
}

# A server with keepalive towards its clients.
sub server {
    my ($ctx, $port, $on_connect) = @_;
    return $ctx->listen(
        port          => $port,
        close_timeout => 2,
        %keepalive,

        on_connect => sub {
            my ($conn) = @_;
            say_at(server => 'client connected from ' . ($conn->peer_address // '?'));
            $on_connect->($conn) if $on_connect;
        },
        on_message => sub { $_[0]->send($_[1]) },
        on_pong    => sub { say_at(server => 'pong from ' . ($_[0]->peer_address // '?')) },
        on_error   => sub { say_at(server => "error: $_[1]") },
        on_close   => sub {
            my ($conn, $code, $reason) = @_;
            say_at(server => 'closed: ' . close_text($code, $reason));
        },
    );
}

my $demo = !$opt{server} && !defined $opt{url};
# The demo connects to itself: a proxy named in the environment must not
# capture that loopback connection.
my $ctx = EV::Websockets::Context->new($demo ? (proxy => '') : ());
# Ctrl-C or SIGTERM: close every open connection with 1001 and leave once
# they are gone (at most 2 seconds); a second signal leaves at once.
$shutdown = Shutdown->on_signals($ctx, 'going away', grace => 2, quiet => 1);
my $status = 1;

if ($opt{server}) {
    my $port = server($ctx, $opt{port});
    print "listening on ws://127.0.0.1:$port/ (Ctrl-C to stop)\n";
    EV::run;
    $status = 0;
} elsif (defined $opt{url}) {
    my $conn = client($ctx, $opt{url});
    EV::run;
    $status = defined $last_close && ($last_close == 1000 || $last_close == 1001) ? 0 : 1;
} else {    # the demo: both sides here
    my $server_side;
    my $port = server($ctx, 0, sub { $server_side = $_[0] });
    print "listening on ws://127.0.0.1:$port/ (in-process server)\n";
    my $conn = client($ctx, "ws://127.0.0.1:$port/", sub {
        my ($conn, $pongs) = @_;
        return if $pongs != $opt{pongs};
        say_at(server => 'hangs: stops reading, so pings go unanswered');
        $server_side->pause_recv;
    });
    my $guard = EV::timer(30, 0, sub { print "timed out\n"; EV::break });
    EV::run;
    # Success for the demo is the dead peer detected: on_close with 1011.
    $status = ($last_close // 0) == 1011 ? 0 : 1;
}

undef $ctx;
exit $status;
