# Proves: numeric options out of range croak, naming the option, on new,
# connect, listen and adopt; every value in range is taken.
# POD: EV::Websockets, "Exceptions (croak)" and "close".
#
# Numeric options: NaN, infinities, negative numbers, values past what the
# core can hold and non-numbers croak, naming the option, on new, connect,
# listen and adopt; every value in range is taken.  close() with such a code croaks with its own message.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $inf = 9**9**9;
my $nan = $inf - $inf;
my %bad = (nan => $nan, inf => $inf, '-inf' => -$inf, '-1' => -1, 'abc' => 'abc', '1e19' => 1e19);

my $ctx = EV::Websockets::Context->new(proxy => '');
my $url = 'ws://127.0.0.1:' . closed_port() . '/';

my %method = (
    connect => sub { $ctx->connect(url => $url, @_) },
    listen  => sub { $ctx->listen(port => 0, host => '127.0.0.1', @_) },
    adopt   => sub {
        socketpair(my $mine, my $theirs, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
        $ctx->adopt(fh => $mine, @_);
    },
    new     => sub { EV::Websockets::Context->new(@_) },
);

my $seconds = 'a number of seconds from 0 to 1000000000';
my $bytes   = 'a number of bytes from 0 to 9007199254740992';
my @options = (
    [ connect => connect_timeout   => $seconds, 1e9 ],
    [ connect => close_timeout     => $seconds, 0.25 ],
    [ connect => ping_interval     => $seconds, 0 ],
    [ connect => ping_timeout      => $seconds, 1e9 ],
    [ connect => max_message_size  => $bytes,   2**53 ],
    [ listen  => handshake_timeout => $seconds, 1e9 ],
    [ listen  => close_timeout     => $seconds, 1e9 ],
    [ listen  => ping_interval     => $seconds, 1e9 ],
    [ listen  => max_message_size  => $bytes,   2**53 ],
    [ listen  => max_header_size   => $bytes,   2**53 ],
    [ adopt   => handshake_timeout => $seconds, 1e9 ],
    [ adopt   => max_message_size  => $bytes,   0 ],
    [ adopt   => max_header_size   => $bytes,   1 ],
    [ new     => proxy_port        => 'a port number from 1 to 65535', 65535, { 0 => 0, 65536 => 65536 } ],
);

for my $case (@options) {
    my ($method, $option, $range, $good, $more) = @$case;
    my %values = (%bad, %{ $more || {} });
    for my $label (sort keys %values) {
        my $ok = eval { $method{$method}->($option => $values{$label}); 1 };
        ok(!$ok, "$method $option => $label croaks");
        like($@, qr/^\Q$option must be $range\E at /, "... naming the option and its range");
    }
    ok(eval { $method{$method}->($option => $good); 1 }, "$method $option => $good is taken")
        or diag($@);
}

for my $label ('nan', 'inf', '-1', 'abc', 1e19, 65536) {
    my $value = $bad{$label} // $label;
    ok(!eval { $ctx->listen(port => $value, host => '127.0.0.1'); 1 }, "listen port => $label croaks");
    like($@, qr/^listen: port must be 0-65535 at /, '... with the port message');
}

# A connection's close code: no panic, no odd value on the wire.
my $port = echo_server($ctx, host => '127.0.0.1');
my $conn = $ctx->connect(url => "ws://127.0.0.1:$port/");
ok(run_until(sub { $conn->is_connected }, 3), 'connected');
for my $label ('nan', 'inf', '-inf', '1e19') {
    ok(!eval { $conn->close($bad{$label}); 1 }, "close($label) croaks");
    like($@, qr/^close: invalid close code (?:NaN|inf|-inf|10000000000000000000) \(RFC 6455/, '... with the close code message');
}
is($conn->state, 'connected', 'the connection is still open');

# A huge but valid timeout keeps its timer far away: the loop neither
# spins nor fires it.
my ($fired, $iterations) = (0, 0);
my $far = $ctx->connect(url => "ws://127.0.0.1:$port/", close_timeout => 1e9, ping_interval => 1e9,
    on_error => sub { $fired++ });
my $count = EV::check(sub { $iterations++ });
run_for(0.2);
is($fired, 0, 'no error from far deadlines');
ok($far->is_connected, 'connected with 1e9 s timeouts');
cmp_ok($iterations, '<', 1000, 'and the loop did not spin');

done_testing;
