# Proves: the closing handshake on the wire: first close wins, queued data
# goes first, reasons are cut, 1005 and 1006, close_timeout.
# POD: EV::Websockets, "close", "on_close" and "connect" (close_timeout).
#
# close([$code], [$reason]) and the closing handshake.  Raw peers check
# what goes over the wire.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @BAD_CODES = (999, 1004, 1005, 1006, 1015, 70000, -1, 0);

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

sub bad_code_re {
    my ($n) = @_;
    return qr/^\Qclose: invalid close code $n (RFC 6455 allows 1000-1003, 1007-1014, 3000-4999)\E at /;
}

# [ opcode, fin, payload ] of every frame the raw peer received
sub wire { return [ map { [ @$_{qw(opcode fin payload)} ] } @{ $_[0]{frames} } ] }

subtest 'invalid close codes croak in every state' => sub {
    my (%connecting, %connected, %closing, %closed);
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $connected{$_} = croak_of(sub { $c->close($_) }) for @BAD_CODES;
            $connected{state} = $c->state;
            $c->close(1000);
            $closing{$_} = croak_of(sub { $c->close($_) }) for @BAD_CODES;
        },
    );
    $connecting{$_} = croak_of(sub { $conn->close($_) }) for @BAD_CODES;
    is($conn->state, 'connecting', 'still "connecting" after the rejected closes');
    ok(run_until(sub { $ev->{close} }), 'connection opened and closed');
    $closed{$_} = croak_of(sub { $conn->close($_) }) for @BAD_CODES;

    for my $n (@BAD_CODES) {
        like($connecting{$n}, bad_code_re($n), "close($n) croaks while connecting");
        like($connected{$n},  bad_code_re($n), "close($n) croaks while connected");
        like($closing{$n},    bad_code_re($n), "close($n) croaks while closing");
        like($closed{$n},     bad_code_re($n), "close($n) croaks when closed");
    }
    is($connected{state}, 'connected', 'a rejected close leaves the connection open');
    is($peer->{close_code}, 1000, 'the peer got the one valid close, 1000');
    is(scalar $peer->frames_of(8), 1, '... in exactly one close frame');

    for my $n (1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999) {
        is(croak_of(sub { $conn->close($n) }), '', "close($n) on a closed connection is a silent no-op");
    }
};

subtest 'close while connecting is a no-op' => sub {
    my (%seen);
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $seen{state} = $c->state;
            $seen{send}  = croak_of(sub { $c->send('still open') });
        },
    );
    is(croak_of(sub { $conn->close(4000, 'too early') }), '', 'close while connecting does not croak');
    is($conn->state, 'connecting', 'state stays "connecting"');
    ok(run_until(sub { $peer->messages }), 'the connection completed and a message went out');
    is($seen{state}, 'connected', 'on_connect saw "connected"');
    is($seen{send}, '', 'send worked');
    is_deeply([ $peer->opcodes ], [1], 'the peer got the message and no close frame');
    is($conn->state, 'connected', 'connection still open');
    $conn->close;
    ok(run_until(sub { $ev->{close} }), 'closed later');
};

subtest 'first close wins; state "closing"; queued data goes out first' => sub {
    my %seen;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $c->send('m1');
            $c->send_binary("m\x002");
            $c->send('m3');
            $c->close(4001, 'first');
            $seen{state}        = $c->state;
            $seen{is_connected} = $c->is_connected ? 1 : 0;
            $seen{second}       = croak_of(sub { $c->close(4002, 'second') });
            $seen{third}        = croak_of(sub { $c->close });
        },
    );
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    run_for(0.2);    # a second close frame or on_close would show up here
    is($seen{state}, 'closing', 'state is "closing" right after close()');
    is($seen{is_connected}, 0, 'is_connected is false while closing');
    is($seen{second}, '', 'a second close does not croak');
    is($seen{third},  '', 'nor does a third');
    is_deeply(wire($peer), [ [ 1, 1, 'm1' ], [ 2, 1, "m\x002" ], [ 1, 1, 'm3' ], [ 8, 1, pack('n', 4001) . 'first' ] ],
        'messages queued before close() went out first, then one close frame 4001 "first"');
    is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
    is($ev->{close}[0][0], 4001, 'on_close got the code the peer echoed');
    is($conn->state, 'closed', 'state is "closed" afterwards');
    ok($peer->{eof}, 'TCP connection is gone');
};

subtest 'close with an open fragmented message' => sub {
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $c->send_fragment('part1', 0, 0);
            $c->send_fragment('part2', 0, 0);
            $c->close(1000);
        },
    );
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    is_deeply(wire($peer), [ [ 1, 0, 'part1' ], [ 0, 0, 'part2' ], [ 0, 1, '' ], [ 8, 1, pack('n', 1000) ] ],
        'an empty final continuation frame precedes the close frame');
    is_deeply([ $peer->messages ], [ [ 1, 'part1part2' ] ], 'the peer sees one complete message');
};

subtest 'close reason is cut to 123 bytes on a character boundary' => sub {
    my $e_acute = "\x{e9}" x 100;    # 100 characters, 200 bytes of UTF-8
    utf8::upgrade($e_acute);
    my $e_bytes = "\xc3\xa9" x 100;  # the same as UTF-8 bytes
    my @cases = (
        [ '200 ASCII bytes',                 'a' x 200,            'a' x 123 ],
        [ '123 ASCII bytes (untouched)',     'b' x 123,            'b' x 123 ],
        [ '100 "e-acute" characters',        $e_acute,             "\xc3\xa9" x 61 ],
        [ '100 "e-acute" as UTF-8 bytes',    $e_bytes,             "\xc3\xa9" x 61 ],
        [ '50 three-byte characters',        "\x{263a}" x 50,      "\xe2\x98\xba" x 41 ],
        [ '40 four-byte characters',         "\x{1F600}" x 40,     "\xf0\x9f\x98\x80" x 30 ],
        [ '"x" then 3-byte characters',      'x' . "\x{263a}" x 50, 'x' . "\xe2\x98\xba" x 40 ],
    );
    my @runs;
    for my $case (@cases) {
        my ($name, $reason) = @$case;
        push @runs, [ connect_raw(on_connect => sub { $_[0]->close(4000, $reason) }) ];
    }
    ok(run_until(sub { !grep { !$_->[2]{close} } @runs }), 'all connections closed');
    for my $i (0 .. $#cases) {
        my ($name, undef, $expect) = @{ $cases[$i] };
        my $peer = $runs[$i][1];
        my $got  = $peer->{close_reason} // '';
        is($peer->{close_code}, 4000, "$name: code 4000");
        cmp_ok(length $got, '<=', 123, "$name: reason is at most 123 bytes");
        ok(utf8::decode(my $copy = $got), "$name: reason is valid UTF-8");
        ok($got eq $expect, "$name: reason is the longest whole-character prefix")
            or diag(sprintf 'got %d bytes: %s', length $got, unpack 'H*', $got);
    }
};

subtest 'on_drain never fires after close()' => sub {
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $c->send_binary('z' x (1 << 20));
            $c->send('small');
            $c->close(1000);
        },
    );
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    run_for(0.2);
    is_deeply([ map { length $_->[1] } $peer->messages ], [ 1 << 20, 5 ], 'the queued messages were delivered');
    is($ev->{drain}, undef, 'on_drain did not fire');
};

subtest 'the peer\'s close code and reason reach on_close' => sub {
    my ($conn, $peer, $ev) = connect_raw(
        peer => { on_open => sub {
            $_[0]->send_frame(opcode => 8, payload => RawPeer::close_payload(4321, "peer says bye \xe2\x98\xba"));
        } },
    );
    ok(run_until(sub { $ev->{close} && $peer->{eof} }), 'closed, and the client closed TCP');
    run_for(0.2);
    is_deeply($ev->{close}, [ [ 4321, "peer says bye \xe2\x98\xba" ] ], 'on_close(4321, reason) exactly once');
    is(scalar $peer->frames_of(8), 1, 'the client answered with one close frame');
    is_deeply($ev->{order}, [qw(connect close)], 'no other callbacks');
};

subtest 'the server closes TCP after the closing handshake' => sub {
    my $ctx = EV::Websockets::Context->new;
    my %ev;
    my $port = $ctx->listen(port => 0, recording(\%ev, on_connect => sub { $_[0]->close(4005, 'srv') }));
    my $peer = RawPeer->client(port => $port);    # answers the close frame
    ok(run_until(sub { $ev{close} && $peer->{eof} }), 'server on_close fired and TCP was closed');
    is($peer->{close_code},   4005,  'client peer got close code 4005');
    is($peer->{close_reason}, 'srv', '... and reason "srv"');
    is($ev{close}[0][0], 4005, 'server on_close got the echoed code');
    is(scalar @{ $ev{close} }, 1, '... once');
};

subtest 'messages arriving while closing are still delivered' => sub {
    my %seen;
    my ($conn, $peer, $ev) = connect_raw(
        peer => {
            reply_close => 0,
            on_frame    => sub {
                my ($p, $f) = @_;
                return unless $f->{opcode} == 8;
                $p->send_raw(join '', map { $p->frame(payload => $_) } 'late1', 'late2');
                $p->send_frame(opcode => 8, payload => substr($f->{payload}, 0, 2));
            },
        },
        on_connect => sub { $_[0]->close(1000) },
        on_message => sub { push @{ $seen{states} }, $_[0]->state },
    );
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    is_deeply($ev->{message}, [ [ 'late1', 0, 1 ], [ 'late2', 0, 1 ] ], 'both late messages delivered');
    is_deeply($seen{states}, [qw(closing closing)], '... while the state was "closing"');
    is_deeply($ev->{order}, [qw(connect message message close)], '... before on_close');
    is($ev->{close}[0][0], 1000, 'on_close got 1000');
};

subtest 'a close frame without a code gives on_close(1005, undef)' => sub {
    my ($conn, $peer, $ev) = connect_raw(
        peer => { on_open => sub { $_[0]->send_frame(opcode => 8, payload => '') } },
    );
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    run_for(0.2);
    is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
    is($ev->{close}[0][0], 1005, 'code 1005');
    ok(@{ $ev->{close}[0] } == 2 && !defined $ev->{close}[0][1], 'reason undef');
    is($ev->{error}, undef, 'no on_error');
};

subtest 'peer drops TCP without a close frame: on_close(1006, undef)' => sub {
    my ($conn, $peer, $ev) = connect_raw(peer => { on_open => sub { $_[0]->close_tcp } });
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    run_for(0.2);
    is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
    is($ev->{close}[0][0], 1006, 'code 1006');
    ok(@{ $ev->{close}[0] } == 2 && !defined $ev->{close}[0][1], 'reason undef');
    is($conn->state, 'closed', 'state "closed"');
};

subtest 'close_timeout: a peer that never answers the close frame' => sub {
    my ($t_close, $t_on_close);
    my ($conn, $peer, $ev) = connect_raw(
        peer          => { reply_close => 0 },
        close_timeout => 0.3,
        on_connect    => sub { $t_close = EV::time; $_[0]->close(1000, 'hello?') },
        on_close      => sub { $t_on_close = EV::time },
    );
    ok(run_until(sub { $ev->{close} }, 4), 'on_close fired');
    run_for(0.2);
    is($peer->{close_code}, 1000, 'the peer got the close frame');
    my $waited = ($t_on_close // 0) - ($t_close // 0);
    cmp_ok($waited, '>=', 0.25, sprintf('on_close waited for close_timeout (%.2f s)', $waited));
    cmp_ok($waited, '<',  1.5,  '... and not much longer');
    is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
    is($ev->{close}[0][0], 1006, 'code 1006');
    ok($peer->{eof}, 'the client dropped the TCP connection');
    is($conn->state, 'closed', 'state "closed"');
};

done_testing;
