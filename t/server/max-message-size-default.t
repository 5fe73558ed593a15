# Proves: a server's max_message_size defaults to 16 MiB (listen and adopt), 0
# is unlimited, and a client's default stays unlimited.
# POD: EV::Websockets, "listen", "connect" (max_message_size),
# "Limits and their defaults".
#
# A server's max_message_size defaults to 16 MiB (listen and adopt); 0
# still means unlimited; a client's default stays unlimited.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(60, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

$SIG{PIPE} = 'IGNORE';

my $LIMIT   = 16 * 1024 * 1024;
my $TOO_BIG = 'message exceeds max_message_size';
my $close   = [ opcode => 8, payload => RawPeer::close_payload(1000) ];

# A payload of $n bytes, cheap to build and to compare.
sub payload { my ($n) = @_; return substr('0123456789abcdef' x (($n >> 4) + 1), 0, $n) }

sub lengths { my ($ev) = @_; return [ map { length $_->[0] } @{ $ev->{message} || [] } ] }

# A raw client sending @frames once upgraded, to a listener made with %opt.
sub to_listener {
    my ($opt, @frames) = @_;
    return listen_raw(%$opt, peer => { on_open => sub { $_[0]->send_frame(@$_) for @frames } });
}

# The same to a connection adopted from our own listening socket.
my @keep;
sub to_adopted {
    my ($opt, @frames) = @_;
    my $ev = { ctx => EV::Websockets::Context->new };
    my $listen = IO::Socket::INET->new(
        Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1,
    ) or die "listen: $!";
    push @keep, $listen, EV::io($listen, EV::READ, sub {
        my $sock = $listen->accept or return;
        $ev->{conn} = $ev->{ctx}->adopt(fh => $sock, recording($ev, %$opt));
    });
    my $peer = RawPeer->client(port => $listen->sockport,
        on_open => sub { $_[0]->send_frame(@$_) for @frames });
    return ($peer, $ev);
}

sub refused_ok {
    my ($what, $peer, $ev) = @_;
    ok(run_until(sub { $ev->{close} && $peer->{got_close} }, 5), "$what: closed");
    is_deeply($ev->{error}, [ [$TOO_BIG] ], qq{... on_error "$TOO_BIG"});
    is($ev->{close}[0][0], 1009, '... on_close 1009');
    is($peer->{close_code}, 1009, '... the peer got 1009');
    is($ev->{message}, undef, '... no message');
}

sub delivered_ok {
    my ($what, $peer, $ev, $n) = @_;
    ok(run_until(sub { $ev->{close} }, 20), "$what: received, then the peer closed");
    is_deeply(lengths($ev), [$n], "... the $n-byte message arrived");
    ok(($ev->{message}[0][0] // '') eq payload($n), '... intact');
    is($ev->{error}, undef, '... no error');
    is($ev->{close}[0][0], 1000, '... normal close');
}

# Over the limit: a frame header that claims one byte more is enough, the
# limit is checked on declared lengths.
my $over = [ opcode => 2, payload => '', raw_len => $LIMIT + 1 ];

refused_ok('listen, no max_message_size: 16 MiB + 1', to_listener({}, $over));
refused_ok('listen, max_message_size undef: 16 MiB + 1', to_listener({ max_message_size => undef }, $over));
refused_ok('adopt, no max_message_size: 16 MiB + 1', to_adopted({}, $over));
delivered_ok('listen, no max_message_size: exactly 16 MiB',
    to_listener({}, [ opcode => 2, payload => payload($LIMIT) ], $close), $LIMIT);
delivered_ok('listen, max_message_size 0: 16 MiB + 1 (unlimited)',
    to_listener({ max_message_size => 0 }, [ opcode => 2, payload => payload($LIMIT + 1) ], $close), $LIMIT + 1);
delivered_ok('adopt, max_message_size 0: 16 MiB + 1 (unlimited)',
    to_adopted({ max_message_size => 0 }, [ opcode => 2, payload => payload($LIMIT + 1) ], $close), $LIMIT + 1);
refused_ok('listen, max_message_size 1000: 1001', to_listener({ max_message_size => 1000 },
    [ opcode => 2, payload => payload(1001) ]));

{
    my ($conn, $peer, $ev) = connect_raw(peer => {
        on_open => sub { $_[0]->send_frame(opcode => 2, payload => payload($LIMIT + 1)); $_[0]->send_frame(@$close) },
    });
    delivered_ok('connect, no max_message_size: 16 MiB + 1 (unlimited)', $peer, $ev, $LIMIT + 1);
}

done_testing;
