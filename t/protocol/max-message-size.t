# Proves: max_message_size: the limit passes, one byte more fails with 1009,
# for whole, fragmented and announced messages; 0 is unlimited.
# POD: EV::Websockets, "connect" and "listen" (max_message_size),
# "on_error messages".
#
# max_message_size and large messages.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $TOO_BIG = 'message exceeds max_message_size';

# Our server (listen) or our client (connect) with the options in %$opt;
# the raw peer at the other end sends @frames (lists of send_frame
# arguments) once upgraded.  Returns ($peer, \%ev).
sub raw_client_case { return raw_case(\&listen_raw, @_) }
sub raw_server_case { return raw_case(\&connect_raw, @_) }

sub raw_case {
    my ($make, $opt, @frames) = @_;
    my @r = $make->(
        %$opt,
        peer => { on_open => sub { my ($p) = @_; $p->send_frame(@$_) for @frames } },
    );
    return @r[-2, -1];    # ($peer, $ev)
}

# Lengths of the messages received, in order.
sub lengths { return [ map { length $_->[0] } @{ $_[0]{message} || [] } ] }

for my $side (qw(server client)) {
    my $case = $side eq 'server' ? \&raw_client_case : \&raw_server_case;
    my $who  = $side eq 'server' ? 'our server' : 'our client';

    subtest "$who: exactly the limit passes, one byte more fails" => sub {
        my ($peer, $ev) = $case->({ max_message_size => 1000 },
            [ opcode => 2, payload => 'a' x 1000 ],
            [ opcode => 2, payload => 'b' x 1001 ],
            [ opcode => 2, payload => 'never delivered' ],
        );
        ok(run_until(sub { $ev->{close} && $peer->{got_close} }), 'connection closed');
        run_for(0.2);
        is_deeply(lengths($ev), [1000], 'the 1000-byte message was delivered, nothing else');
        ok($ev->{message}[0][0] eq 'a' x 1000, '... intact');
        is_deeply($ev->{error}, [ [$TOO_BIG] ], qq{on_error "$TOO_BIG" once});
        is_deeply($ev->{order}, [qw(connect message error close)], 'then on_close');
        is($ev->{close}[0][0], 1009, 'on_close got 1009');
        is(scalar @{ $ev->{close} }, 1, 'on_close fired once');
        is($peer->{close_code}, 1009, 'the peer got close code 1009');
    };

    subtest "$who: a fragmented message at and over the limit" => sub {
        my ($peer, $ev) = $case->({ max_message_size => 1000 },
            [ opcode => 1, fin => 0, payload => 'a' x 500 ],
            [ opcode => 0, fin => 1, payload => 'b' x 500 ],
            [ opcode => 1, fin => 0, payload => 'c' x 600 ],
            [ opcode => 0, fin => 0, payload => 'd' x 300 ],
            [ opcode => 0, fin => 0, payload => 'e' x 101 ],
            [ opcode => 0, fin => 1, payload => 'f' ],
        );
        ok(run_until(sub { $ev->{close} && $peer->{got_close} }), 'connection closed');
        run_for(0.2);
        is_deeply(lengths($ev), [1000], 'the 1000-byte fragmented message was delivered');
        ok(($ev->{message}[0][0] // '') eq 'a' x 500 . 'b' x 500, '... reassembled');
        is_deeply($ev->{error}, [ [$TOO_BIG] ], qq{the 1001-byte one: on_error "$TOO_BIG"});
        is_deeply($ev->{order}, [qw(connect message error close)], 'then on_close');
        is($ev->{close}[0][0], 1009, 'on_close got 1009');
        is($peer->{close_code}, 1009, 'the peer got close code 1009');
    };

    subtest "$who: a header claiming 100 MB fails at once" => sub {
        my $t0;
        my ($peer, $ev) = $case->({ max_message_size => 1 << 20 },
            [ opcode => 2, payload => '', raw_len => 100_000_000 ]);
        $t0 = EV::time;
        ok(run_until(sub { $ev->{close} && $peer->{got_close} }, 3), 'connection closed');
        cmp_ok(EV::time - $t0, '<', 1, 'without waiting for the payload');
        is_deeply($ev->{error}, [ [$TOO_BIG] ], qq{on_error "$TOO_BIG"});
        is($ev->{close}[0][0], 1009, 'on_close got 1009');
        is($peer->{close_code}, 1009, 'the peer got close code 1009');
        is($ev->{message}, undef, 'no message');
    };

    subtest "$who: max_message_size 0 is unlimited" => sub {
        my $big = pack('N', 0xdeadbeef) x (5_000_000 / 4);
        my ($peer, $ev) = $case->({ max_message_size => 0 },
            [ opcode => 2, payload => $big ],
            [ opcode => 8, payload => RawPeer::close_payload(1000) ],
        );
        ok(run_until(sub { $ev->{close} }), 'message received, then the peer closed');
        is_deeply(lengths($ev), [5_000_000], 'the 5 MB message arrived in one piece');
        ok(($ev->{message}[0][0] // '') eq $big, '... intact');
        is($ev->{error}, undef, 'no error');
        is($ev->{close}[0][0], 1000, 'normal close');
    };

    subtest "$who: 256 KiB and 3 MiB messages arrive whole" => sub {
        my $text = join('', map { chr(65 + $_ % 26) } 0 .. 1023) x 256;    # 256 KiB
        my $bin  = join('', map { pack 'N', $_ } 0 .. (3 << 18) - 1);       # 3 MiB
        my $frag = $bin;
        my @pieces = map { substr($frag, $_ * 65536, 65536) } 0 .. 47;       # 48 x 64 KiB
        my ($peer, $ev) = $case->({},
            [ opcode => 1, payload => $text ],
            [ opcode => 2, payload => $bin ],
            (map { [ opcode => ($_ ? 0 : 2), fin => ($_ == 47 ? 1 : 0), payload => $pieces[$_] ] } 0 .. 47),
            [ opcode => 8, payload => RawPeer::close_payload(1000) ],
        );
        ok(run_until(sub { $ev->{close} }), 'messages received, then the peer closed');
        is_deeply(lengths($ev), [ 256 << 10, 3 << 20, 3 << 20 ], 'three messages of the right sizes');
        ok(($ev->{message}[0][0] // '') eq $text, '256 KiB text intact');
        is($ev->{message}[0][1], 0, '... and text');
        ok(($ev->{message}[1][0] // '') eq $bin, '3 MiB binary intact');
        is($ev->{message}[1][1], 1, '... and binary');
        ok(($ev->{message}[2][0] // '') eq $bin, '3 MiB in 48 fragments intact');
        is($ev->{message}[2][1], 1, '... and binary');
        is($ev->{error}, undef, 'no error');
    };
}

subtest 'large messages between our own client and server' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx);
    my $big  = join('', map { pack 'N', $_ * 7 } 0 .. (3 << 18) - 1);
    my %ev;
    my $conn = $ctx->connect(
        url => "ws://127.0.0.1:$port/",
        recording(\%ev,
            on_connect => sub { $_[0]->send_binary($big); $_[0]->send('x' x (256 << 10)) },
            on_message => sub { $_[0]->close if @{ $ev{message} } == 2 },
        ),
    );
    ok(run_until(sub { $ev{close} }), 'both echoes came back');
    is_deeply([ map { length $_->[0] } @{ $ev{message} } ], [ 3 << 20, 256 << 10 ], 'sizes');
    ok($ev{message}[0][0] eq $big, '3 MiB echo intact');
};

done_testing;
