# Proves: the protocol and permessage-deflate interoperate with Mojolicious on
# the same EV loop, both ways.
# POD: EV::Websockets, "DESCRIPTION", "listen" (context_takeover); README.pod,
# "TESTS".
#
# Interoperability with Mojolicious (an independent WebSocket client and
# server), in this process and on the same EV loop: Mojolicious runs on
# Mojo::Reactor::EV and everything is driven by EV::run (run_until).
#
#   our client -> Mojo server (a Mojolicious app run by Mojo::Server::Daemon)
#   Mojo client (Mojo::UserAgent) -> our server
#
# Each pairing follows the script of t/lib/PerlPeers.pm: text, UTF-8,
# binary, empty and 1 MiB messages echoed with their type, fragmented
# messages both ways, pings both ways, closes with a code and a reason from
# either side; then subprotocols and permessage-deflate, with evidence from
# the Mojo side (RSV1 bits of the frames it received, bytes on the wire)
# that messages really went compressed.  Last, two defects of Mojo's
# permessage-deflate, shown with the frames it puts on the wire: empty
# compressed messages with an empty payload (which our module accepts),
# and context takeover despite client_no_context_takeover (which our
# server needs context_takeover => 1 for).
#
# Needs the Debian package libmojolicious-perl (Mojolicious 9.31 there).
use strict;
use warnings;
# Before Mojo::IOLoop is loaded, which picks its reactor once.
BEGIN { $ENV{MOJO_REACTOR} = 'Mojo::Reactor::EV' }
use Test::More;
use lib 't/lib';
use PerlPeers;
BEGIN {
    need_modules('libmojolicious-perl',
        qw(Mojolicious Mojo::Reactor::EV Mojo::Server::Daemon Mojo::UserAgent Mojo::WebSocket));
}
use TestWS;
use RawPeer;
use EV;
use EV::Websockets;
use Mojo::IOLoop;
use Mojo::WebSocket qw(WS_TEXT WS_BINARY WS_CONTINUATION WS_PING WS_PONG);

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# Mojo must share our loop, or nothing below could work in one process.
isa_ok(Mojo::IOLoop->singleton->reactor, 'Mojo::Reactor::EV', 'the Mojo reactor');

# Mojo's default limit (256 KiB) is below our 1 MiB messages.
my $MOJO_MAX = 16 * $MiB;

# ---- Mojo's side: shared by its server and its client ----

# Mojo sends @$pieces as one fragmented message of raw frames
# [fin, rsv1, rsv2, rsv3, opcode, payload] (uncompressed: RSV1 is 0).
sub mojo_fragments {
    my ($tx, $pieces, $binary) = @_;
    for my $k (0 .. $#$pieces) {
        my $op = $k ? WS_CONTINUATION : $binary ? WS_BINARY : WS_TEXT;
        $tx->send([ $k == $#$pieces ? 1 : 0, 0, 0, 0, $op, $pieces->[$k] ]);
    }
}

# Record, for Mojo transaction $tx in $rec: messages (raw bytes, not
# decoded), pongs and the RSV1 bits of the data frames it receives (rsv1:
# how many had it set, frames: how many), bytes read and written on its
# socket (wire_in, wire_out), and finish's code and reason.  Text messages
# that are commands (see PerlPeers) are not recorded.
sub mojo_record {
    my ($tx, $rec) = @_;
    @$rec{qw(frames rsv1 wire_in wire_out)} = (0, 0, 0, 0);
    $tx->max_websocket_size($MOJO_MAX);
    $tx->on(frame => sub {
        my (undef, $f) = @_;
        push @{ $rec->{pongs} }, $f->[5] if $f->[4] == WS_PONG;
        return unless $f->[4] == WS_TEXT || $f->[4] == WS_BINARY;
        $rec->{frames}++;
        $rec->{rsv1}++ if $f->[1];
    });
    $tx->on(text   => sub { push @{ $rec->{got} }, [ $_[1], 0 ] unless $_[1] =~ /\Acmd:/ });
    $tx->on(binary => sub { push @{ $rec->{got} }, [ $_[1], 1 ] });
    $tx->on(finish => sub { $rec->{close} = [ $_[1], $_[2] ] });
    my $stream = Mojo::IOLoop->stream($tx->connection);
    $stream->on(read  => sub { $rec->{wire_in}  += length $_[1] });
    $stream->on(write => sub { $rec->{wire_out} += length $_[1] });
    return $rec;
}

# ---- The Mojo server ----

# A Mojolicious app with one WebSocket route, /plain or /deflate (the latter
# accepts permessage-deflate), that echoes with the same type, runs the
# commands of PerlPeers, and speaks the subprotocols chat.v2 and chat.v1 (in
# that order of preference).  Each connection's record goes to @MOJO_CONNS;
# its compressed flag tells whether permessage-deflate was negotiated.
my @MOJO_CONNS;
my $app = Mojolicious->new;
$app->log->level('fatal');
$app->routes->websocket('/:mode' => [ mode => [qw(plain deflate)] ])->to(cb => sub {
    my ($c) = @_;
    my $tx = $c->tx;
    $tx->with_compression if $c->param('mode') eq 'deflate';
    my $rec = new_record(connected => 1, protocol => $tx->with_protocols('chat.v2', 'chat.v1'),
        compressed => $tx->compressed ? 1 : 0);
    push @MOJO_CONNS, $rec;
    mojo_record($tx, $rec);
    # Subscribing through the controller is what makes Mojo answer 101.
    $c->on(text => sub {
        my (undef, $data) = @_;
        server_command($data,
            fragments => sub { mojo_fragments($tx, $_->[1], $_->[2]) for @FRAGMENTED },
            ping      => sub { $tx->send([ 1, 0, 0, 0, WS_PING, $_[0] ]) },
            close     => sub { $c->finish(@_) },
        ) or $tx->send({ text => $data });
    });
    $c->on(binary => sub { $tx->send({ binary => $_[1] }) });
});
my $daemon = Mojo::Server::Daemon->new(app => $app, listen => ['http://127.0.0.1:0'], silent => 1)->start;
my ($MOJO_PORT) = @{ $daemon->ports };
ok($MOJO_PORT, "the Mojo server listens on port $MOJO_PORT");

# ---- Our client ----

# Our client connected to $url with %opt, as a PerlPeers adapter; its record
# also holds headers (on_connect's response headers).
sub our_client {
    my ($url, %opt) = @_;
    my $rec = new_record;
    my $ctx = EV::Websockets::Context->new;
    my $conn = $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub { @$rec{qw(connected headers protocol)} = (1, $_[1], $_[0]->get_protocol) },
        on_message => sub { push @{ $rec->{got} }, [ $_[1], $_[2] ] },
        on_pong    => sub { push @{ $rec->{pongs} }, $_[1] },
        on_error   => sub { push @{ $rec->{errors} }, $_[1] },
        on_close   => sub { $rec->{close} = [ $_[1], $_[2] ] },
    );
    return {
        rec       => $rec,
        ctx       => $ctx,
        send      => sub { $_[1] ? $conn->send_binary($_[0]) : $conn->send($_[0]) },
        fragments => sub {
            my ($pieces, $binary) = @_;
            $conn->send_fragment($pieces->[$_], $binary, $_ == $#$pieces) for 0 .. $#$pieces;
        },
        ping      => sub { $conn->send_ping($_[0]) },
        close     => sub { $conn->close(@_) },
    };
}

# ---- The Mojo client ----

# A Mojo::UserAgent WebSocket to $url with request headers %$headers,
# offering subprotocols @$protocols, as a PerlPeers adapter.  Its record
# also holds tx (the transaction), compressed (permessage-deflate
# negotiated), extensions (the response's Sec-WebSocket-Extensions), and
# what mojo_record adds.
sub mojo_client {
    my ($url, $headers, $protocols) = @_;
    my $rec = new_record;
    my $ua  = Mojo::UserAgent->new(inactivity_timeout => 20);
    $ua->websocket($url => $headers => $protocols => sub {
        my (undef, $tx) = @_;
        if (!$tx->is_websocket) {
            push @{ $rec->{errors} }, 'handshake failed: ' . (($tx->res->error // {})->{message} // '?');
            return;
        }
        mojo_record($tx, $rec);
        @$rec{qw(connected tx protocol compressed extensions)} = (1, $tx, $tx->protocol,
            $tx->compressed ? 1 : 0, $tx->res->headers->sec_websocket_extensions);
    });
    my $tx = sub { $rec->{tx} or die 'the Mojo client is not connected' };
    return {
        rec       => $rec,
        ua        => $ua,
        send      => sub { $tx->()->send({ ($_[1] ? 'binary' : 'text') => $_[0] }) },
        fragments => sub { mojo_fragments($tx->(), @_) },
        ping      => sub { $tx->()->send([ 1, 0, 0, 0, WS_PING, $_[0] ]) },
        close     => sub { $tx->()->finish(@_) },
    };
}

# Total payload of a conversation's messages, both ways (wire byte counts
# are compared with it).
my $PAYLOAD = 0;
$PAYLOAD += length $_->[1] for @MESSAGES;

# ==== our client -> Mojo server ====

subtest 'our client -> Mojo server, no compression, client closes' => sub {
    my $cl = our_client("ws://127.0.0.1:$MOJO_PORT/plain", protocol => 'chat.v1, chat.v2');
    my $srv = exchange_ok('our client -> Mojo', $cl, \@MOJO_CONNS) or return;
    # Subprotocol: Mojo picks its first preference among our offers.
    is($cl->{rec}{protocol}, 'chat.v2', 'get_protocol: the one Mojo chose');
    is($cl->{rec}{headers}{'Sec-WebSocket-Protocol'}, 'chat.v2', '... as its 101 says');
    is($srv->{protocol}, 'chat.v2', 'Mojo chose chat.v2');
    # We offer permessage-deflate; this route does not take it.
    ok(!exists $cl->{rec}{headers}{'Sec-WebSocket-Extensions'}, 'no extension in the 101');
    is($srv->{rsv1}, 0, 'Mojo received no compressed frame');
    cmp_ok($srv->{wire_in}, '>', $PAYLOAD, 'our messages went over the wire uncompressed');
    # Mojo answers a close with the same code and reason.
    close_ok('our close(4000)', $cl, $srv, client => 4000, 'client bye',
        client => [ 4000, 'client bye' ], server => [ 4000, 'client bye' ]);
};

subtest 'our client -> Mojo server, permessage-deflate, server closes' => sub {
    my $cl = our_client("ws://127.0.0.1:$MOJO_PORT/deflate");
    my $srv = exchange_ok('our client -> Mojo, deflate', $cl, \@MOJO_CONNS) or return;
    # No subprotocol offered: none chosen.
    is($cl->{rec}{protocol}, undef, 'no subprotocol offered, none chosen');
    is($srv->{protocol}, undef, '... on the Mojo side either');
    # Negotiated on both sides: Mojo answers "permessage-deflate" with no
    # parameters, so it keeps its compression context between messages (the
    # repeated 2000 bytes refer back into the first copy); our inflater
    # must keep its context too, and it did, since every echo arrived
    # intact.
    is($cl->{rec}{headers}{'Sec-WebSocket-Extensions'}, 'permessage-deflate', 'the 101 accepts permessage-deflate');
    is($srv->{compressed}, 1, 'Mojo negotiated compression');
    # Our client compresses messages of 32 bytes or more: the two 1 MiB, the
    # two 2000-byte ones, and the fragmented ones (whose frames count one
    # by one) if they are compressed at all.
    cmp_ok($srv->{rsv1}, '>=', 4, 'Mojo received frames with RSV1 (compressed)')
        or diag("$srv->{rsv1} of $srv->{frames} frames");
    cmp_ok($srv->{wire_in}, '<', 0.75 * $PAYLOAD, 'our client sent fewer bytes than the payload')
        and cmp_ok($srv->{wire_in}, '>', $MiB, '... the random MiB included');
    cmp_ok($srv->{wire_out}, '<', 0.75 * $PAYLOAD, 'so did Mojo, and we inflated it');
    # Our client gets Mojo's code and reason; Mojo's finish event reports
    # them too.
    close_ok('Mojo finish(4001)', $cl, $srv, server => 4001, 'server bye',
        client => [ 4001, 'server bye' ], server => [ 4001, 'server bye' ]);
};

# ==== Mojo client -> our server ====

my $ctx = EV::Websockets::Context->new;
my ($plain_port, $plain_conns) = our_server($ctx, protocol => [ 'chat.v2', 'chat.v1' ]);

subtest 'Mojo client -> our server, no compression, client closes' => sub {
    my $cl = mojo_client("ws://127.0.0.1:$plain_port/", {}, [ 'chat.v1', 'chat.v2' ]);
    my $srv = exchange_ok('Mojo -> our server', $cl, $plain_conns) or return;
    # Subprotocol: our server picks its first preference among the offers.
    is($srv->{protocol}, 'chat.v2', 'our server chose chat.v2');
    is($srv->{headers}{'Sec-WebSocket-Protocol'}, 'chat.v1, chat.v2', "... from Mojo's offer");
    is($cl->{rec}{protocol}, 'chat.v2', 'Mojo sees chat.v2');
    is($cl->{rec}{compressed}, 0, 'no compression (Mojo 9.31 does not offer it by default)');
    is($cl->{rec}{rsv1}, 0, 'Mojo received no compressed frame');
    cmp_ok($cl->{rec}{wire_out}, '>', $PAYLOAD, 'Mojo sent the messages uncompressed');
    # Our server answers with the code of Mojo's close frame and no reason
    # (Mojo's finish event reports an absent reason as "").
    close_ok('Mojo finish(4002)', $cl, $srv, client => 4002, 'mojo bye',
        client => [ 4002, '' ], server => [ 4002, 'mojo bye' ]);
};

# context_takeover => 1, because Mojo ignores client_no_context_takeover
# (see "Mojo defect: client_no_context_takeover" below).
my ($deflate_port, $deflate_conns) = our_server($ctx, compression => 1, context_takeover => 1);

subtest 'Mojo client -> our server, permessage-deflate with context takeover, server closes' => sub {
    my $cl = mojo_client("ws://127.0.0.1:$deflate_port/", { 'Sec-WebSocket-Extensions' => 'permessage-deflate' }, []);
    my $srv = exchange_ok('Mojo -> our server, deflate', $cl, $deflate_conns) or return;
    is($srv->{protocol}, undef, 'no subprotocol offered, none chosen');
    is($cl->{rec}{protocol}, undef, '... on the Mojo side either');
    is($srv->{headers}{'Sec-WebSocket-Extensions'}, 'permessage-deflate', "our server saw Mojo's offer");
    is($cl->{rec}{extensions}, 'permessage-deflate', 'our 101 accepts it, with no parameters');
    is($cl->{rec}{compressed}, 1, 'Mojo negotiated compression');
    cmp_ok($cl->{rec}{rsv1}, '>=', 4, 'Mojo received frames with RSV1 (compressed)')
        or diag("$cl->{rec}{rsv1} of $cl->{rec}{frames} frames");
    cmp_ok($cl->{rec}{wire_in}, '<', 0.75 * $PAYLOAD, 'our server sent fewer bytes than the payload')
        and cmp_ok($cl->{rec}{wire_in}, '>', $MiB, '... the random MiB included');
    cmp_ok($cl->{rec}{wire_out}, '<', 0.75 * $PAYLOAD, 'so did Mojo, and we inflated it');
    # Mojo answers with the same code and reason.
    close_ok('our close(4003)', $cl, $srv, server => 4003, 'server bye',
        client => [ 4003, 'server bye' ], server => [ 4003, 'server bye' ]);
};

# ==== Mojo's permessage-deflate defects, shown on the wire ====

# Messages @$messages ([payload, is_binary]) sent by a Mojo client that
# negotiated permessage-deflate with a RawPeer server answering
# Sec-WebSocket-Extensions: $answer.  Returns the data frames the server
# received (RawPeer's hashes: rsv 4 is RSV1, payload unmasked).
sub mojo_frames_on_the_wire {
    my ($answer, @messages) = @_;
    my $peer = RawPeer->server(extra_headers => [ 'Sec-WebSocket-Extensions' => $answer ]);
    my $cl = mojo_client('ws://127.0.0.1:' . $peer->port . '/', { 'Sec-WebSocket-Extensions' => 'permessage-deflate' }, []);
    connect_ok('Mojo, to a raw server', $cl) or return;
    ok($cl->{rec}{compressed}, "Mojo accepted '$answer'") or return;
    $cl->{send}->(@$_) for @messages;
    run_until(sub { $peer->frames_of(1, 2) >= @messages }, 5);
    my @frames = $peer->frames_of(1, 2);
    is(scalar @frames, scalar @messages, 'one frame per message');
    $cl->{close}->(1000);
    return @frames;
}

# The inflated payloads of @frames, in order, with one raw inflater kept
# for all or (with $fresh) a new one per message, as RFC 7692 7.2.2 says:
# payload + 00 00 ff ff.  undef for a payload that does not inflate.
sub inflate_frames {
    my ($fresh, @frames) = @_;
    require Compress::Raw::Zlib;
    my $inflater;
    return map {
        $inflater = Compress::Raw::Zlib::Inflate->new(WindowBits => -15) if $fresh || !$inflater;
        my $in = $_->{payload} . "\x00\x00\xff\xff";
        my $status = $inflater->inflate($in, my $out);
        $status == Compress::Raw::Zlib::Z_OK() ? $out : undef;
    } @frames;
}

# RFC 7692 7.2.1: the compressed payload is the DEFLATE output ending with
# an empty stored block, minus its last 4 bytes (00 00 ff ff), so it is
# never empty: an empty message compresses to the single byte 00.  Mojo
# 9.31 flushes its (shared) compressor and cuts 4 bytes off whatever came
# out; for an empty message after another one zlib outputs nothing, and
# Mojo sends a frame with RSV1 and an empty payload.  A receiver that
# appends 00 00 ff ff as 7.2.2 says reads that as the start of a stored
# block 0xff00 bytes long, and the following messages as its contents:
# Compress::Raw::Zlib returns garbage (the next empty message arrives as
# the 3 bytes 00 ff ff) and then fails with "invalid stored block
# lengths".  Our module reads an empty compressed payload as the empty
# message it stands for, so the compressed conversations above include
# empty messages.
subtest 'Mojo defect: empty compressed messages' => sub {
    my @frames = mojo_frames_on_the_wire('permessage-deflate', [ 'abc', 1 ], [ '', 1 ], [ 'abc', 1 ]);
    is_deeply([ map { $_->{rsv} } @frames ], [ 4, 4, 4 ], 'Mojo set RSV1 on every message, the empty one too');
    is($frames[1]{payload}, '', 'the empty message went out with an empty payload (RFC 7692 needs at least 00)')
        or diag('payload: ' . unpack('H*', $frames[1]{payload}));
    my @inflated = inflate_frames(0, @frames);
    isnt($inflated[2], 'abc', 'inflated as RFC 7692 7.2.2 says, the message after it is lost');
};

# RFC 7692 7.1.1.2: a server that answers with client_no_context_takeover
# "prevents the peer client from using context takeover", and 7.1.1 says a
# client that cannot honour an answer fails the connection.  Our server
# answers so by default; Mojo 9.31 accepts the answer (it only looks for the
# word permessage-deflate) and keeps one compressor for all messages
# anyway, so a message that repeats an earlier one refers back into it, and
# an inflater that starts afresh for each message, as the negotiation
# allows, fails with "invalid distance too far back".
subtest 'Mojo defect: client_no_context_takeover' => sub {
    my $answer = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
    my ($payload) = map { $_->[1] } grep { $_->[0] eq '2000 random bytes' } @MESSAGES;
    my @frames = mojo_frames_on_the_wire($answer, [ $payload, 1 ], [ $payload, 1 ]);
    my @inflated = inflate_frames(1, @frames);
    payload_ok($inflated[0], $payload, 'the first message inflates on its own');
    my $mojo_ignores_it = !defined $inflated[1];
    ok($mojo_ignores_it, 'the second does not: Mojo compressed it with the context of the first')
        or diag('Mojo honours client_no_context_takeover now; this subtest can become an interoperability check');

    # Against our server (compression => 1, default answer as above): the
    # first echo comes back; the second message is refused cleanly as
    # invalid compressed data (1007), never delivered corrupted.  The text
    # after "invalid compressed message: " is zlib-rs's: "invalid distance
    # too far back" when its slow path finds the bad back-reference, but
    # "repeated call with bad state" when its fast path (enough input and
    # output room, as here) does, since zlib-rs 0.6.8 overwrites the first
    # message when it sees the bad state it just set.
    my ($port, $conns) = our_server($ctx, compression => 1);
    my $cl = mojo_client("ws://127.0.0.1:$port/", { 'Sec-WebSocket-Extensions' => 'permessage-deflate' }, []);
    my $srv = connect_ok('Mojo, to our server', $cl, $conns) or return;
    is($cl->{rec}{extensions}, $answer, "our server's answer") or return;
    $cl->{send}->($payload, 1) for 1, 2;
    run_until(sub { $cl->{rec}{close} && $srv->{close} }, 5);
    if ($mojo_ignores_it) {
        is(scalar @{ $srv->{got} }, 1, 'our server delivered the first message only');
        my $invalid = qr/^invalid compressed message: (?:invalid distance too far back|repeated call with bad state)\z/;
        is(scalar @{ $srv->{errors} }, 1, 'one on_error')
            and like($srv->{errors}[0], $invalid, '... for invalid compressed data');
        is($srv->{close}[0], 1007, 'our server closed with 1007')
            and like($srv->{close}[1], $invalid, '... giving the error as the reason');
        is($cl->{rec}{close}[0], 1007, 'Mojo saw 1007');
        is(scalar @{ $cl->{rec}{got} }, 1, 'Mojo got one echo');
    }
    else {
        is(scalar @{ $cl->{rec}{got} }, 2, 'both echoes came back');
        $cl->{close}->(1000);
    }
    payload_ok($cl->{rec}{got}[0][0], $payload, 'the first echo is intact');
};

done_testing;
