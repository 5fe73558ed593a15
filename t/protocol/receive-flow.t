# Proves: pause_recv and resume_recv hold messages and close frames back,
# pings are answered, on_pong fires, fragments around control frames
# reassemble.
# POD: EV::Websockets, "pause_recv, resume_recv", "on_message", "on_pong".
#
# Receiving: pause_recv/resume_recv, automatic pongs, on_pong, reassembly
# around control frames, empty messages, bytes-only data.  Every check runs
# on both our server (against a raw client) and our client (against a raw
# server).
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# Our endpoint of a given kind with %opt; the raw peer runs $on_open->($peer)
# once upgraded.  Returns ($peer, $ev).
sub pair {
    my ($side, $on_open, %opt) = @_;
    my @r = ($side eq 'server' ? \&listen_raw : \&connect_raw)->(%opt, peer => { on_open => $on_open });
    return @r[-2, -1];
}

# The bytes of several frames, to go out in one write.
sub frames {
    my ($peer, @frames) = @_;
    return join '', map { $peer->frame(@$_) } @frames;
}

for my $side (qw(server client)) {
    my $who = $side eq 'server' ? 'our server' : 'our client';

    subtest "$who: pause_recv holds back buffered messages until resume_recv" => sub {
        my (%seen, $timer);
        my ($peer, $ev);
        ($peer, $ev) = pair($side,
            sub { $_[0]->send_raw(frames($_[0], map { [ payload => "m$_" ] } 1 .. 3)) },
            on_message => sub {
                my ($c) = @_;
                return unless @{ $ev->{message} } == 1;
                $c->pause_recv;
                $seen{state_paused} = $c->state;
                $timer = EV::timer(0.3, 0, sub {
                    $seen{count_while_paused} = scalar @{ $ev->{message} };
                    $seen{resumed_at} = EV::now;
                    $c->resume_recv;
                });
            },
        );
        ok(run_until(sub { $ev->{message} && @{ $ev->{message} } == 3 }, 3), 'all three messages arrived');
        is($seen{count_while_paused}, 1, 'nothing was delivered for 0.3 s while paused');
        is($seen{state_paused}, 'connected', 'pausing does not change the state');
        is_deeply([ map { $_->[0] } @{ $ev->{message} } ], [qw(m1 m2 m3)], 'then the other two, in order');
        is_deeply($ev->{order}, [qw(connect message message message)], 'no other callbacks');
    };

    subtest "$who: a close frame behind paused messages waits too" => sub {
        my ($timer, $count_while_paused, $closed_while_paused);
        my ($peer, $ev);
        ($peer, $ev) = pair($side,
            sub {
                $_[0]->send_raw(frames($_[0], (map { [ payload => "m$_" ] } 1 .. 3),
                    [ opcode => 8, payload => RawPeer::close_payload(4000, 'end') ]));
            },
            on_message => sub {
                my ($c) = @_;
                return unless @{ $ev->{message} } == 1;
                $c->pause_recv;
                $timer = EV::timer(0.3, 0, sub {
                    $count_while_paused  = scalar @{ $ev->{message} };
                    $closed_while_paused = $ev->{close} ? 1 : 0;
                    $c->resume_recv;
                });
            },
        );
        ok(run_until(sub { $ev->{close} }, 3), 'connection closed');
        is($count_while_paused, 1, 'no message delivered while paused');
        is($closed_while_paused, 0, 'no on_close while paused');
        is_deeply($ev->{order}, [qw(connect message message message close)],
            'after resume_recv: the two messages, then on_close');
        is_deeply($ev->{close}, [ [ 4000, 'end' ] ], 'on_close(4000, "end")');
    };

    subtest "$who: close() while paused still reads the peer's close frame" => sub {
        my ($peer, $ev);
        ($peer, $ev) = pair($side, sub { },
            on_connect => sub { $_[0]->pause_recv; $_[0]->close(1000, 'bye') },
        );
        # The default close_timeout (5 s) would end a handshake that cannot
        # complete with 1006.
        ok(run_until(sub { $ev->{close} }, 2), 'on_close came before the close timeout');
        is($ev->{close}[0][0], 1000, "on_close has the peer's answer (its code)");
        is($peer->{close_code}, 1000, 'the peer got our close frame');
    };

    subtest "$who: incoming pings are answered with the same payload" => sub {
        my @payloads = ('', 'abc', "\x00\xff", 'z' x 125);
        my ($peer, $ev) = pair($side,
            sub { my ($p) = @_; $p->send_frame(opcode => 9, payload => $_) for @payloads; $p->send_frame(payload => 'done') },
        );
        ok(run_until(sub { $ev->{message} && $peer->frames_of(10) >= @payloads }), 'pongs came back');
        run_for(0.1);
        is_deeply([ map { $_->{payload} } $peer->frames_of(10) ], \@payloads, 'one pong per ping, same payloads, in order');
        is(scalar(grep { !$_->{fin} } $peer->frames_of(10)), 0, 'pongs have FIN set');
        is_deeply($ev->{order}, [qw(connect message)], 'pings fire no callback (no on_pong, no on_message)');
    };

    subtest "$who: on_pong fires for every pong" => sub {
        my ($peer, $ev);
        ($peer, $ev) = pair($side,
            sub {
                my ($p) = @_;
                $p->send_frame(opcode => 10, payload => 'unsolicited');
                $p->send_frame(opcode => 10, payload => '');
            },
            on_pong => sub {
                my ($c) = @_;
                # after the two unsolicited ones, ask for two more
                if (@{ $ev->{pong} } == 2) { $c->send_ping('p1'); $c->send_ping('p2') }
            },
        );
        ok(run_until(sub { $ev->{pong} && @{ $ev->{pong} } >= 4 }), 'four pongs');
        run_for(0.1);
        is_deeply($ev->{pong}, [ ['unsolicited'], [''], ['p1'], ['p2'] ], 'on_pong got each payload, in order');
        is_deeply([ map { $_->{payload} } $peer->frames_of(9) ], [qw(p1 p2)], 'the peer got our two pings');
    };

    subtest "$who: fragments with control frames in between are reassembled" => sub {
        my ($peer, $ev) = pair($side,
            sub {
                my ($p) = @_;
                $p->send_raw(frames($p,
                    [ opcode => 1, fin => 0, payload => 'fr' ],
                    [ opcode => 9, payload => 'ping-in-between' ],
                    [ opcode => 0, fin => 0, payload => 'ag' ],
                    [ opcode => 10, payload => 'pong-in-between' ],
                    [ opcode => 0, fin => 0, payload => '' ],
                    [ opcode => 0, fin => 1, payload => 'ment' ],
                    [ opcode => 2, fin => 0, payload => "\x01" ],
                    [ opcode => 9, payload => 'second' ],
                    [ opcode => 0, fin => 1, payload => "\x02" ],
                ));
            },
        );
        ok(run_until(sub { $ev->{message} && @{ $ev->{message} } == 2 }), 'two messages');
        run_for(0.1);
        is_deeply($ev->{message}, [ [ 'fragment', 0, 1 ], [ "\x01\x02", 1, 1 ] ],
            'text "fragment" and binary "\x01\x02", with is_final 1');
        is_deeply($ev->{pong}, [ ['pong-in-between'] ], 'the pong in between reached on_pong');
        is_deeply([ map { $_->{payload} } $peer->frames_of(10) ], [qw(ping-in-between second)],
            'the pings in between were answered');
        is_deeply($ev->{order}, [qw(connect pong message message)], 'callback order');
    };

    subtest "$who: empty messages and bytes-only data" => sub {
        my @flags;
        my ($peer, $ev) = pair($side,
            sub {
                my ($p) = @_;
                $p->send_raw(frames($p,
                    [ opcode => 1, payload => '' ],
                    [ opcode => 2, payload => '' ],
                    [ opcode => 1, fin => 0, payload => '' ],
                    [ opcode => 0, fin => 1, payload => '' ],
                    [ opcode => 1, payload => "caf\xc3\xa9 \xe2\x98\xba" ],
                    [ opcode => 2, payload => "\xc3\xa9\xff" ],
                ));
            },
            on_message => sub { push @flags, utf8::is_utf8($_[1]) ? 1 : 0 },
        );
        ok(run_until(sub { $ev->{message} && @{ $ev->{message} } >= 5 }), 'five messages');
        run_for(0.1);
        is(scalar @{ $ev->{message} }, 5, '... and no more');
        is_deeply([ @{ $ev->{message} }[ 0 .. 2 ] ], [ [ '', 0, 1 ], [ '', 1, 1 ], [ '', 0, 1 ] ],
            'empty text, empty binary and an empty fragmented message deliver ""');
        ok(defined $ev->{message}[0][0], '... defined, not undef');
        ok(($ev->{message}[3][0] // '') eq "caf\xc3\xa9 \xe2\x98\xba", 'text arrives as its UTF-8 bytes');
        ok(($ev->{message}[4][0] // '') eq "\xc3\xa9\xff", 'binary arrives as its bytes');
        is_deeply(\@flags, [ (0) x 5 ], '$data is never UTF-8 flagged');
    };
}

subtest 'pause_recv and resume_recv on connections that are not open' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $dead = closed_port();
    my $err;
    my $failed = $ctx->connect(url => "ws://127.0.0.1:$dead/", on_error => sub { $err++ });
    ok(run_until(sub { $err }), 'a connection that failed');
    ok(eval { $failed->pause_recv; $failed->resume_recv; 1 }, 'pause/resume on it do not croak');
    is($failed->state, 'closed', '... and it stays "closed"');

    # While connecting it is a no-op too: the connection does not start paused.
    my ($conn, $peer, $ev) = connect_raw(peer => { on_open => sub { $_[0]->send_frame(payload => 'hello') } });
    ok(eval { $conn->pause_recv; 1 }, 'pause_recv while connecting does not croak');
    ok(run_until(sub { $ev->{message} }, 2), 'the message still arrives: the pause was ignored');
    is($conn->state, 'connected', 'connected');

    $conn->close;
    ok(run_until(sub { $ev->{close} }), 'closed');
    ok(eval { $conn->pause_recv; $conn->resume_recv; $conn->pause_recv; 1 }, 'pause/resume after close do not croak');
    is($conn->state, 'closed', 'state still "closed"');
    is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
};

done_testing;
