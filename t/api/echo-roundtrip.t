# Proves: text, binary, empty, large and wide-character messages echo intact
# between our own client and server, each callback firing once.
# POD: EV::Websockets, "send", "send_binary", "on_message" and "listen".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

srand(42);
my $wide       = "caf\x{e9} \x{263a} \x{1F600}";
my $wide_bytes = $wide;
utf8::encode($wide_bytes);

# [ name, payload, is_binary, expected echo (defaults to the payload) ]
my @cases = (
    [ 'text "hello"',        'hello',        0 ],
    [ 'short binary',        "\x00\x01\xff", 1 ],
    [ 'empty text',          '',             0 ],
    [ '64 KiB text',         substr(join('', map { chr(32 + $_) } 0 .. 94) x 700, 0, 65536), 0 ],
    [ '1 MiB binary',        pack('N*', map { int rand 2**32 } 1 .. 262144), 1 ],
    [ 'wide-character text', $wide,          0, $wide_bytes ],
);
is(length $cases[3][1], 65536,   '64 KiB payload prepared');
is(length $cases[4][1], 1 << 20, '1 MiB payload prepared');

my $ctx = EV::Websockets::Context->new;

my $server_closed = 0;
my $port = echo_server($ctx, on_close => sub { $server_closed++ });
like($port, qr/^\d+\z/, 'listen returns a port number');
ok($port > 0 && $port < 65536, '... in the valid range');

my (@got, $connected, $client_closed, @errors);
my $conn = $ctx->connect(
    url        => "ws://127.0.0.1:$port/",
    on_connect => sub {
        my ($c) = @_;
        $connected++;
        # All messages are queued at once; the echoes must come back in order.
        for my $case (@cases) {
            $case->[2] ? $c->send_binary($case->[1]) : $c->send($case->[1]);
        }
    },
    on_message => sub {
        my ($c, $data, $is_binary, $is_final) = @_;
        push @got, [ $data, $is_binary, $is_final, utf8::is_utf8($data) ? 1 : 0 ];
        $c->close(1000) if @got == @cases;
    },
    on_close => sub { $client_closed++ },
    on_error => sub { push @errors, $_[1] },
);

ok(run_until(sub { $client_closed && $server_closed }, 8), 'both sides closed after the echoes');
is($connected, 1, 'client on_connect fired once');
is_deeply(\@errors, [], 'no errors');
is(scalar @got, scalar @cases, 'one echo per message sent');

for my $i (0 .. $#cases) {
    my ($name, $sent, $is_binary, $expect) = @{ $cases[$i] };
    $expect //= $sent;
    my ($data, $bin, $fin, $flagged) = @{ $got[$i] || [] };
    # eq rather than is(): a mismatch must not dump a megabyte of diagnostics
    ok(defined $data && $data eq $expect, "$name: echoed content matches");
    is(length($data // ''), length($expect), "$name: echoed length");
    is($bin, $is_binary, "$name: is_binary is $is_binary");
    is($fin, 1, "$name: is_final is 1");
    is($flagged, 0, "$name: data is bytes, not UTF-8 flagged");
}

is($wide, "caf\x{e9} \x{263a} \x{1F600}", 'send left the wide-character string untouched');
ok(utf8::is_utf8($wide), '... and still UTF-8 flagged');

is($client_closed, 1, 'client on_close fired once');
is($server_closed, 1, 'server on_close fired once');
is($conn->state, 'closed', 'client connection is closed at the end');

done_testing;
