# Proves: host names, IPv6 literals, DNS failures and connect_timeout, and the
# rules for request headers.
# POD: EV::Websockets, "connect" (url, headers, connect_timeout),
# "on_error messages".
#
# Client addressing and the opening: names, IPv6 literals, DNS failure,
# connect_timeout, and the rules for request headers.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $ctx = EV::Websockets::Context->new;
my %request;
my $port = echo_server($ctx, on_connect => sub { %request = %{ $_[1] } });

is(ws_roundtrip("ws://localhost:$port/")->{reply}, 'hello', 'a name (localhost) is resolved and served');

SKIP: {
    skip 'no IPv6 loopback', 1
        unless eval { require IO::Socket::IP; IO::Socket::IP->new(LocalHost => '::1', Listen => 1) };
    is(ws_roundtrip("ws://[::1]:$port/")->{reply}, 'hello', 'an IPv6 literal in brackets is served');
}

subtest 'a DNS failure is reported through on_error, naming the host' => sub {
    my (@errors, $closed, $inside);
    my $conn = $ctx->connect(
        url      => 'ws://no-such-host.invalid/',
        on_error => sub { push @errors, $_[1]; $inside = $_[0]->state },
        on_close => sub { $closed++ },
    );
    is($conn->state, 'connecting', 'connect returns at once, connecting');
    ok(!@errors, 'no callback inside connect');
    ok(run_until(sub { @errors }), 'on_error fires later');
    run_for(0.05);
    is(scalar @errors, 1, 'once');
    like($errors[0], qr/^DNS lookup failed for 'no-such-host\.invalid': /, 'naming the host');
    is($inside, 'closed', 'state is "closed" inside it');
    ok(!$closed, 'no on_close');
};

subtest 'connect_timeout against a server that accepts and never answers' => sub {
    my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
        or die "listen: $!";
    my ($peer, $eof);
    my $accept = EV::io($silent, EV::READ, sub { $peer = $silent->accept });
    my (@errors, @other);
    my $t0   = EV::time;
    my $conn = $ctx->connect(
        url             => 'ws://127.0.0.1:' . $silent->sockport . '/',
        connect_timeout => 0.3,
        on_error        => sub { push @errors, [ $_[1], EV::time - $t0, $_[0]->state ] },
        on_connect      => sub { push @other, 'connect' },
        on_close        => sub { push @other, 'close' },
    );
    ok(run_until(sub { @errors }, 3), 'on_error fires');
    my $watch = $peer && EV::io($peer, EV::READ, sub {
        my $n = sysread($peer, my $buf, 4096);
        $eof = 1 if defined $n && $n == 0;
    });
    ok(run_until(sub { $eof }, 2), 'the socket is closed: the server sees EOF');
    run_for(0.1);
    is(scalar @errors, 1, 'exactly once');
    is($errors[0][0], 'connect timeout', '"connect timeout"');
    cmp_ok($errors[0][1], '>=', 0.25, '... at the deadline');
    cmp_ok($errors[0][1], '<', 1.5, '... not much later');
    is($errors[0][2], 'closed', 'state is "closed" inside on_error');
    is($conn->state, 'closed', 'and stays so');
    is_deeply(\@other, [], 'nothing else fires');
};

subtest 'request headers' => sub {
    my $r = ws_roundtrip("ws://127.0.0.1:$port/h",
        headers => { Host => 'example.test', Origin => 'https://app.test', 'User-Agent' => 'tester/1', 'X-A' => 'b' });
    is($r->{reply}, 'hello', 'connected');
    is($request{Host}, 'example.test', 'a user Host replaces the default');
    is($request{Origin}, 'https://app.test', 'a user Origin replaces the default');
    is($request{'User-Agent'}, 'tester/1', 'User-Agent is sent when given');
    is($request{'X-A'}, 'b', 'other headers are sent');

    for my $name (qw(Upgrade Connection Sec-WebSocket-Key Sec-WebSocket-Version)) {
        eval { $ctx->connect(url => "ws://127.0.0.1:$port/", headers => { lc $name => 'x' }) };
        like($@, qr/^headers: '\Q$name\E' is set by the handshake at /, "$name croaks");
    }
    for my $bad ("a\r\nB: c", "a\nb", "a\0b") {
        eval { $ctx->connect(url => "ws://127.0.0.1:$port/", headers => { 'X-Bad' => $bad }) };
        like($@, qr/^headers: value of 'X-Bad' contains CR, LF or NUL at /, 'CR, LF or NUL in a value croaks');
    }
    eval { $ctx->connect(url => "ws://127.0.0.1:$port/", headers => { "X\r\nY" => 'v' }) };
    like($@, qr/^headers: invalid header name /, 'CR or LF in a name croaks');
};

done_testing;
