# Proves: a connect to a host name never waits for connect_timeout when the
# resolver answers before the context's watcher has started.
# POD: EV::Websockets, "DESCRIPTION" (nothing blocks the loop) and "connect".
#
# Regression: a connect to a host name could hang until connect_timeout when
# the resolver answered before the context's async watcher was started (the
# wake-up was lost).  Each connect uses a fresh context, whose watcher is not
# running yet.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use Socket qw(getaddrinfo unpack_sockaddr_in inet_aton AF_INET SOCK_STREAM);

my ($gai_error, @addrs) = getaddrinfo('localhost', 0, { socktype => SOCK_STREAM });
my $loopback = inet_aton('127.0.0.1');
plan skip_all => "'localhost' does not resolve to 127.0.0.1"
    if $gai_error || !grep { $_->{family} == AF_INET && (unpack_sockaddr_in($_->{addr}))[1] eq $loopback } @addrs;

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# The window is small: at least 200 connects, then more for up to 3 s (at
# most 3000), stopping at the first failure.
my ($min, $max, $budget) = (200, 3000, 3);

my $sctx = EV::Websockets::Context->new;
my $port = $sctx->listen(port => 0, host => '127.0.0.1');

my ($tried, $connected, $first_failure, $slowest) = (0, 0, undef, 0);
my $start = EV::time;
while ($tried < $max && ($tried < $min || EV::time - $start < $budget)) {
    $tried++;
    my $ctx = EV::Websockets::Context->new;
    my ($done, $error);
    my $t0   = EV::time;
    my $conn = $ctx->connect(
        url             => "ws://localhost:$port/",
        connect_timeout => 2,
        on_connect      => sub { $done = 1 },
        on_error        => sub { $error = $_[1]; $done = 1 },
    );
    run_until(sub { $done }, 3);
    my $took = EV::time - $t0;
    $slowest = $took if $took > $slowest;
    if (!$conn->is_connected) {
        $first_failure = sprintf 'connect %d: %s after %.2f s', $tried, $error // 'no answer', $took;
        last;    # each lost wake-up costs connect_timeout: stop at the first
    }
    $connected++;
    $conn->close;
}

is($connected, $tried, "$tried sequential connects to localhost all connected")
    or diag($first_failure);
cmp_ok($slowest, '<', 1, 'none waited for long') or diag(sprintf 'slowest: %.2f s', $slowest);

# Let the closes finish.
run_until(sub { !(() = $sctx->connections) }, 2);

done_testing;
