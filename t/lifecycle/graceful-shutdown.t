# Proves: shutdown() closes the listening sockets at once, closes every open
# connection with its code and reason, fails the ones still connecting, and
# calls cb once: when the last connection is gone, or at the timeout with
# the rest dropped (on_close 1006); the context then stays shut, destroying
# it at any point is safe, a dying cb is warned, bad arguments croak.
# POD: EV::Websockets, "shutdown", "Exceptions (croak)", "on_error messages".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Scalar::Util qw(refaddr weaken);
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $SHUT = qr/^Context is shutting down at /;

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# Whether a TCP connect to 127.0.0.1:$port is refused (nothing listens).
sub refused {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    return !$sock;
}

# The three calls that would add a connection or listener all croak.
sub stays_shut {
    my ($ctx, $what) = @_;
    like(croak_of(sub { $ctx->listen(port => 0) }), $SHUT, "$what: listen croaks");
    like(croak_of(sub { $ctx->connect(url => 'ws://127.0.0.1:1/') }), $SHUT, '... connect croaks');
    open(my $fh, '<', $0) or die;
    like(croak_of(sub { $ctx->adopt(fh => $fh) }), $SHUT, '... adopt croaks');
    like(croak_of(sub { $ctx->shutdown }), $SHUT, '... so does a second shutdown');
}

# A server context with an echo listener and $n clients connected to it
# from a second context, each recording its events.
sub served {
    my ($n, %listen) = @_;
    my $s = { ctx => EV::Websockets::Context->new, server => [] };
    weaken(my $ws = $s);
    $s->{port} = echo_server($s->{ctx}, recording($s->{sev} = {}, %listen,
        on_connect => sub { push @{ $ws->{server} }, $_[0] if $ws }));
    $s->{cctx} = EV::Websockets::Context->new;
    for (1 .. $n) {
        my $ev = {};
        $ev->{conn} = $s->{cctx}->connect(url => "ws://127.0.0.1:$s->{port}/", recording($ev));
        push @{ $s->{clients} }, $ev;
    }
    run_until(sub { @{ $s->{server} } == $n && !grep { !$_->{connect} } @{ $s->{clients} } }, 5)
        or die 'clients did not connect';
    return $s;
}

subtest 'open connections close with the code and reason; cb once, after the last on_close' => sub {
    my $s = served(2);
    my (@cb, @order);
    my $ctx = $s->{ctx};
    $s->{sev}{order} = \@order;
    $ctx->shutdown(code => 4000, reason => 'maintenance', timeout => 5,
        cb => sub { push @cb, [@_]; push @order, 'cb' });
    ok(refused($s->{port}), 'the listening socket is closed at once');
    stays_shut($ctx, 'during the shutdown');
    is(scalar $ctx->connections, 2, 'the connections are closing, still listed');
    ok(!@cb, 'cb did not run inside shutdown');
    ok(run_until(sub { @cb }, 5), 'cb ran');
    is_deeply($_->{close}, [ [ 4000, 'maintenance' ] ], 'a client saw on_close 4000 "maintenance"')
        for @{ $s->{clients} };
    is(scalar @{ $s->{sev}{close} || [] }, 2, 'the server saw both on_close');
    is_deeply([ grep { $_ eq 'close' || $_ eq 'cb' } @order ], [qw(close close cb)], '... before cb');
    is(scalar @{ $cb[0] }, 1, 'cb got one argument');
    is(refaddr($cb[0][0]), refaddr($ctx), '... the context');
    is(scalar $ctx->connections, 0, 'no connection is left');
    run_for(0.2);
    is(scalar @cb, 1, 'cb ran once');
    stays_shut($ctx, 'after the shutdown');
};

subtest 'defaults: 1001 and no reason' => sub {
    my $s = served(1);
    my $done;
    $s->{ctx}->shutdown(cb => sub { $done = 1 });
    ok(run_until(sub { $done }, 5), 'cb ran');
    is_deeply($s->{clients}[0]{close}, [ [ 1001, '' ] ], 'the client saw on_close 1001 ""');
};

subtest 'a client that never answers the close: cb at the timeout, the connection dropped' => sub {
    for my $timeout (0.3, 0) {
        my ($peer, $ev) = listen_raw(peer => { reply_close => 0 });
        ok(run_until(sub { $ev->{conn} && $peer->{open} }, 5), "timeout $timeout: the raw client is open");
        my ($cb, @order);
        $ev->{order} = \@order;
        my $t0 = EV::time;
        $ev->{ctx}->shutdown(reason => 'bye', timeout => $timeout, cb => sub { $cb = EV::time - $t0; push @order, 'cb' });
        ok(run_until(sub { defined $cb }, 5), '... cb ran');
        cmp_ok($cb, '>=', $timeout * 0.8, '... at the timeout');
        ok($peer->{got_close}, '... the peer got the close frame first');
        is($peer->{close_code}, 1001, '... with 1001');
        is($peer->{close_reason}, 'bye', '... and the reason');
        is_deeply($ev->{close}, [ [ 1006, undef ] ], '... on_close 1006 without a reason');
        is_deeply([ grep { $_ eq 'close' || $_ eq 'cb' } @order ], [qw(close cb)], '... before cb');
        ok(run_until(sub { $peer->{eof} }, 2), '... and the socket is closed');
    }
};

subtest 'our client, a server that never answers the close' => sub {
    my ($conn, $peer, $ev) = connect_raw(peer => { reply_close => 0 });
    ok(run_until(sub { $ev->{connect} }, 5), 'connected');
    my $cb;
    $ev->{ctx}->shutdown(timeout => 0.2, cb => sub { $cb = 1 });
    ok(run_until(sub { $cb }, 5), 'cb ran');
    is($peer->{close_code}, 1001, 'the server got close 1001');
    is_deeply($ev->{close}, [ [ 1006, undef ] ], 'the client: on_close 1006');
    is($conn->state, 'closed', 'the connection is closed');
};

subtest 'no connections: cb on the next loop iteration' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx);
    my $cb   = 0;
    $ctx->shutdown(cb => sub { $cb++ });
    is($cb, 0, 'not inside shutdown');
    ok(refused($port), 'the listening socket is closed');
    ok(run_until(sub { $cb }, 2), 'cb ran from the loop');
    run_for(0.1);
    is($cb, 1, 'once');
    my $plain = EV::Websockets::Context->new;
    $plain->shutdown;
    run_for(0.05);
    stays_shut($plain, 'without a cb');
};

subtest 'connecting ones: a client gets on_error, a server connection before its upgrade goes quietly' => sub {
    # A listener that never accepts: the TCP connect completes, the upgrade never does.
    my $mute = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0) or die;
    my $ctx  = EV::Websockets::Context->new;
    my $ev   = {};
    my $conn = $ctx->connect(url => 'ws://127.0.0.1:' . $mute->sockport . '/', recording($ev));
    my $sev  = {};
    my $port = $ctx->listen(port => 0, recording($sev));
    my $raw  = RawPeer->client(port => $port, request => '');   # says nothing
    run_for(0.1);
    ok($conn->is_connecting, 'the client is connecting');
    my $cb;
    $ctx->shutdown(cb => sub { $cb = 1 });
    is_deeply($ev->{error}, [ ['context is shutting down'] ], 'the client: on_error "context is shutting down"');
    ok(!$ev->{close}, '... and no on_close');
    is($conn->state, 'closed', '... it is closed');
    ok(run_until(sub { $cb && $raw->{eof} }, 2), 'cb ran; the raw client sees the socket closed');
    ok(!$sev->{error} && !$sev->{close} && !$sev->{connect}, 'the server connection had no callback');
};

subtest 'shutdown inside a callback' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $cb;
    my $port = echo_server($ctx, on_message => sub {
        $ctx->shutdown(reason => 'from on_message', cb => sub { $cb = 1 });
    });
    my $ev = {};
    my $cctx = EV::Websockets::Context->new;
    $ev->{conn} = $cctx->connect(url => "ws://127.0.0.1:$port/",
        recording($ev, on_connect => sub { $_[0]->send('go') }));
    ok(run_until(sub { $cb }, 5), 'cb ran');
    is_deeply($ev->{close}, [ [ 1001, 'from on_message' ] ], 'the client saw the close');

    my ($conn, $peer, $cev) = connect_raw();
    ok(run_until(sub { $cev->{connect} }, 5), 'a client is open');
    my $ccb;
    $cev->{ctx}->connect(url => 'ws://127.0.0.1:' . closed_port() . '/',
        on_error => sub { $cev->{ctx}->shutdown(timeout => 0.2, cb => sub { $ccb = 1 }) });
    ok(run_until(sub { $ccb }, 5), 'a shutdown inside on_error: cb ran');
    is($peer->{close_code}, 1001, '... the other connection was closed');
};

subtest 'destroying the context' => sub {
    my $s = served(1);
    my $ctx = $s->{ctx};
    delete $s->{ctx};
    my $cb = 0;
    $ctx->shutdown(cb => sub { $cb++; undef $ctx });
    ok(run_until(sub { $cb }, 5), 'cb ran');
    ok(!$ctx, 'undef $ctx inside cb');
    run_for(0.05);
    is($cb, 1, '... safely, once');

    my $s2 = served(1);
    $cb = 0;
    $s2->{ctx}->shutdown(cb => sub { $cb++; $_[0]->DESTROY });
    ok(run_until(sub { $cb }, 5), 'DESTROY of the argument inside cb');
    like(croak_of(sub { $s2->{ctx}->listen(port => 0) }), qr/^Context has been destroyed/,
        '... the context is destroyed');

    my ($peer, $ev) = listen_raw(peer => { reply_close => 0 });
    ok(run_until(sub { $ev->{conn} && $peer->{open} }, 5), 'a raw client is open');
    $cb = 0;
    $ev->{ctx}->shutdown(timeout => 5, cb => sub { $cb++ });
    ok(run_until(sub { $peer->{got_close} }, 2), 'shutting down: the close is sent');
    delete $ev->{ctx};
    ok(run_until(sub { $peer->{eof} }, 2), 'destroyed during the shutdown: the socket closes');
    run_for(0.1);
    is($cb, 0, '... and cb is never called');

    # At the timeout, an on_close destroys the context: the other dropped
    # connection hears nothing more, cb is not called.
    my $ctx3 = EV::Websockets::Context->new;
    my @closes;
    my $port = $ctx3->listen(port => 0,
        on_close => sub { push @closes, $_[1]; undef $ctx3 });
    my @peers = map { RawPeer->client(port => $port, reply_close => 0) } 1 .. 2;
    ok(run_until(sub { !grep { !$_->{open} } @peers }, 5), 'two raw clients are open');
    $cb = 0;
    $ctx3->shutdown(timeout => 0.1, cb => sub { $cb++ });
    ok(run_until(sub { !grep { !$_->{eof} } @peers }, 5), 'both dropped at the timeout');
    run_for(0.05);
    is_deeply(\@closes, [1006], 'the first on_close destroyed the context: no second one');
    is($cb, 0, '... and no cb');
};

subtest 'a cb that dies is warned' => sub {
    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };
    my $ctx = EV::Websockets::Context->new;
    $ctx->shutdown(cb => sub { EV::break; die "oops\n" });
    my $err = run_keeping_errsv();   # only our callback runs
    is_deeply(\@warnings, ["EV::Websockets: exception in shutdown handler: oops\n"], 'warned');
    is($err, 'keep', '$@ is left alone');
};

subtest 'bad arguments croak and shut nothing' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx);
    my $code_msg = '(RFC 6455 allows 1000-1003, 1007-1014, 3000-4999)';
    my @bad = (
        [ [ code => 999 ],        "shutdown: invalid close code 999 $code_msg" ],
        [ [ code => 1005 ],       "shutdown: invalid close code 1005 $code_msg" ],
        [ [ code => 1000.5 ],     "shutdown: invalid close code 1000.5 $code_msg" ],
        [ [ reason => "\xff" ],   'shutdown: reason is not valid UTF-8' ],
        [ [ timeout => -1 ],      'timeout must be a number of seconds from 0 to 1000000000' ],
        [ [ timeout => 1e10 ],    'timeout must be a number of seconds from 0 to 1000000000' ],
        [ [ timeout => 'soon' ],  'timeout must be a number of seconds from 0 to 1000000000' ],
        [ [ timeout => 'nan' ],   'timeout must be a number of seconds from 0 to 1000000000' ],
        [ [ cb => 'main::x' ],    'cb must be a code reference' ],
        [ [ cb => [] ],           'cb must be a code reference' ],
        [ [ 'cb' ],               "odd number of options: key 'cb' has no value" ],
    );
    for (@bad) {
        my ($args, $msg) = @$_;
        like(croak_of(sub { $ctx->shutdown(@$args) }), qr/^\Q$msg\E at /, "@$args: $msg");
    }
    ok(!refused($port), 'the context still listens');
    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };
    my $cb;
    $ctx->shutdown(timeout => undef, code => undef, reason => undef, cb => sub { $cb = 1 }, colour => 'red');
    like($warnings[0] // '', qr/^EV::Websockets: unknown option 'colour' at /, 'an unknown option warns');
    ok(run_until(sub { $cb }, 2), 'undef values are the defaults');
    my $gone = EV::Websockets::Context->new;
    $gone->DESTROY;
    like(croak_of(sub { $gone->shutdown }), qr/^Context has been destroyed at /, 'a destroyed context croaks');
};

done_testing;
