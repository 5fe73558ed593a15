# Proves: each send method puts the exact frames on the wire, croaks unless
# the connection is open and keeps the UTF-8 rule; send_queue_size counts.
# POD: EV::Websockets, "send", "send_binary", "send_fragment",
# "send_ping, send_pong", "send_queue_size".
#
# send, send_binary, send_ping, send_pong, send_fragment, send_queue_size.
# A raw server peer checks the exact frames.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $NOT_OPEN   = 'Connection is not open';
my $FRAG_OPEN  = 'Cannot send while a fragmented message is in progress; '
               . 'finish the fragment with send_fragment(..., is_final => 1) first';
my $BAD_UTF8   = 'send: text message is not valid UTF-8 (use send_binary for bytes)';

# The croak message of $code->(), or '' if it did not croak.
sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# Each send method, called with arguments that would be fine on an open
# connection.
my %senders = (
    send          => sub { $_[0]->send('x') },
    send_binary   => sub { $_[0]->send_binary('x') },
    send_ping     => sub { $_[0]->send_ping('x') },
    send_pong     => sub { $_[0]->send_pong('x') },
    send_fragment => sub { $_[0]->send_fragment('x', 0, 0) },
);

subtest 'send methods croak "Connection is not open" unless connected' => sub {
    my (%connecting, %closing, %in_on_close);
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $c->close(1000);
            $closing{$_} = croak_of(sub { $senders{$_}->($c) }) for keys %senders;
        },
        on_close => sub {
            my ($c) = @_;
            $in_on_close{$_} = croak_of(sub { $senders{$_}->($c) }) for keys %senders;
        },
    );
    is($conn->state, 'connecting', 'state is "connecting"');
    $connecting{$_} = croak_of(sub { $senders{$_}->($conn) }) for keys %senders;

    ok(run_until(sub { $ev->{close} }), 'connection opened and closed');
    for my $m (sort keys %senders) {
        like($connecting{$m},  qr/^\Q$NOT_OPEN\E at /, "$m croaks while connecting");
        like($closing{$m},     qr/^\Q$NOT_OPEN\E at /, "$m croaks while closing");
        like($in_on_close{$m}, qr/^\Q$NOT_OPEN\E at /, "$m croaks inside on_close");
        like(croak_of(sub { $senders{$m}->($conn) }), qr/^\Q$NOT_OPEN\E at /, "$m croaks when closed");
    }
    is(scalar @{ $ev->{connect} || [] }, 1, 'the croaks while connecting did not stop the connect');
    # Nothing but the close frame reached the peer.
    is_deeply([ $peer->opcodes ], [8], 'the peer received only the close frame');
};

subtest 'send_fragment sequences arrive as one message' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (@got, $server_closed);
    my $port = $ctx->listen(
        port       => 0,
        on_message => sub { push @got, [ @_[1 .. 3] ] },
        on_close   => sub { $server_closed++ },
    );
    my $errors;
    $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c) = @_;
            # text: later $is_binary values are ignored
            $c->send_fragment('te', 0, 0);
            $c->send_fragment('x',  1, 0);
            $c->send_fragment('t',  1, 1);
            # binary: the first frame decides
            $c->send_fragment("\x00\xff", 1, 0);
            $c->send_fragment("\x01",     0, 1);
            # default arguments: a complete text message
            $c->send_fragment('whole');
            $c->close;
        },
        on_error => sub { $errors++ },
    );
    ok(run_until(sub { $server_closed }), 'server saw the connection close');
    is_deeply(\@got, [ [ 'text', 0, 1 ], [ "\x00\xff\x01", 1, 1 ], [ 'whole', 0, 1 ] ],
        'three messages: text "text", binary "\x00\xff\x01", text "whole"');
    ok(!$errors, 'no errors');
};

subtest 'frames of a fragmented send; pings and pongs mid-fragment' => sub {
    my %seen;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $c->send_fragment('a', 0, 0);
            $seen{send}        = croak_of(sub { $c->send('no') });
            $seen{send_binary} = croak_of(sub { $c->send_binary('no') });
            $seen{ping}        = croak_of(sub { $c->send_ping('p') });
            $seen{pong}        = croak_of(sub { $c->send_pong('q') });
            $c->send_fragment('b', 1, 0);    # continuation; $is_binary ignored
            $c->send_fragment('c', 0, 1);
            $seen{after} = croak_of(sub { $c->send('d') });
            $c->send_fragment("\x02", 1, 0);
            $c->send_fragment("\x03", 0, 1);
            $c->send_fragment('x');
            $c->send('x');
        },
    );
    ok(run_until(sub { $peer->frames_of(0, 1, 2) >= 8 }), 'peer received the data frames');
    like($seen{send},        qr/^\Q$FRAG_OPEN\E at /, 'send mid-fragment croaks');
    like($seen{send_binary}, qr/^\Q$FRAG_OPEN\E at /, 'send_binary mid-fragment croaks');
    is($seen{ping}, '', 'send_ping mid-fragment is allowed');
    is($seen{pong}, '', 'send_pong mid-fragment is allowed');
    is($seen{after}, '', 'send works again once the final fragment went out');

    my @frames = map { [ @$_{qw(opcode fin payload)} ] } @{ $peer->{frames} };
    is_deeply(\@frames, [
        [ 1,  0, 'a' ],
        [ 9,  1, 'p' ],
        [ 10, 1, 'q' ],
        [ 0,  0, 'b' ],
        [ 0,  1, 'c' ],
        [ 1,  1, 'd' ],
        [ 2,  0, "\x02" ],
        [ 0,  1, "\x03" ],
        [ 1,  1, 'x' ],
        [ 1,  1, 'x' ],
    ], 'frames on the wire: opcode, FIN and payload in order');
    is(scalar(grep { $_->{rsv} } @{ $peer->{frames} }), 0, 'no RSV bits set');
    is(scalar(grep { !$_->{masked} } @{ $peer->{frames} }), 0, 'every client frame is masked');
    is_deeply([ $peer->messages ], [ [ 1, 'abc' ], [ 1, 'd' ], [ 2, "\x02\x03" ], [ 1, 'x' ], [ 1, 'x' ] ],
        'send_fragment("x") is the same as send("x")');
    is_deeply($ev->{error}, undef, 'no errors');
};

subtest 'ping and pong payloads' => sub {
    my (%croak, @sent);
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            # [ name, opcode, call, payload expected on the wire ]
            my @calls = (
                [ 'send_ping()',           9,  sub { $c->send_ping },           '' ],
                [ 'send_ping(undef)',      9,  sub { $c->send_ping(undef) },    '' ],
                [ 'send_ping("")',         9,  sub { $c->send_ping('') },       '' ],
                [ 'send_ping(125 bytes)',  9,  sub { $c->send_ping('p' x 125) }, 'p' x 125 ],
                [ 'send_ping(126 bytes)',  9,  sub { $c->send_ping('P' x 126) }, 'P' x 125 ],
                [ 'send_ping(1000 bytes)', 9,  sub { $c->send_ping('Q' x 1000) }, 'Q' x 125 ],
                [ 'send_pong()',           10, sub { $c->send_pong },           '' ],
                [ 'send_pong(undef)',      10, sub { $c->send_pong(undef) },    '' ],
                [ 'send_pong(125 bytes)',  10, sub { $c->send_pong('o' x 125) }, 'o' x 125 ],
                [ 'send_pong(200 bytes)',  10, sub { $c->send_pong('O' x 200) }, 'O' x 125 ],
            );
            for my $call (@calls) {
                $croak{ $call->[0] } = croak_of($call->[2]);
                push @sent, $call unless $croak{ $call->[0] };
            }
            $c->send('end');    # everything before it is on the wire when it arrives
        },
    );
    ok(run_until(sub { $peer->messages }), 'peer received the closing text message');
    is($croak{$_}, '', "$_ does not croak") for sort keys %croak;
    # Payload checks cover the calls that did not croak (a croak fails above).
    for my $op (9, 10) {
        my $what = $op == 9 ? 'pings' : 'pongs';
        is_deeply([ map { $_->{payload} } $peer->frames_of($op) ],
            [ map { $_->[3] } grep { $_->[1] == $op } @sent ],
            "$what: no payload and undef are empty, longer payloads cut to 125 bytes");
    }
    is(scalar(grep { !$_->{fin} } $peer->frames_of(9, 10)), 0, 'every control frame has FIN');
    is($conn->state, 'connected', 'connection still open');
};

subtest 'UTF-8 rules for text' => sub {
    my $wide = "caf\x{e9} \x{263a} \x{1F600}";
    my %seen;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $seen{ff}       = croak_of(sub { $c->send("\xff") });
            $seen{overlong} = croak_of(sub { $c->send("a\xc0\xafb") });
            $seen{cut}      = croak_of(sub { $c->send("caf\xc3") });
            $seen{binary}   = croak_of(sub { $c->send_binary("\xff") });
            $seen{wide}     = croak_of(sub { $c->send($wide) });
            # a character split across fragments is fine
            $seen{split1} = croak_of(sub { $c->send_fragment("caf\xc3", 0, 0) });
            $seen{split2} = croak_of(sub { $c->send_fragment("\xa9!", 0, 1) });
            # a sequence that is invalid as a whole is not
            $seen{bad1} = croak_of(sub { $c->send_fragment("ab\xe2\x98", 0, 0) });
            $seen{bad2} = croak_of(sub { $c->send_fragment('x', 0, 1) });
        },
    );
    ok(run_until(sub { $peer->frames_of(1, 2) >= 3 }), 'peer received the accepted messages');
    run_for(0.1);
    like($seen{ff},       qr/^\Q$BAD_UTF8\E at /, 'send("\xff") croaks');
    like($seen{overlong}, qr/^\Q$BAD_UTF8\E at /, 'send of an overlong encoding croaks');
    like($seen{cut},      qr/^\Q$BAD_UTF8\E at /, 'send of a truncated character croaks');
    is($seen{binary}, '', 'send_binary("\xff") is fine');
    is($seen{wide},   '', 'send of a wide-character string is fine');
    is($seen{split1}, '', 'send_fragment: first half of a character accepted');
    is($seen{split2}, '', 'send_fragment: second half of the character accepted');
    is($seen{bad1},   '', 'send_fragment: a prefix that could still become valid is accepted');
    like($seen{bad2}, qr/^\Q$BAD_UTF8\E at /,
        'send_fragment: the fragment that makes the message invalid croaks');

    my $wide_bytes = $wide;
    utf8::encode($wide_bytes);
    my @msgs = $peer->messages;
    is_deeply($msgs[0], [ 2, "\xff" ], 'first message on the wire: binary "\xff"');
    is_deeply($msgs[1], [ 1, $wide_bytes ], 'second: the wide string as UTF-8 text');
    is_deeply($msgs[2], [ 1, "caf\xc3\xa9!" ], 'third: the split character reassembled');
    ok(utf8::is_utf8($wide), 'the caller\'s wide string is untouched');
    is(scalar(grep { $_->{payload} =~ /\xff/ && $_->{opcode} == 1 } @{ $peer->{frames} }), 0,
        'no rejected text reached the wire');
};

subtest 'send_queue_size' => sub {
    my %seen;
    my ($conn, $peer, $ev) = connect_raw(
        on_connect => sub {
            my ($c) = @_;
            $seen{before} = $c->send_queue_size;
            $c->send('t' x 1000);
            $seen{after_send} = $c->send_queue_size;
            $c->send_binary('b' x 500);
            $seen{after_binary} = $c->send_queue_size;
            $c->send_fragment('f' x 20, 0, 0);
            $c->send_fragment('g' x 30, 0, 1);
            $seen{after_fragments} = $c->send_queue_size;
        },
        on_drain => sub { $seen{in_drain} = $_[0]->send_queue_size },
    );
    ok(run_until(sub { $ev->{drain} && $peer->messages >= 3 }), 'messages were written and received');
    is($seen{before},          0,    'send_queue_size is 0 before anything is sent');
    is($seen{after_send},      1000, 'rises by the payload size at once on send');
    is($seen{after_binary},    1500, '... and on send_binary');
    is($seen{after_fragments}, 1550, '... and on send_fragment');
    is($seen{in_drain},        0,    'is 0 inside on_drain');
    is($conn->send_queue_size, 0,    'is 0 once everything was written');

    $conn->close;
    ok(run_until(sub { $ev->{close} }), 'connection closed');
    my $size = eval { $conn->send_queue_size };
    is($@, '', 'send_queue_size does not croak after close');
    is($size, 0, '... and is 0');
};

subtest 'send_queue_size of a connection that never opened' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $dead = closed_port();
    my $err;
    my $conn = $ctx->connect(url => "ws://127.0.0.1:$dead/", on_error => sub { $err++ });
    is($conn->send_queue_size, 0, '0 while connecting');
    ok(run_until(sub { $err }), 'connection failed');
    my $size = eval { $conn->send_queue_size };
    is($@, '', 'no croak once closed');
    is($size, 0, '... and it is 0');
};

done_testing;
