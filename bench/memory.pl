#!/usr/bin/env perl
# RSS per idle server connection: this process listens; a child process
# opens N connections and keeps them idle; the server's resident memory is
# read before and after.
#
#   perl -Mblib bench/memory.pl [--count 1000] [--compression [PRESET] [--context-takeover]] [--talk]
#
# Each process needs --count descriptors and a few more: raise the limit
# (ulimit -n) for --count 10000 where it is lower.
#
# --compression: the server negotiates permessage-deflate (with
# --context-takeover: keeping compression context).  --compression PRESET
# (shared, dedicated_3kb ... dedicated_256kb): server and clients both use
# that preset.  --talk: each
# client sends one 2 KB JSON message and waits for its echo before going
# idle, so that connections have used compression.
#
# Ends with one JSON line.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Bench qw(guard emit rss_kib);
use EV;
use EV::Websockets;
use Getopt::Long;

my ($count, $compression, $context, $talk) = (1000, 0, 0, 0);
GetOptions('count=i' => \$count, 'compression:s' => \$compression, 'context-takeover' => \$context,
    talk => \$talk)
    or die "usage: $0 [--count N] [--compression [PRESET] [--context-takeover]] [--talk]\n";
$compression = 1 if defined $compression && $compression eq '';
# A preset applies to both sides; plain --compression leaves the clients'
# default offer.
my $preset = $compression =~ /^[a-z]/ ? $compression : undef;
my $message = join ',', map { qq({"id":$_,"status":"ok"}) } 1 .. 90;

my $guard = guard(60 + $count / 100, 'memory');

my $ctx = EV::Websockets::Context->new(proxy => '');
my $connected = 0;
my $echoed    = 0;
my $port      = $ctx->listen(
    port        => 0,
    compression      => $compression,
    ($context ? (context_takeover => 1) : ()),
    on_connect       => sub { $connected++ },
    on_message       => sub { $_[0]->send($_[1]); $echoed++ },
);

# A warm-up connection, so that one-time allocations are not counted.
my $warm = $ctx->connect(
    url        => "ws://127.0.0.1:$port/",
    on_connect => sub { $_[0]->send($message) },
    on_message => sub { $_[0]->close },
);
EV::run(EV::RUN_ONCE) until $echoed;
my $t = EV::timer(0.2, 0, sub { EV::break });
EV::run;

pipe(my $ready_r, my $ready_w) or die "pipe: $!";
pipe(my $quit_r, my $quit_w) or die "pipe: $!";
my $before = rss_kib();
my $pid = fork // die "fork: $!";
if (!$pid) {
    # The client: N connections in a fresh context and loop of its own.
    close $ready_r;
    close $quit_w;
    undef $ctx;
    my $loop    = EV::Loop->new;
    my $clients = EV::Websockets::Context->new(loop => $loop, proxy => '');
    my ($open, @conns) = (0);
    my $ready = sub { syswrite $ready_w, "ready\n" if ++$open == $count };
    push @conns, $clients->connect(
        url        => "ws://127.0.0.1:$port/",
        ($preset ? (compression => $preset) : ()),
        on_connect => sub { $talk ? $_[0]->send($message) : $ready->() },
        on_message => $ready,
        on_error   => sub { die "client: $_[1]\n" },
    ) for 1 .. $count;
    my $quit = $loop->io($quit_r, EV::READ, sub { $loop->break });
    $loop->run;
    exit 0;
}
close $ready_w;
close $quit_r;

my $reader = EV::io($ready_r, EV::READ, sub { EV::break });
EV::run;
undef $reader;
# let the server deliver every on_connect
EV::run(EV::RUN_NOWAIT) for 1 .. 100;
EV::run(EV::RUN_ONCE) while $connected < $count + 1;
my $after = rss_kib();
close $quit_w;
waitpid $pid, 0;

my $per_conn = ($after - $before) * 1024 / $count;
printf "%d idle server connections%s%s: RSS %d KiB -> %d KiB, %.0f bytes per connection\n",
    $count, $compression ? ', compression ' . ($preset // 'on') . ($context ? ' with context takeover' : '') : '',
    $talk ? ', after one message each' : '',
    $before, $after, $per_conn;
my $bool = sub { $_[0] ? JSON::PP::true() : JSON::PP::false() };
emit({
    bench                => 'memory',
    connections          => $count,
    compression          => $preset // $bool->($compression),
    context_takeover     => $bool->($context),
    talked               => $bool->($talk),
    rss_before_kib       => $before + 0,
    rss_after_kib        => $after + 0,
    bytes_per_connection => sprintf('%.0f', $per_conn) + 0,
});
