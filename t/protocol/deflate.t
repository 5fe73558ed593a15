# Proves: permessage-deflate between our own client and server: negotiation,
# compressed traffic both ways, limits on the inflated size, adopt.
# POD: EV::Websockets, "connect" and "listen" (compression), "adopt".
#
# permessage-deflate between our own client and server: negotiation seen in
# the handshake headers, compressed traffic both ways (whole, empty, large,
# fragmented), the send queue counting compressed bytes, max_message_size on
# the inflated size, adopt(compression => 1), and sides that do not take
# part.  Raw zlib peers (window sizes, context takeover, bombs) are in
# t/protocol/deflate-against-zlib.t; Python websockets in
# t/interop/python-deflate.t.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $EXT     = 'Sec-WebSocket-Extensions';
my $OFFER   = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
my $ANSWER  = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
my $json    = join ',', map { qq({"id":$_,"status":"ok","items":[1,2,3]}) } 1 .. 30_000;   # ~1.2 MB
my $random  = join '', map { chr int rand 256 } 1 .. (1 << 20);
my @script  = (
    [ 'hello, compressed world ' x 4, 0 ],
    [ 'tiny', 0 ],
    [ '', 0 ],
    [ '', 1 ],
    [ "\x00\x01\xfe\xff" x 64, 1 ],
    [ $json, 0 ],
    [ $random, 1 ],
);

# A listener echoing with the same type; the client's handshake headers and
# each server connection's are recorded in %$seen.
sub echo_listener {
    my ($ctx, $seen, %opt) = @_;
    return echo_server($ctx,
        on_handshake => sub { $seen->{offer} = $_[0]{$EXT}; 1 },
        %opt);
}

# Connect, send the script (and a fragmented message), collect the echoes.
sub exchange {
    my ($port, %opt) = @_;
    my $ctx = EV::Websockets::Context->new;
    my (%r, @got);
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c, $h) = @_;
            $r{answer} = $h->{$EXT};
            for (@script) {
                my ($data, $binary) = @$_;
                $binary ? $c->send_binary($data) : $c->send($data);
            }
            $r{queued} = $c->send_queue_size;
            $c->send_fragment('one ' x 50, 0, 0);
            $c->send_ping('between');
            $c->send_fragment('', 0, 0);
            $c->send_fragment('two', 0, 1);
        },
        on_message => sub { push @got, [ $_[1], $_[2] ? 1 : 0 ] },
        on_error   => sub { $r{error} = $_[1] },
        %opt,
    );
    run_until(sub { @got == @script + 1 || $r{error} }, 10);
    $r{got} = \@got;
    $conn->close(1000);
    run_until(sub { $conn->state eq 'closed' });
    return \%r;
}

sub check_echoes {
    my ($label, $r) = @_;
    is($r->{error}, undef, "$label: no error");
    my @want = ((map { [ $_->[0], $_->[1] ] } @script), [ 'one ' x 50 . 'two', 0 ]);
    is(scalar @{ $r->{got} }, scalar @want, "$label: every message came back once");
    for my $i (0 .. $#want) {
        my ($got, $want) = ($r->{got}[$i] // [], $want[$i]);
        ok(defined $got->[0] && $got->[0] eq $want->[0] && $got->[1] == $want->[1],
            "$label: message $i (" . length($want->[0]) . ' bytes, ' . ($want->[1] ? 'binary' : 'text') . ')');
    }
}

subtest 'both sides compress' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my %seen;
    my $port = echo_listener($ctx, \%seen, compression => 1);
    my $r    = exchange($port);
    is($seen{offer}, $OFFER, 'the server saw the offer');
    is($r->{answer}, $ANSWER, 'the client saw the answer');
    check_echoes('compressed', $r);
    my $raw = 0;
    $raw += length $_->[0] for @script;
    cmp_ok($r->{queued}, '<', $raw * 0.6,
        "the send queue counts compressed bytes ($r->{queued} of $raw)");

    $port = echo_listener($ctx, \%seen, compression => 1, context_takeover => 1);
    $r    = exchange($port);
    is($r->{answer}, 'permessage-deflate; client_no_context_takeover',
        'context_takeover => 1: the server keeps its context');
    check_echoes('compressed with context', $r);
};

subtest 'one side does not take part' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my %seen;
    my $port = echo_listener($ctx, \%seen);
    my $r    = exchange($port);
    is($seen{offer}, $OFFER, 'a server without compression => 1 sees the offer');
    is($r->{answer}, undef, '... and declines it');
    check_echoes('server declines', $r);

    %seen = ();
    $port = echo_listener($ctx, \%seen, compression => 1);
    $r    = exchange($port, compression => 0);
    is($seen{offer}, undef, 'compression => 0: no offer');
    is($r->{answer}, undef, '... no answer');
    check_echoes('client does not offer', $r);
};

subtest 'max_message_size counts inflated bytes' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (@msgs, @errors);
    my $port = $ctx->listen(
        port => 0, compression => 1, max_message_size => 100_000,
        on_message => sub { push @msgs, length $_[1] },
        on_error   => sub { push @errors, $_[1] },
    );
    my %r;
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send('a' x 100_000); $_[0]->send('b' x 100_001) },
        on_close   => sub { $r{close} = [ @_[ 1, 2 ] ] },
    );
    run_until(sub { $r{close} });
    is_deeply(\@msgs, [100_000], 'exactly the limit arrives');
    is_deeply(\@errors, ['message exceeds max_message_size'], 'one byte more is refused');
    is($r{close}[0], 1009, 'the client is closed with 1009');
};

subtest 'the extension header belongs to the handshake' => sub {
    my $ctx = EV::Websockets::Context->new;
    eval { $ctx->connect(url => 'ws://127.0.0.1:1/', headers => { 'sec-websocket-extensions' => 'x' }) };
    like($@, qr/^headers: 'Sec-WebSocket-Extensions' is set by the handshake/, 'connect croaks');
    eval { $ctx->listen(port => 0, headers => { 'Sec-WebSocket-Extensions' => 'x' }) };
    like($@, qr/'Sec-WebSocket-Extensions' is set by the handshake/, 'listen croaks');
};

subtest 'adopt(compression => 1)' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $listener = IO::Socket::INET->new(
        Listen => 4, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp') or die "listen: $@";
    my ($adopted, %seen);
    my $w = EV::io($listener, EV::READ, sub {
        my $sock = $listener->accept or return;
        $adopted = $ctx->adopt(
            fh => $sock, compression => 1,
            on_handshake => sub { $seen{offer} = $_[0]{$EXT}; 1 },
            on_message => sub { $_[2] ? $_[0]->send_binary($_[1]) : $_[0]->send($_[1]) },
        );
    });
    my $r = exchange($listener->sockport);
    is($seen{offer}, $OFFER, 'the adopted connection saw the offer');
    is($r->{answer}, $ANSWER, 'and accepted it');
    check_echoes('adopted', $r);
};

done_testing;
