#!/usr/bin/env perl
# Broadcast: one message to every subscriber, deliveries per second.
#
#   perl -Mblib bench/fanout.pl [--subscribers 1000,10000] [--deliveries 1000000]
#                               [--size 64] [--rounds 2] [--ways publish,loop,node,raw]
#                               [--chart fanout.png]
#
# A server process holds N subscriber connections and one control
# connection.  On "go" from the control connection it sends --deliveries/N
# messages of --size bytes to every subscriber, all in one loop iteration,
# three ways:
#
#   publish      EV::Websockets: $conn->publish($topic, $data), once per
#                message (the frame is built once, fanned out natively)
#   Perl loop    EV::Websockets: $_->send($data) for the subscribers
#   Node ws      Node.js ws: wss.clients.forEach(c => c.send(data)), ws's
#                broadcast idiom (skipped when node or ws is missing)
#   raw floor    no WebSocket library: the frames, built once, written to
#                each subscriber with one system call (what the kernel's
#                part costs; nothing can broadcast faster)
#
# The subscribers live in this process: raw sockets that upgrade, then only
# count bytes, so that reading costs little next to sending.  A round ends
# when every subscriber has every frame; its time runs from sending "go".
# Each way runs --rounds times, interleaved, and keeps its best round.  The
# table gives deliveries/s, publish's ratio to each way (above 1: publish
# is faster), and the server's CPU time per delivery (user and system, in
# 10 ms ticks: meaningful for rounds of a good fraction of a second); the
# last line is JSON.
#
# The server and this process each hold N descriptors and a few more:
# raise the limit (ulimit -n) for 10,000 subscribers where it is lower.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../t/lib";
use Bench qw(guard emit chart);
use EV;
use EV::Websockets;
use Getopt::Long;
use IO::Socket::INET;
use IPC::Open2 qw(open2);
use Scalar::Util qw(refaddr);
use Digest::SHA ();

my %o = (subscribers => '1000,10000', deliveries => 1_000_000, size => 64, rounds => 2,
    ways => 'publish,loop,node,raw');
GetOptions(\%o, 'subscribers=s', 'deliveries=i', 'size=i', 'rounds=i', 'ways=s', 'chart=s', 'serve=s')
    && $o{rounds} > 0 && $o{size} > 0 && $o{size} < 126 && $o{subscribers} =~ /^\d+(,\d+)*$/
    or die "usage: $0 [--subscribers N,...] [--deliveries N] [--size 1..125] [--rounds N]\n"
    . "       [--ways publish,loop,node,raw] [--chart FILE.png]\n";

if (defined $o{serve}) {
    $| = 1;
    $o{serve} eq 'raw' ? serve_raw() : serve($o{serve});
    my $quit = EV::io(\*STDIN, EV::READ, sub { EV::break });
    EV::run;
    exit 0;
}

my %chosen = map { $_ => 1 } split /,/, $o{ways};
my @ways = grep { $chosen{ $_->{key} } } (
    { key => 'publish', name => 'publish',   command => ours('publish') },
    { key => 'loop',    name => 'Perl loop', command => ours('loop') },
    { key => 'node',    name => 'Node ws',   command => $chosen{node} && node_command() },
    { key => 'raw',     name => 'raw floor', command => ours('raw') },
);
die "--ways must include publish\n" unless $chosen{publish};
my %skipped;
for my $way (grep { !ref $_->{command} } @ways) {
    $skipped{ $way->{name} } = $way->{command};
}
@ways = grep { ref $_->{command} } @ways;

my @counts = split /,/, $o{subscribers};
printf "%d-byte text messages to N subscribers, %d deliveries a round, best of %d rounds\n",
    @o{qw(size deliveries rounds)};
my %best;    # "$n $way" => the best round: { deliveries_per_sec, cpu_ns }
for my $round (1 .. $o{rounds}) {
    for my $n (@counts) {
        for my $way (@ways) {
            my $r = eval { broadcast($way, $n) };
            if (!$r) {
                $skipped{ $way->{name} } = "failed: $@";
                @ways = grep { $_ != $way } @ways;
                next;
            }
            my $key = "$n $way->{name}";
            $best{$key} = $r if !$best{$key} || $r->{deliveries_per_sec} > $best{$key}{deliveries_per_sec};
        }
    }
}
die "publish did not run: $skipped{publish}\n" if $skipped{publish};

my @rows;
for my $n (@counts) {
    my $ours = $best{"$n publish"}{deliveries_per_sec};
    push @rows, map {
        my $r = $best{"$n $_->{name}"};
        {   subscribers => $n + 0, way => $_->{name}, %$r,
            ratio => $ours / $r->{deliveries_per_sec} }
    } grep { $best{"$n $_->{name}"} } @ways;
}
printf "\n%12s %-10s %14s %14s %14s\n", 'subscribers', 'way', 'deliveries/s', 'publish is x', 'CPU ns each';
printf "%12d %-10s %14.0f %14.2f %14.0f\n", @$_{qw(subscribers way deliveries_per_sec ratio cpu_ns)} for @rows;
printf "%-30s skipped: %s\n", $_, $skipped{$_} =~ s/\s+\z//r for sort keys %skipped;

if ($o{chart}) {
    my $file = chart(
        file   => $o{chart},
        width  => 1000,
        title  => "Broadcast of $o{size} B to N subscribers (higher is better)",
        ylabel => 'million deliveries per second',
        bars   => [
            map {
                my $n = $_->{subscribers} % 1000 ? $_->{subscribers} : $_->{subscribers} / 1000 . 'k';
                [ "$_->{way} $n", sprintf '%.3f', $_->{deliveries_per_sec} / 1e6 ]
            } @rows
        ],
    );
    print "chart: $file\n" if $file;
}
emit({ bench => 'fanout', size => $o{size}, deliveries => $o{deliveries}, results => \@rows, skipped => \%skipped });
exit 0;

# This script serving one of its ways.
sub ours {
    my ($way) = @_;
    return [ $^X, (map {"-I$_"} @INC), $0, '--serve', $way ];
}

# node and the fan-out server script, with ws installed; or why not.
sub node_command {
    my ($node, $why) = eval { require NodePeer; NodePeer::node_with_ws() };
    return $@ ? "cannot load NodePeer: $@" : $why // 'no node' unless $node;
    return [ $node, "$FindBin::Bin/js/ws_fanout_server.js" ];
}

# One round: start the server, open $n subscribers and the control
# connection, send "go", count.  Returns deliveries per second.
sub broadcast {
    my ($way, $n) = @_;
    my $per_subscriber = int($o{deliveries} / $n) || 1;
    my $frame  = 2 + $o{size};    # an unmasked frame with a 7-bit length
    my $target = $n * $per_subscriber * $frame;
    my $limit  = guard(120 + $n / 100, "broadcast to $n ($way->{name})");

    my $pid = open2(my $out, my $in, @{ $way->{command} });
    my $port = <$out>;
    die "the server did not start\n" unless defined $port && $port =~ /^(\d+)$/;
    $port = $1;

    my ($received, $t0, $t1, $error, $cpu0, $cpu1) = (0);    # cpu: the server's
    my @subscribers = subscribe($port, $n, sub {
        $received += $_[0];
        ($t1 = EV::time, $cpu1 = cpu_seconds($pid), EV::break) if $received >= $target;
    });
    my $ctx = EV::Websockets::Context->new(proxy => '');
    my $control = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $cpu0 = cpu_seconds($pid); $t0 = EV::time; $_[0]->send("go $per_subscriber $o{size}") },
        on_error   => sub { $error = "control connection: $_[1]"; EV::break },
    );
    EV::run;
    die "$error\n" if $error;
    my @short = grep { $_->{bytes} != $per_subscriber * $frame } @subscribers;
    die scalar(@short) . " subscribers got other than $per_subscriber frames\n" if @short;

    undef $control;
    undef $ctx;
    undef $_->{watcher}, close $_->{fh} for @subscribers;
    close $in;
    waitpid $pid, 0;
    my $deliveries = $n * $per_subscriber;
    printf "  %-10s to %6d: %7.3fs, server CPU %7.3fs\n", $way->{name}, $n, $t1 - $t0, $cpu1 - $cpu0;
    return { deliveries_per_sec => $deliveries / ($t1 - $t0 || 1e-9), cpu_ns => ($cpu1 - $cpu0) / $deliveries * 1e9 };
}

# A process's user and system CPU seconds so far.
sub cpu_seconds {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or die "no /proc: $!";
    my @f = split ' ', (<$fh> =~ s/^.*\) //r);
    return ($f[11] + $f[12]) / 100;
}

# Open $n raw WebSocket connections, at most 256 handshakes at a time, and
# run the loop until all are open.  Then each counts the bytes it reads and
# passes their number to $count.
sub subscribe {
    my ($port, $n, $count) = @_;
    my $request = "GET / HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        . "Sec-WebSocket-Version: 13\r\n\r\n";
    my ($started, $open, @subscribers) = (0, 0);
    my $start;
    $start = sub {
        my $fh = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
            or die "subscriber $started: $!\n";
        $fh->blocking(0);
        syswrite($fh, $request) == length $request or die "subscriber $started: short write\n";
        my $sub = { fh => $fh, head => '', bytes => 0 };
        push @subscribers, $sub;
        $started++;
        $sub->{watcher} = EV::io($fh, EV::READ, sub {
            my $got = sysread($fh, my $buf, 256 * 1024);
            die "a subscriber's connection ended\n" unless $got;
            if (defined $sub->{head}) {
                $sub->{head} .= $buf;
                my $end = index $sub->{head}, "\r\n\r\n";
                return if $end < 0;
                die "not upgraded: $sub->{head}\n" unless $sub->{head} =~ m{^HTTP/1\.1 101 };
                $buf = substr $sub->{head}, $end + 4;
                undef $sub->{head};
                $open++;
                $start->() if $started < $n;
                EV::break if $open == $n;
            }
            $sub->{bytes} += length $buf;
            $count->(length $buf) if length $buf;
        });
    };
    $start->() while $started < $n && $started < 256;
    EV::run;
    undef $start;
    return @subscribers;
}

# The server side of the two EV::Websockets ways, in its own process: the
# port goes to stdout; the caller runs the loop until stdin closes.
sub serve {
    my ($way) = @_;
    our $ctx = EV::Websockets::Context->new(proxy => '');
    my %subscribers;    # the Perl loop's connections, by address
    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub {
            $way eq 'publish' ? $_[0]->subscribe('all') : ($subscribers{ refaddr $_[0] } = $_[0]);
        },
        on_message => sub {
            my ($control, $go) = @_;
            my ($count, $size) = $go =~ /^go (\d+) (\d+)$/ or return;
            my $data = 'x' x $size;
            if ($way eq 'publish') {
                $control->publish('all', $data) for 1 .. $count;
                return;
            }
            delete $subscribers{ refaddr $control };
            my @to = values %subscribers;
            for (1 .. $count) { $_->send($data) for @to }
        },
        on_close => sub { delete $subscribers{ refaddr $_[0] } },
    );
    print "$port\n";
}

# The raw floor's server: it answers the upgrade, reads the control
# connection's one frame, and writes the frames, concatenated, to every
# other connection.
sub serve_raw {
    our $listener = IO::Socket::INET->new(Listen => 4096, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
        or die "listen: $!\n";
    our %peers;    # by descriptor: { fh, in, out, open, reader, writer }
    my $write;
    $write = sub {
        my ($peer) = @_;
        my $sent = syswrite $peer->{fh}, $peer->{out};
        substr $peer->{out}, 0, $sent // 0, '';
        $peer->{writer} = !length $peer->{out} ? undef
            : $peer->{writer} // EV::io($peer->{fh}, EV::WRITE, sub { $write->($peer) });
    };
    my $read = sub {
        my ($peer) = @_;
        return delete $peers{ fileno $peer->{fh} } unless sysread $peer->{fh}, $peer->{in}, 65536, length $peer->{in};
        if (!$peer->{open}) {
            my ($key) = $peer->{in} =~ /^Sec-WebSocket-Key: *(\S+)\r$/mi or return;
            my $accept = Digest::SHA::sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
            ($peer->{in}, $peer->{open}) = ('', 1);
            $peer->{out} = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                . "Connection: Upgrade\r\nSec-WebSocket-Accept: $accept\r\n\r\n";
            return $write->($peer);
        }
        # The control's "go": one masked text frame with a 7-bit length.
        my ($length, $mask) = unpack 'x C a4', $peer->{in};
        return unless defined $mask;
        $length &= 127;
        return if length $peer->{in} < 6 + $length;
        my $go = substr($peer->{in}, 6, $length) ^ substr($mask x 32, 0, $length);
        my ($count, $size) = $go =~ /^go (\d+) (\d+)$/ or return;
        my $frames = ("\x81" . chr($size) . 'x' x $size) x $count;
        for my $to (grep { $_ != $peer } values %peers) {
            $to->{out} .= $frames;
            $write->($to);
        }
    };
    our $acceptor = EV::io($listener, EV::READ, sub {
        my $fh = $listener->accept or return;
        $fh->blocking(0);
        my $peer = $peers{ fileno $fh } = { fh => $fh, in => '', out => '' };
        $peer->{reader} = EV::io($fh, EV::READ, sub { $read->($peer) });
    });
    print $listener->sockport, "\n";
}
