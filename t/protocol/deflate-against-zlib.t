# Proves: permessage-deflate (RFC 7692) against raw zlib peers: offers and
# answers, RSV1, context takeover, window sizes, corrupt data, bombs.
# POD: EV::Websockets, "connect" and "listen" (compression, context_takeover),
# "Limits and their defaults", "on_error messages".
#
# permessage-deflate (RFC 7692) against raw peers that compress and inflate
# with zlib (Compress::Raw::Zlib): the client's offer and its checks of the
# server's answer, the server's choice among offers, RSV1 rules, context
# takeover, window sizes, corrupt data and inflation bounds.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use Compress::Raw::Zlib qw(Z_OK Z_STREAM_END Z_SYNC_FLUSH Z_BUF_ERROR);
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
my $EXT   = 'Sec-WebSocket-Extensions';

# A raw deflate stream: compress(bytes) gives one message's payload, the
# sync flush's empty block removed (RFC 7692 7.2.1).  One object keeps its
# context across messages.
sub deflater {
    my ($bits) = @_;
    my ($d, $status) = Compress::Raw::Zlib::Deflate->new(
        -WindowBits => -($bits // 15), -AppendOutput => 1);
    die "deflateInit: $status" unless $status == Z_OK;
    return sub {
        my ($data) = @_;
        my $out = '';
        $d->deflate($data, $out) == Z_OK or die 'deflate failed';
        $d->flush($out, Z_SYNC_FLUSH) == Z_OK or die 'flush failed';
        $out =~ s/\x00\x00\xff\xff\z// or die 'no sync flush trailer';
        return $out;
    };
}

# The mirror image: inflate(payload) gives the message, or dies.
sub inflater {
    my ($bits) = @_;
    my ($i, $status) = Compress::Raw::Zlib::Inflate->new(
        -WindowBits => -($bits // 15), -AppendOutput => 1, -Bufsize => 65536);
    die "inflateInit: $status" unless $status == Z_OK;
    return sub {
        my $in  = $_[0] . "\x00\x00\xff\xff";
        my $out = '';
        my $st  = $i->inflate($in, $out);
        die "inflate: $st" unless $st == Z_OK || $st == Z_STREAM_END || $st == Z_BUF_ERROR;
        return $out;
    };
}

my $text = join ' ', map { qq({"seq":$_,"price":"101.25","side":"buy"}) } 1 .. 2000;    # ~78 KB
# Random letters: compress alone to about 60%, but to almost nothing with
# a copy in the window.
my $letters = join '', map { chr(97 + rand 26) } 1 .. 8000;

# ---- our client, raw server -----------------------------------------------

# Our client against a raw server that answers the upgrade with $answer as
# its extension header (none when undef).  Returns ($conn, $peer, $ev) once
# on_connect or on_error fired.
sub client_with {
    my ($answer, %opt) = @_;
    my ($conn, $peer, $ev) = connect_raw(
        peer => { extra_headers => [ defined $answer ? ($EXT => $answer) : () ] }, %opt);
    run_until(sub { $ev->{connect} || $ev->{error} });
    return ($conn, $peer, $ev);
}

subtest 'the client offers permessage-deflate, and compression => 0 does not' => sub {
    my (undef, $peer, $ev) = client_with(undef);
    is($peer->{headers}{ lc $EXT }, $OFFER, 'the offer, exactly');
    ok($ev->{connect}, 'a server that declines it is fine');
    (undef, $peer, $ev) = client_with(undef, compression => 0);
    ok(!exists $peer->{headers}{ lc $EXT }, 'compression => 0: no offer');
    ok($ev->{connect}, '... and connected');
};

subtest 'a 78 KB message deflated into one RSV1 frame is one on_message' => sub {
    my ($conn, $peer, $ev) = client_with('permessage-deflate');
    is($ev->{connect}[0][0]{$EXT}, 'permessage-deflate', 'on_connect sees the answer');
    my $payload = deflater()->($text);
    cmp_ok(length $payload, '<', length($text) / 10, 'the frame is well compressed');
    $peer->send_frame(opcode => 1, rsv => 4, payload => $payload);
    run_until(sub { $ev->{message} });
    run_for(0.1);
    is(scalar @{ $ev->{message} || [] }, 1, 'exactly one on_message');
    ok($ev->{message}[0][0] eq $text, 'with the whole text') or diag length $ev->{message}[0][0];
    ok(!$ev->{message}[0][1], 'as text');
    ok(utf8::is_utf8($ev->{message}[0][0]) || $ev->{message}[0][0] !~ /[^\x00-\x7f]/, 'decoded');
};

subtest 'a compressed message in fragments, and context kept across messages' => sub {
    my ($conn, $peer, $ev) = client_with('permessage-deflate');
    my $deflate = deflater();    # one stream: the server keeps context
    my $first   = $deflate->($text);
    my $second  = $deflate->($letters);
    my $third_m = $deflate->($letters);
    cmp_ok(length $third_m, '<', 100, 'the third refers to the second');
    my $third = length($first) / 3;
    $peer->send_raw(join '',
        $peer->frame(opcode => 1, rsv => 4, fin => 0, payload => substr($first, 0, $third)),
        $peer->frame(opcode => 9, payload => 'between'),
        $peer->frame(opcode => 0, fin => 0, payload => substr($first, $third, $third)),
        $peer->frame(opcode => 0, payload => substr($first, 2 * $third)));
    $peer->send_frame(opcode => 1, rsv => 4, payload => $second);
    $peer->send_frame(opcode => 2, payload => "\x00\xffplain");
    $peer->send_frame(opcode => 1, rsv => 4, payload => $third_m);
    run_until(sub { @{ $ev->{message} || [] } >= 4 });
    is(scalar @{ $ev->{message} }, 4, 'four messages');
    ok($ev->{message}[0][0] eq $text, 'fragmented: whole');
    ok($ev->{message}[1][0] eq $letters, 'the second');
    is_deeply([ @{ $ev->{message}[2] }[ 0, 1 ] ], [ "\x00\xffplain", 1 ], 'an uncompressed message in between');
    ok($ev->{message}[3][0] eq $letters, 'the third, from context kept across messages');

    # Some senders (Mojolicious 9.31) compress an empty message to nothing
    # rather than to one 0x00 byte: an empty message all the same, and the
    # kept context stays intact.
    $peer->send_frame(opcode => 2, rsv => 4, payload => '');
    $peer->send_frame(opcode => 2, rsv => 4, payload => '');
    $peer->send_frame(opcode => 1, rsv => 4, payload => $deflate->($letters));
    run_until(sub { @{ $ev->{message} } >= 7 });
    is_deeply([ map { length $_->[0] } @{ $ev->{message} }[ 4, 5 ] ], [ 0, 0 ], 'empty compressed payloads: empty messages');
    ok(($ev->{message}[6][0] // '') eq $letters, '... and the context is intact');
    is_deeply([ map { $_->{payload} } $peer->frames_of(10) ], ['between'], 'the ping was answered');
};

subtest 'what the client sends' => sub {
    my ($conn, $peer, $ev) = client_with('permessage-deflate; server_no_context_takeover');
    $conn->send($text);
    $conn->send($text);
    $conn->send('short');
    $conn->send_binary('');
    $conn->send_ping('p' x 100);
    $conn->send_fragment('part one, ' x 10, 0, 0);
    $conn->send_fragment('', 0, 0);
    $conn->send_fragment('part two', 0, 1);
    run_until(sub { $peer->frames_of(0, 1, 2) >= 7 && $peer->frames_of(9) });
    my @data = $peer->frames_of(0, 1, 2);
    is_deeply([ map { $_->{rsv} } @data ], [ 4, 4, 0, 0, 4, 0, 0 ],
        'RSV1 on compressed messages and on the first fragment only');
    is(($peer->frames_of(9))[0]{rsv}, 0, 'control frames are never compressed');
    # No context takeover on the client's side: each inflates on its own.
    is(inflater()->($data[0]{payload}), $text, 'first message');
    is(inflater()->($data[1]{payload}), $text, 'second, without the first');
    is($data[1]{payload}, $data[0]{payload}, 'the same bytes both times');
    my $frags = inflater()->(join '', map { $_->{payload} } @data[ 4 .. 6 ]);
    is($frags, 'part one, ' x 10 . 'part two', 'fragments: one deflate stream');
    is($data[2]{payload}, 'short', 'under 32 bytes: sent as is');
    cmp_ok($conn->send_queue_size, '==', 0, 'all written');
};

subtest 'window sizes the server asks for' => sub {
    for my $bits (8, 9, 12, 15) {
        my ($conn, $peer, $ev) = client_with(
            "permessage-deflate; client_max_window_bits=$bits; server_max_window_bits=" . ($bits == 8 ? 9 : $bits));
        ok($ev->{connect}, "$bits bits: connected");
        $conn->send($text);
        run_until(sub { $peer->frames_of(1) });
        my ($frame) = $peer->frames_of(1);
        is($frame->{rsv}, 4, "$bits bits: compressed");
        ok(eval { inflater($bits)->($frame->{payload}) } eq $text,
            "$bits bits: inflates within a $bits-bit window") or diag $@;
        cmp_ok(length $frame->{payload}, '<', length($text) * 2 / 3, "$bits bits: smaller");
        $peer->send_frame(opcode => 1, rsv => 4, payload => deflater($bits == 8 ? 9 : $bits)->($text));
        run_until(sub { $ev->{message} });
        ok(($ev->{message}[0][0] // '') eq $text, "$bits bits: the server's message inflates");
    }
};

subtest 'answers the client refuses' => sub {
    my @cases = (
        [ 'x-webkit-deflate-frame', 'server accepted an extension that was not offered' ],
        [ 'permessage-deflate, permessage-deflate', 'server accepted permessage-deflate twice' ],
        [ 'permessage-deflate; server_max_window_bits=7',
            "bad permessage-deflate answer: 'server_max_window_bits=7' is not 8 to 15" ],
        [ 'permessage-deflate; client_max_window_bits',
            "bad permessage-deflate answer: 'client_max_window_bits' needs a value" ],
        [ 'permessage-deflate; server_no_context_takeover=1',
            "bad permessage-deflate answer: 'server_no_context_takeover' takes no value" ],
        [ 'permessage-deflate; mystery', "bad permessage-deflate answer: unknown parameter 'mystery'" ],
    );
    for my $case (@cases) {
        my ($answer, $why) = @$case;
        my ($conn, $peer, $ev) = client_with($answer);
        is_deeply($ev->{error}, [ ["handshake failed: $why"] ], "'$answer': $why");
        ok(!$ev->{connect} && !$ev->{close}, "'$answer': no on_connect, no on_close");
    }
    my ($conn, $peer, $ev) = client_with('permessage-deflate', compression => 0);
    is_deeply($ev->{error}, [ ['handshake failed: server accepted an extension that was not offered'] ],
        'an answer to an offer not made');
};

# Our side fails with $code after the frames in @frames (RawPeer::frame
# arguments); the raw peer sees the same code.
sub violation_case {
    my ($label, $answer, $code, $error, @frames) = @_;
    my ($conn, $peer, $ev) = client_with($answer, max_message_size => 1 << 20);
    $peer->send_raw(join '', map { $peer->frame(@$_) } @frames);
    run_until(sub { $ev->{close} && $peer->{eof} }, 10);
    like($ev->{error}[0][0] // '', $error, "$label: on_error");
    is($ev->{close}[0][0], $code, "$label: on_close $code");
    is($peer->{close_code}, $code, "$label: the peer got $code");
    return $ev;
}

subtest 'RSV1 rules, corrupt data, and inflation bounds (client side)' => sub {
    my $pmd = 'permessage-deflate';
    violation_case('RSV1 without permessage-deflate', undef, 1002, qr/^protocol error: reserved bits set/,
        [ opcode => 1, rsv => 4, payload => deflater()->('hello') ]);
    violation_case('RSV1 on a ping', $pmd, 1002, qr/reserved bits/, [ opcode => 9, rsv => 4 ]);
    violation_case('RSV1 on a continuation', $pmd, 1002, qr/reserved bits/,
        [ opcode => 1, fin => 0, payload => 'a' ], [ opcode => 0, rsv => 4, payload => 'b' ]);
    violation_case('RSV2 with permessage-deflate', $pmd, 1002, qr/reserved bits/,
        [ opcode => 1, rsv => 6, payload => 'x' ]);
    violation_case('corrupt deflate data', $pmd, 1007, qr/^invalid compressed message: /,
        [ opcode => 1, rsv => 4, payload => "\xff\xff\xff\xff" ]);
    violation_case('inflates to invalid UTF-8', $pmd, 1007, qr/^invalid UTF-8 in text message/,
        [ opcode => 1, rsv => 4, payload => deflater()->("ok \xff") ]);

    # A deflate bomb: 100 MiB of zeros in about 100 KB, against a 1 MiB limit.
    my $bomb = deflater()->("\0" x (100 << 20));
    cmp_ok(length $bomb, '<', 120_000, 'the bomb is small (' . length($bomb) . ' bytes)');
    my $rss_before = rss_kib();
    my $t0 = EV::time;
    violation_case('a deflate bomb', $pmd, 1009, qr/^message exceeds max_message_size\z/,
        [ opcode => 2, rsv => 4, payload => $bomb ]);
    my $grew = rss_kib() - $rss_before;
    cmp_ok($grew, '<', 16 * 1024, "RSS grew by $grew KiB only: never inflated past the limit");
    diag sprintf 'deflate bomb refused in %.1f ms', 1000 * (EV::time - $t0);
    my $chunk = length($bomb) / 4;
    violation_case('a deflate bomb in fragments', $pmd, 1009, qr/max_message_size/,
        [ opcode => 2, rsv => 4, fin => 0, payload => substr($bomb, 0, $chunk) ],
        (map { [ opcode => 0, fin => 0, payload => substr($bomb, $_ * $chunk, $chunk) ] } 1 .. 2),
        [ opcode => 0, payload => substr($bomb, 3 * $chunk) ]);

    # Exactly the limit inflates.
    my ($conn, $peer, $ev) = client_with($pmd, max_message_size => 1 << 20);
    $peer->send_frame(opcode => 2, rsv => 4, payload => deflater()->("\0" x (1 << 20)));
    run_until(sub { $ev->{message} || $ev->{error} });
    is(length($ev->{message}[0][0] // ''), 1 << 20, 'exactly max_message_size inflates');
};

# ---- raw client, our server ----------------------------------------------

# A raw client offering $offer to a listener with %listen options; returns
# ($peer, $ev) once the upgrade is answered.
sub server_with {
    my ($offer, %listen) = @_;
    my ($peer, $ev) = listen_raw(
        on_message => sub {
            my ($c, $data, $binary) = @_;
            $binary ? $c->send_binary($data) : $c->send($data);
        },
        %listen,
        peer => { extra_headers => [ defined $offer ? ($EXT => $offer) : () ] },
    );
    run_until(sub { $peer->{open} || $peer->{eof} });
    return ($peer, $ev);
}

subtest 'the server answers offers only with compression => 1' => sub {
    my ($peer, $ev) = server_with($OFFER);
    ok($peer->{open}, 'upgraded');
    ok(!exists $peer->{headers}{ lc $EXT }, 'without compression => 1: no extension');
    $peer->send_frame(opcode => 1, rsv => 4, payload => deflater()->('hello'));
    run_until(sub { $peer->{eof} });
    is($peer->{close_code}, 1002, 'and RSV1 is a protocol error');

    my $lean = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
    for my $offer ($OFFER, 'permessage-deflate', 'permessage-deflate; server_max_window_bits=10') {
        ($peer, $ev) = server_with($offer, compression => 1);
        my $bits = $offer =~ /(server_max_window_bits=\d+)/ ? "; $1" : '';
        is($peer->{headers}{ lc $EXT }, "$lean$bits", "offer '$offer': no context takeover either way");
    }

    # context_takeover => 1: the client's parameters decide.
    my @cases = (
        [ $OFFER, 'permessage-deflate; client_no_context_takeover' ],
        [ 'permessage-deflate', 'permessage-deflate' ],
        [ 'permessage-deflate; client_max_window_bits=10', 'permessage-deflate' ],
        [ 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10',
            'permessage-deflate; server_no_context_takeover; server_max_window_bits=10' ],
        [ 'permessage-deflate; server_max_window_bits="8"', 'permessage-deflate; server_max_window_bits=8' ],
        [ 'permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover',
            'permessage-deflate; client_no_context_takeover' ],
        [ 'x-webkit-deflate-frame', undef ],
        [ 'permessage-deflate; server_max_window_bits', undef ],
    );
    for my $case (@cases) {
        my ($offer, $answer) = @$case;
        ($peer, $ev) = server_with($offer, compression => 1, context_takeover => 1);
        is($peer->{headers}{ lc $EXT }, $answer, "context_takeover => 1, offer '$offer'");
        is($ev->{conn} && $ev->{connect}[0][0]{$EXT}, $offer, '... on_connect sees the offer')
            if $ev->{connect};
    }
};

# Two copies of $text from the server, inflated as the raw client sees fit.
sub server_sends_twice {
    my ($offer, %listen) = @_;
    my ($peer, $ev) = server_with($offer, compression => 1, context_takeover => 1, %listen);
    $peer->send_frame(opcode => 1, payload => $letters);    # uncompressed: echoed twice
    $peer->send_frame(opcode => 1, payload => $letters);
    run_until(sub { $peer->frames_of(1) >= 2 });
    return ($peer, $ev, $peer->frames_of(1));
}

subtest 'what the server sends: context takeover and window sizes' => sub {
    my ($peer, $ev, @f) = server_sends_twice('permessage-deflate');
    is_deeply([ map { $_->{rsv} } @f ], [ 4, 4 ], 'both compressed');
    cmp_ok(length $f[1]{payload}, '<', length($f[0]{payload}) / 4, 'the second uses the first as context');
    my $inflate = inflater();
    ok($inflate->($f[0]{payload}) eq $letters && $inflate->($f[1]{payload}) eq $letters,
        'one inflater with context gets both');

    ($peer, $ev, @f) = server_sends_twice('permessage-deflate; server_no_context_takeover');
    is($f[1]{payload}, $f[0]{payload}, 'server_no_context_takeover: the same bytes twice');
    ok(inflater()->($f[1]{payload}) eq $letters, '... each inflates alone');
    ($peer, $ev, @f) = server_sends_twice('permessage-deflate', context_takeover => 0);
    is($f[1]{payload}, $f[0]{payload}, 'without context_takeover => 1: the same bytes twice');

    for my $bits (8, 10, 15) {
        ($peer, $ev, @f) = server_sends_twice("permessage-deflate; server_max_window_bits=$bits");
        $inflate = inflater($bits);
        ok(eval { $inflate->($f[0]{payload}) eq $letters && $inflate->($f[1]{payload}) eq $letters },
            "server_max_window_bits=$bits: inflates within the window") or diag $@;
    }
};

subtest 'the server inflates' => sub {
    my ($peer, $ev) = server_with($OFFER, compression => 1);
    my $deflate = deflater();
    my $payload = $deflate->($text);
    my $half    = length($payload) / 2;
    $peer->send_raw(join '',
        $peer->frame(opcode => 1, rsv => 4, fin => 0, payload => substr($payload, 0, $half)),
        $peer->frame(opcode => 0, payload => substr($payload, $half)),
        $peer->frame(opcode => 2, rsv => 4, payload => deflater()->("\x00\x01\x02" x 100)),
        $peer->frame(opcode => 1, rsv => 4, payload => "\x00"));    # an empty message
    run_until(sub { @{ $ev->{message} || [] } >= 3 });
    ok(($ev->{message}[0][0] // '') eq $text, 'fragmented, masked, compressed: whole');
    is_deeply([ @{ $ev->{message}[1] }[ 0, 1 ] ], [ "\x00\x01\x02" x 100, 1 ], 'binary');
    is_deeply([ @{ $ev->{message}[2] }[ 0, 1 ] ], [ '', 0 ], 'the empty message (a single 0x00 byte)');

    ($peer, $ev) = server_with($OFFER, compression => 1, max_message_size => 1 << 20);
    $peer->send_frame(opcode => 2, rsv => 4, payload => deflater()->("\0" x (100 << 20)));
    run_until(sub { $peer->{eof} }, 10);
    is($peer->{close_code}, 1009, 'a deflate bomb: 1009');
    is_deeply($ev->{error}, [ ['message exceeds max_message_size'] ], '... with on_error');
};

sub rss_kib {
    open my $fh, '<', '/proc/self/status' or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

done_testing;
