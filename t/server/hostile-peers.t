# Proves: a server under hostile load survives, serves its other clients,
# frees every attacker's socket and keeps its memory bounded.
# POD: EV::Websockets, "Listening" and "Limits and their defaults".
#
# Hostile peers against our server running in a process of its own
# (t/bin/hostile_echo_server.pl: echo, max_message_size 1 MiB,
# handshake_timeout 1 s): malformed frames from many connections at once,
# random bytes, truncated frames, resets in the middle of messages, a ping
# flood, a frame claiming 100 MB, header floods, slowloris, and 1000
# connections opened and dropped at once.
#
# After each attack: the server process is alive; a normal client connected
# since before the attacks and a new one both get a text and a binary
# message echoed; the server has closed every attacker's socket (it holds
# as many descriptors as before the attacks); its resident memory is back
# near the baseline.  While the attacks that try to make it buffer run, its
# memory stays bounded.
#
# Which close code each violation gets is proven by
# t/protocol/peer-violations.t, the exact HTTP answers and the handshake
# deadline by t/server/http-answers.t, the size limit by
# t/protocol/max-message-size.t; this file is about survival, service to
# others and bounded memory under hostile load.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Socket qw(SHUT_WR);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use File::Temp qw(tempdir);
use POSIX ();
use lib 't/lib';
use TestWS;
use RawPeer;

plan skip_all => 'needs /proc to watch the server process'
    unless -r "/proc/$$/status" && -d "/proc/$$/fd";

my $guard = EV::timer(60, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

$SIG{PIPE} = 'IGNORE';    # writes to a server that hung up fail with EPIPE

my $MAX_MESSAGE       = 1 << 20;
my $HANDSHAKE_TIMEOUT = 1;

# Memory bounds, in KiB of the server's VmRSS above the baseline taken
# after a warm-up.  Freed memory does not always go back to the system
# (malloc keeps fragmented heap and raises its mmap threshold after large
# frees), so after an attack RSS need not return to the byte; 16 MiB leaves
# room for that while still being far below what any attack would leave
# behind if the server buffered it: each buffering attack below pushes 40
# MB or more at the server.  The same 16 MiB bounds the peak during the
# attacks: kernel socket buffers are not part of RSS, so a server that
# stops reading what it cannot process holds only its bounded buffers, and
# the slowloris and 1000-connection attacks hold at most 500 partial
# request heads (16 KiB at most each, by the head limit).
my $SETTLED_KIB = 16 << 10;
my $PEAK_KIB    = 16 << 10;

# ---- the server process -------------------------------------------------

my $TMP = tempdir('ev-ws-hostile-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $LOG = "$TMP/server.log";
my $server = spawn_daemon(
    [ $^X, (map { "-I$_" } grep { !ref } @INC), 't/bin/hostile_echo_server.pl',
      $MAX_MESSAGE, $HANDSHAKE_TIMEOUT, 120 ],
    $LOG,
);
my $PORT = printed_port($server, $LOG)
    or BAIL_OUT('the server did not start: ' . slurp($LOG));
my $URL = "ws://127.0.0.1:$PORT/";

# Not reaped (EV::child sets status when it is) and still there.
sub server_alive { return !defined $server->{status} && kill(0, $server->{pid}) }

sub server_rss_kib {
    open(my $fh, '<', "/proc/$server->{pid}/status") or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

sub server_fds {
    opendir(my $dh, "/proc/$server->{pid}/fd") or return 0;
    return scalar grep { !/^\./ } readdir $dh;
}

# Wait (at most $secs seconds) until the server holds no more than $n
# descriptors; returns how many it holds.
sub server_fds_down_to {
    my ($n, $secs) = @_;
    my $fds  = server_fds();
    my $poll = EV::timer(0, 0.02, sub { $fds = server_fds() });
    run_until(sub { $fds <= $n }, $secs);
    return $fds;
}

# The server's highest RSS since peak_reset, sampled every 10 ms while the
# loop runs.
my $peak = 0;
my $sampler = EV::timer(0, 0.01, sub { my $r = server_rss_kib(); $peak = $r if $r > $peak });
sub peak_reset { $peak = server_rss_kib() }

sub show_server_log { diag("server output:\n" . slurp($LOG)) }

# ---- the normal clients ----------------------------------------------------

my $cctx = EV::Websockets::Context->new;

# Connected before the first attack, used after every one.
my %steady;
my $steady = $cctx->connect(url => $URL, recording(\%steady));
run_until(sub { $steady{connect} || $steady{error} }, 5)
    or BAIL_OUT('a normal client cannot connect: ' . slurp($LOG));

# A text and a binary message go through the steady client and through a
# new one, and come back intact.
my $round = 0;
sub serves_ok {
    my ($label) = @_;
    $round++;
    my @want = (
        [ text   => "round $round: caf\xc3\xa9 \xe2\x82\xac", 0 ],
        [ binary => pack('N*', map { $_ * 2654435761 % 2**32 } 1 .. 4096) . "\0\xff$round", 1 ],
    );
    my $before = @{ $steady{message} || [] };
    my $steady_open = $steady->is_connected;
    ok($steady_open, "$label: the steady client is still connected");
    if ($steady_open) {
        $steady->send($want[0][1]);
        $steady->send_binary($want[1][1]);
    }
    my %fresh;
    my $fresh = $cctx->connect(url => $URL, recording(\%fresh, on_connect => sub {
        $_[0]->send($want[0][1]);
        $_[0]->send_binary($want[1][1]);
    }));
    my $got = sub { my ($ev, $n) = @_; @{ $ev->{message} || [] } >= $n };
    run_until(sub {
        ($got->(\%steady, $before + 2) || !$steady_open || $steady{close})
            && ($got->(\%fresh, 2) || $fresh{error} || $fresh{close})
    }, 10);
    messages_match("$label: steady client", \@want,
        [ @{ $steady{message} || [] }[ $before .. $before + 1 ] ]) if $steady_open;
    messages_match("$label: new client", \@want, $fresh{message} || []);
    is($fresh{error}, undef, "$label: the new client saw no error")
        or diag(explain($fresh{error}));
    $fresh->close if $fresh->is_connected;
    run_until(sub { $fresh{close} || $fresh{error} }, 5);
    return;
}

# ---- the checks after each attack -------------------------------------------

my ($BASE_FDS, $BASE_RSS);

sub survived_ok {
    my ($label) = @_;
    my $failed = !Test::More->builder->is_passing;
    ok(server_alive(), "$label: the server process is alive")
        or return show_server_log();
    serves_ok($label);
    my $fds = server_fds_down_to($BASE_FDS, 10);
    cmp_ok($fds, '<=', $BASE_FDS, "$label: the server closed every attacker's socket")
        or diag("it holds $fds descriptors, $BASE_FDS before the attacks");
    my $rss = server_rss_kib();
    note(sprintf '%s: RSS %+d KiB', $label, $rss - $BASE_RSS);
    cmp_ok($rss - $BASE_RSS, '<', $SETTLED_KIB, "$label: the server's memory is back near the baseline")
        or diag("RSS $rss KiB, baseline $BASE_RSS KiB");
    show_server_log() if !$failed && !Test::More->builder->is_passing;
    return;
}

# The peak RSS while an attack ran, against its bound.
sub peak_ok {
    my ($label) = @_;
    note(sprintf '%s: peak RSS %+d KiB', $label, $peak - $BASE_RSS);
    return if cmp_ok($peak - $BASE_RSS, '<', $PEAK_KIB, "$label: the server's memory stayed bounded meanwhile");
    diag("peak RSS $peak KiB, baseline $BASE_RSS KiB");
    show_server_log();
}

# Wait until every peer of @$peers satisfies $cond (at most $secs seconds).
sub all_peers { my ($cond, $peers, $secs) = @_; run_until(sub { !grep { !$cond->($_) } @$peers }, $secs) }

# Raw clients that upgrade and then run $on_open; $n per entry of @$what
# (any list: each entry is passed to $on_open with the peer).
sub raw_clients {
    my ($n, $what, $on_open, %opt) = @_;
    return map {
        my $w = $_;
        map { RawPeer->client(port => $PORT, %opt, on_open => sub { $on_open->($_[0], $w) }) } 1 .. $n;
    } @$what;
}

# ---- warm-up and baseline -----------------------------------------------------
# The first connections, a message at the size limit and a refused one make
# the allocator grow its heap to its working size; the baseline is taken
# after that.
my $FDS_BEFORE_WARMUP = server_fds();
{
    my @warm = raw_clients(20, [ 1 .. 5 ], sub {
        my ($p, $i) = @_;
        $p->send_frame(opcode => 2, payload => 'w' x ($i == 1 ? $MAX_MESSAGE : 1000 * $i));
        $p->send_frame(opcode => 2, payload => 'x', mask => 0) if $i == 5;    # refused
    });
    all_peers(sub { $_[0]{frames}[0] || $_[0]{eof} }, \@warm, 10);
    $_->close_tcp for @warm;
    serves_ok('warm-up');
    $BASE_FDS = server_fds_down_to($FDS_BEFORE_WARMUP, 5);
    $BASE_RSS = server_rss_kib();
    note("baseline: $BASE_FDS descriptors, RSS $BASE_RSS KiB");
}

# ---- the attacks ------------------------------------------------------------------

# A subtest for one attack, skipped if an earlier one killed the server.
sub attack {
    my ($name, $code) = @_;
    subtest $name => sub {
        plan skip_all => 'the server process is gone' unless server_alive();
        $code->();
    };
}

attack 'malformed frames, many connections at once' => sub {
    # [ name, frames: send_frame arguments (array refs) or raw bytes ]
    my $mask = "\0\0\0\0";    # a zero mask leaves the payload as it is
    my @malformed = (
        [ 'unmasked client frame',          [ payload => 'x', mask => 0 ] ],
        [ 'RSV1 without an extension',      [ payload => 'x', rsv => 4 ] ],
        [ 'RSV2 and RSV3',                  [ opcode => 2, payload => 'x', rsv => 3 ] ],
        [ 'reserved data opcode 3',         [ opcode => 3, payload => 'x' ] ],
        [ 'reserved control opcode 0xF',    [ opcode => 0xF ] ],
        [ 'continuation without a start',   [ opcode => 0, payload => 'x' ] ],
        [ 'text frame inside a fragmented message',
            [ opcode => 2, fin => 0, payload => 'a' ], [ opcode => 1, payload => 'b' ] ],
        [ 'fragmented ping',                [ opcode => 9, fin => 0, payload => 'p' ] ],
        [ 'ping of 126 bytes',              [ opcode => 9, payload => 'p' x 126 ] ],
        [ 'ping claiming 70000 bytes',      [ opcode => 9, raw_len => 70000 ] ],
        [ 'close with a 1-byte payload',    [ opcode => 8, payload => "\x03" ] ],
        [ 'close with code 1005',           [ opcode => 8, payload => pack('n', 1005) ] ],
        [ 'close with an invalid UTF-8 reason', [ opcode => 8, payload => pack('n', 1000) . "\xff" ] ],
        [ 'invalid UTF-8 text',             [ payload => "\xc0\xaf" ] ],
        [ 'invalid UTF-8 at the end of a 60 KB fragment',
            [ opcode => 1, fin => 0, payload => 'a' x 60000 . "\xed\xa0\x80" ], [ opcode => 0, payload => 'b' ] ],
        [ '64-bit length with the top bit set', pack('CCQ>', 0x82, 0xFF, 2**63 + 1) . $mask . 'x' ],
    );
    my @peers = raw_clients(12, \@malformed, sub {
        my ($p, $case) = @_;
        $p->{case} = $case->[0];
        ref ? $p->send_frame(@$_) : $p->send_raw($_) for @$case[ 1 .. $#$case ];
    });
    note(scalar(@peers) . ' connections');
    ok(all_peers(sub { $_[0]{eof} }, \@peers, 10), 'the server closed every one of them');
    my @odd = map { "$_->{case}: " . ($_->{close_code} // 'no close frame') }
        grep { ($_->{close_code} // 0) !~ /^(1002|1007|1009)\z/ } @peers;
    is_deeply(\@odd, [], '... each after a close frame with 1002, 1007 or 1009');
    $_->close_tcp for @peers;
    survived_ok('malformed frames');
};

attack 'random bytes after the handshake' => sub {
    peak_reset();
    # Pure noise of various lengths, including long blobs, and noise
    # shaped like masked frames (random opcode, flags, lengths and
    # payloads), which gets further into the parser.
    my @blobs = (
        (map { [ "noise, seed $_", $_, 1 + $_ * 37 ] } 1 .. 12),
        (map { [ "long noise, seed $_->[0]", @$_ ] } [ 101, 256 << 10 ], [ 102, 1 << 20 ], [ 103, 4 << 20 ]),
        (map { [ "random masked frames, seed $_", $_, 0 ] } 201 .. 220),
    );
    # Whatever state the noise leaves the parser in (even in the middle of
    # a payload declared up to the 1 MiB limit), the zeros that follow end
    # it: the first frame header they form is unmasked.
    my $end = "\0" x ($MAX_MESSAGE + 16);
    my @peers = raw_clients(2, \@blobs, sub {
        my ($p, $blob) = @_;
        my (undef, $seed, $length) = @$blob;
        $p->send_raw(($length ? noise($seed, $length) : random_frames($seed, 200)) . $end);
    });
    ok(all_peers(sub { $_[0]{eof} }, \@peers, 10), 'the server closed every connection');
    $_->close_tcp for @peers;
    peak_ok('random bytes');
    survived_ok('random bytes');
};

attack 'truncated frames, then EOF' => sub {
    my $mask = "\0\0\0\0";
    my @truncated = (
        [ 'one byte',                       "\x82" ],
        [ 'header without the mask key',    "\x82\xE4\x01\x02" ],
        [ 'header only',                    "\x82\xE4$mask" ],
        [ 'half a 16-bit length',           "\x82\xFE\x03" ],
        [ 'half a 64-bit length',           "\x82\xFF\x00\x00\x00\x00" ],
        [ 'half a payload',                 "\x82\xFE\x03\xE8$mask" . 'h' x 500 ],
        [ 'half of a 900 KB payload',       pack('CCQ>', 0x82, 0xFF, 900_000) . $mask . 'h' x 450_000 ],
        [ 'half a close frame',             "\x88\x8A$mask\x03\xE8ab" ],
        [ 'half a ping',                    "\x89\x90${mask}ping" ],
        [ 'a first fragment, then half a continuation',
            "\x01\x83${mask}abc" . "\x80\x85${mask}de" ],
    );
    my @peers = raw_clients(10, \@truncated, sub { $_[0]->send_raw($_[1][1]) });
    ok(all_peers(sub { $_[0]{open} && !length $_[0]{wbuf} }, \@peers, 10), 'every truncated frame was sent');
    # Half-close: the server sees EOF, and must close its side although
    # this one keeps the socket open.
    shutdown($_->{sock}, SHUT_WR) for @peers;
    ok(all_peers(sub { $_[0]{eof} }, \@peers, 10), 'after EOF the server closed every connection');
    $_->close_tcp for @peers;
    survived_ok('truncated frames');
};

attack 'RST in the middle of messages' => sub {
    my $mask = "\0\0\0\0";
    # Half of a 900 KB frame sent, then a reset.
    my $half = pack('CCQ>', 0x82, 0xFF, 900_000) . $mask . 'r' x 450_000;
    my @sending = raw_clients(10, ['half sent'], sub { $_[0]->send_raw($half) });
    # Four 256 KiB messages sent, their echoes not read, then a reset:
    # the server has echoes queued or on their way.
    my $message = pack('CCQ>', 0x82, 0xFF, 256 << 10) . $mask . 'e' x (256 << 10);
    my @echoing = map {
        Stream->new(port => $PORT, upgrade => 1, pause => 1, produce => producer(4 * length $message, $message, $message))
    } 1 .. 10;
    ok(all_peers(sub { $_[0]{open} && !length $_[0]{wbuf} }, \@sending, 10), 'half frames sent');
    $_->reset_tcp for @sending;
    ok(all_peers(sub { $_[0]{done} }, \@echoing, 10), 'messages to echo sent');
    ok(!(grep { $_->{eof} } @echoing), '... on open connections');
    $_->reset for @echoing;
    survived_ok('RST mid-message');
};

attack 'a flood of pings to a peer that does not read' => sub {
    peak_reset();
    # 400,000 pings of 125 bytes (the most a control frame holds), 52 MB
    # of frames: queuing every pong would take 50 MB.  The payloads
    # carry their number, so the pongs can be matched.
    my ($count, $per_chunk) = (400_000, 1000);
    my $made = 0;
    my $payload = sub { sprintf('%010d', $_[0]) . 'p' x 115 };
    my ($pongs, $last_pong, $in_order, $closed) = (0, -1, 1);
    my $flood = Stream->new(
        port     => $PORT,
        upgrade  => 1,
        pause    => 1,    # stop reading once upgraded
        produce  => sub {
            return undef if $made == $count;
            my $chunk = join '', map { "\x89\xFD\0\0\0\0" . $payload->($_) } $made + 1 .. $made + $per_chunk;
            $made += $per_chunk;
            return $chunk;
        },
        on_frame => sub {
            my ($op, $data) = @_;
            $closed = 1 if $op == 8;
            return unless $op == 10;
            my ($n) = $data =~ /^(\d{10})/;
            $in_order = 0 unless defined $n && $n > $last_pong && $data eq $payload->($n);
            ($pongs, $last_pong) = ($pongs + 1, $n // $last_pong);
        },
    );
    ok(run_until(sub { $flood->{sent} >= 8 << 20 || $flood->{done} || $flood->{eof} || $flood->stalled }, 10),
        'the flood is under way');
    # The attacker has not read anything yet: the server must still answer
    # others.
    serves_ok('during the flood');
    # Go on until the attacker sent everything or the server stopped
    # taking its bytes (it stopped reading).
    run_until(sub { $flood->{done} || $flood->{eof} || $flood->stalled }, 15);
    note(sprintf 'the attacker sent %.1f MB without reading', $flood->{sent} / 1e6);
    $flood->resume;
    ok(run_until(sub { ($flood->{done} && $last_pong == $count) || $flood->{eof} }, 30),
        'once the attacker reads, the last ping gets its pong');
    note("$pongs pongs for $count pings");
    ok($in_order, '... each pong answers a ping, in order');
    ok(!$closed && !$flood->{eof}, '... and the connection stays open');
    peak_ok('ping flood');
    $flood->close;
    survived_ok('ping flood');
};

attack 'a frame claiming 100 MB, and endless fragments' => sub {
    peak_reset();
    # Each attacker streams up to 40 MB; the server must refuse at once,
    # without buffering what it cannot keep.
    my $chunk    = 'z' x (256 << 10);
    my $mask     = "\0\0\0\0";
    my $fragment = pack('CCQ>', 0x00, 0xFF, length $chunk) . $mask . $chunk;
    my @attacks = (
        [ '100 MB binary frame', pack('CCQ>', 0x82, 0xFF, 100_000_000) . $mask, $chunk ],
        [ '100 MB text frame',   pack('CCQ>', 0x81, 0xFF, 100_000_000) . $mask, $chunk ],
        [ 'endless 256 KiB fragments', "\x02" . substr($fragment, 1), $fragment ],
        [ 'endless 1-byte fragments',  "\x02\x81${mask}y", "\x00\x81${mask}y" x 40_000 ],
    );
    my @streams = map {
        my $a = $_;
        map { Stream->new(port => $PORT, upgrade => 1, name => $a->[0], produce => producer(40 << 20, @$a[1, 2])) } 1 .. 3;
    } @attacks;
    ok(run_until(sub { !grep { !$_->{eof} } @streams }, 20), 'the server closed every one');
    my @codes = map { "$_->{name}: " . ($_->{close_code} // 'none') } @streams;
    is_deeply(\@codes, [ map { "$_->{name}: 1009" } @streams ], '... each with close code 1009');
    my $written = 0;
    $written += $_->{sent} for @streams;
    note(sprintf 'the attackers wrote %.1f MB in all', $written / 1e6);
    peak_ok('oversized messages');
    $_->close for @streams;
    survived_ok('oversized messages');
};

attack 'header floods' => sub {
    peak_reset();
    # Each attacker streams up to 16 MB of request head that never ends,
    # or ends far beyond the 16 KiB limit.
    my $start = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    my @floods = (
        [ 'one huge header line',       "${start}X-Huge: ", 'a' x 65536 ],
        [ 'thousands of header lines',  $start, join('', map { "X-Line-$_: v\r\n" } 1 .. 4000) ],
        [ '5000 header lines, then the end', $start . join('', map { "X-N: $_\r\n" } 1 .. 5000) . "\r\n" ],
        [ 'a request line without end', 'GET /', 'a' x 65536 ],
        [ 'endless empty lines',        "\r\n", "\r\n" x 32768 ],
    );
    my @streams = map {
        my $f = $_;
        map { Stream->new(port => $PORT, name => $f->[0], produce => producer(16 << 20, @$f[1, 2])) } 1 .. 4;
    } @floods;
    ok(run_until(sub { !grep { !$_->{eof} } @streams }, 20), 'the server closed every one');
    # A reset (the server closing with our bytes unread) may cost the
    # answer: then there is none.
    my @answers = map { "$_->{name}: " . ($_->{status} // 'none') } @streams;
    my @odd = grep { !/: (?:431|none)\z/ } @answers;
    is_deeply(\@odd, [], '... each after a 431 answer, or none');
    note(join "\n", sort { $a cmp $b } keys %{ { map { $_ => 1 } @answers } });
    peak_ok('header floods');
    $_->close for @streams;
    survived_ok('header floods');
};

attack 'slowloris: handshakes trickling in one byte at a time' => sub {
    my $request = "GET / HTTP/1.1\r\nHost: 127.0.0.1:$PORT\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    # Three kinds, 160 each: the request trickled from its first byte;
    # the request line at once, then headers trickled; everything but the
    # last CRLF at once, then nothing.  One byte per 50 ms puts the end of
    # the request about 7 s away, far beyond the 1 s handshake deadline.
    # Each holds a partial request head on the server: even with a buffer
    # as large as the largest head accepted (16 KiB) for each, the 480
    # would take 7.5 MiB, within the memory bound.
    peak_reset();
    my @kinds = ([ 'from the start', 0 ], [ 'headers', 16 ], [ 'all but the end', length($request) - 2 ]);
    my @slow;
    for my $kind (@kinds) {
        for (1 .. 160) {
            my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT, Proto => 'tcp')
                or die "connect: $!";
            $sock->blocking(0);
            syswrite($sock, substr($request, 0, $kind->[1])) if $kind->[1];
            my $c = { sock => $sock, sent => $kind->[1], trickle => $kind->[1] < length($request) - 2, got => '' };
            $c->{rw} = EV::io($sock, EV::READ, sub {
                my $n = sysread($sock, $c->{got}, 4096, length $c->{got});
                return if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
                return if $n;
                delete $c->{rw};
                $c->{eof} = 1;
            });
            push @slow, $c;
        }
    }
    my $trickle = EV::timer(0.05, 0.05, sub {
        for my $c (grep { $_->{trickle} && !$_->{eof} } @slow) {
            syswrite($c->{sock}, substr($request, $c->{sent}++, 1)) if $c->{sent} < length $request;
        }
    });
    # The normal clients are served while the slow ones hang on.
    serves_ok('during slowloris');
    ok(run_until(sub { !grep { !$_->{eof} } @slow }, 10), 'every slow connection was dropped');
    peak_ok('slowloris');
    is(scalar(grep { $_->{got} =~ /^HTTP\/1\.1 101/ } @slow), 0, '... none was upgraded');
    my $furthest = (sort { $b <=> $a } map { $_->{sent} } @slow)[0];
    cmp_ok($furthest, '<', length $request, '... none had sent its whole request');
    undef $trickle;
    close $_->{sock} for @slow;
    survived_ok('slowloris');
};

attack '1000 connections opened at once and dropped at once' => sub {
    my $fd_limit = POSIX::sysconf(POSIX::_SC_OPEN_MAX()) // 0;
    plan skip_all => "the descriptor limit ($fd_limit) leaves no room for 1000 connections and the server's"
        if $fd_limit < 1100;
    peak_reset();
    # 500 upgrade; 500 stop before: 250 send nothing, 250 half a request.
    my @upgraded = map { RawPeer->client(port => $PORT) } 1 .. 500;
    my @waiting  = map {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT, Proto => 'tcp')
            or die "connect: $!";
        syswrite($sock, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr") if $_ % 2;
        $sock;
    } 1 .. 500;
    ok(all_peers(sub { $_[0]{open} }, \@upgraded, 20), '500 connections upgraded');
    my $fds = server_fds();
    cmp_ok($fds, '>=', $BASE_FDS + 500, "the server holds them ($fds descriptors)");
    serves_ok('with 1000 connections open');
    $_->close_tcp for @upgraded;
    close $_ for @waiting;
    peak_ok('1000 connections');
    survived_ok('1000 connections');
};

is($steady{close}, undef, 'the steady client was never closed');
is($steady{error}, undef, '... and saw no error');
$steady->close;
run_until(sub { $steady{close} }, 5);
ok(defined stop_daemon($server), 'the server stops on SIGTERM');
is($server->{status}, 0, '... and exits cleanly') or show_server_log();

done_testing;

# ---- generators -------------------------------------------------------------------

# A produce sub for Stream: $first, then $more again and again ($more
# undef: $first only), until $limit bytes were produced.
sub producer {
    my ($limit, $first, $more) = @_;
    my ($sent, $started) = (0, 0);
    return sub {
        return undef if $sent >= $limit || ($started && !defined $more);
        my $bytes = $started++ ? $more : $first;
        $sent += length $bytes;
        return $bytes;
    };
}

# $length random bytes from seed $seed.
sub noise {
    my ($seed, $length) = @_;
    srand($seed);
    return random_bytes($length);
}

sub random_bytes {
    my ($length) = @_;
    return pack('N*', map { int rand 2**32 } 1 .. ($length + 3) >> 2) & ("\xff" x $length);
}

# $count random masked frames from seed $seed: any opcode, random FIN and
# (rarely) RSV bits, lengths mostly short, sometimes 16- or 64-bit ones;
# payloads random, or valid text for text frames.
sub random_frames {
    my ($seed, $count) = @_;
    srand($seed);
    my $bytes = '';
    for (1 .. $count) {
        my $op  = int rand 16;
        my $len = rand() < 0.9 ? int rand 130 : int rand 70000;
        my $payload = $op == 1 && rand() < 0.7
            ? join('', map { chr(32 + int rand 95) } 1 .. $len)
            : random_bytes($len);
        my $b0 = (rand() < 0.7 ? 0x80 : 0) | (rand() < 0.05 ? (1 + int rand 7) << 4 : 0) | $op;
        my $claimed = rand() < 0.05 ? int rand 2**33 : $len;
        $bytes .= pack('C', $b0)
            . ($claimed < 126 ? pack('C', 0x80 | $claimed)
             : $claimed < 65536 ? pack('Cn', 0xFE, $claimed) : pack('CQ>', 0xFF, $claimed))
            . "\0\0\0\0" . $payload;
    }
    return $bytes;
}

# ---- Stream: a raw client for attacks too big to build in memory ------------
#
# Writes what produce->() returns, chunk after chunk (undef: the end), as
# fast as the server takes it, and reads what comes back: an HTTP head
# (status), then unmasked server frames, given to on_frame->($opcode,
# $payload) and the close code kept in close_code.  Options: port, name,
# produce, on_frame, upgrade (send an upgrade request and produce only
# after the 101), pause (stop reading once upgraded, until resume).
# State: sent (bytes written), done (produce returned undef and all is
# written), eof (the server closed or reset), status, close_code.
package Stream;

use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Scalar::Util qw(weaken);

sub new {
    my ($class, %o) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $o{port}, Proto => 'tcp', Blocking => 0)
        or die "Stream: connect: $!";
    my $self = bless { %o, sock => $sock, wbuf => '', rbuf => '', sent => 0, progress => EV::now }, $class;
    $self->{wbuf} = "GET / HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" if $o{upgrade};
    $self->{producing} = !$o{upgrade};
    weaken(my $weak = $self);
    $self->{ww} = EV::io($sock, EV::WRITE, sub { $weak->_write });
    $self->{rw} = EV::io($sock, EV::READ,  sub { $weak->_read });
    return $self;
}

# Writes stopped making progress for a while although bytes are waiting.
sub stalled {
    my ($self) = @_;
    return $self->{ww} && $self->{ww}->is_active && EV::now - $self->{progress} > 0.5;
}

sub _write {
    my ($self) = @_;
    while (1) {
        if (length $self->{wbuf} < 65536 && $self->{producing} && !$self->{produced_all}) {
            my $more = $self->{produce}->();
            defined $more ? ($self->{wbuf} .= $more) : ($self->{produced_all} = 1);
            next;
        }
        last unless length $self->{wbuf};
        my $n = syswrite($self->{sock}, $self->{wbuf});
        if (!defined $n) {
            next if $! == EINTR;
            return if $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{write_error} = "$!";
            $self->{wbuf} = '';
            last;
        }
        substr($self->{wbuf}, 0, $n, '');
        $self->{sent} += $n;
        $self->{progress} = EV::now;
    }
    # Nothing to write until the 101 comes, or nothing more at all.
    $self->{ww}->stop;
    $self->{done} = 1 if $self->{produced_all} || $self->{write_error};
}

sub _read {
    my ($self) = @_;
    my $n = sysread($self->{sock}, $self->{rbuf}, 1 << 20, length $self->{rbuf});
    if (!$n) {
        return if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
        $self->{eof} = 1;
        $self->{rw}->stop;
        $self->{ww}->stop;
        return;
    }
    if (!defined $self->{status}) {
        my $end = index($self->{rbuf}, "\r\n\r\n");
        if ($end < 0) {
            $self->{rbuf} = '' if length $self->{rbuf} > 65536;
            return;
        }
        my $head = substr($self->{rbuf}, 0, $end + 4, '');
        $self->{head} = $head;
        ($self->{status}) = $head =~ m{^HTTP/1\.1 (\d{3})};
        $self->{status} //= 'garbage';
        return $self->{rbuf} = '' unless $self->{status} eq '101' && $self->{upgrade};
        $self->{producing} = 1;
        $self->{ww}->start;
        $self->{rw}->stop if $self->{pause};
    }
    $self->_frames;
}

sub _frames {
    my ($self) = @_;
    return $self->{rbuf} = '' unless $self->{status} eq '101';
    my $pos = 0;
    my $len = length $self->{rbuf};
    while ($len - $pos >= 2) {
        my ($b0, $b1) = unpack "\@$pos CC", $self->{rbuf};
        my ($size, $head) = ($b1 & 0x7f, 2);
        if ($size == 126) { last if $len - $pos < 4;  $size = unpack "\@$pos x2 n",  $self->{rbuf}; $head = 4 }
        if ($size == 127) { last if $len - $pos < 10; $size = unpack "\@$pos x2 Q>", $self->{rbuf}; $head = 10 }
        last if $len - $pos < $head + $size;
        my $payload = substr($self->{rbuf}, $pos + $head, $size);
        $pos += $head + $size;
        my $op = $b0 & 0xf;
        $self->{close_code} //= length $payload >= 2 ? unpack('n', $payload) : 1005 if $op == 8;
        $self->{on_frame}->($op, $payload) if $self->{on_frame};
    }
    substr($self->{rbuf}, 0, $pos, '');
}

sub resume { $_[0]{rw}->start unless $_[0]{eof} }

# Drop the connection with a reset (RST).
sub reset {
    my ($self) = @_;
    setsockopt($self->{sock}, Socket::SOL_SOCKET(), Socket::SO_LINGER(), pack('ii', 1, 0)) if $self->{sock};
    $self->close;
}

sub close {
    my ($self) = @_;
    delete @$self{qw(ww rw)};
    CORE::close(delete $self->{sock}) if $self->{sock};
}
