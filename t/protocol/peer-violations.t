# Proves: every protocol violation by the peer closes that connection with
# 1002 (1007 for bad UTF-8) after on_error, and leaves the others alone.
# POD: EV::Websockets, "on_error messages" (protocol error) and "on_close".
#
# Protocol violations by the peer (RFC 6455): a raw
# client against our server, and a raw server against our client.  Each
# violation must close that connection with 1002 (or 1007 for bad UTF-8),
# seen by the raw peer, after on_error and then on_close(<code>) on our side,
# and leave other connections alone.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $close = sub { RawPeer::close_payload(@_) };

# [ name, sides ('client' = raw client vs our server, 'server' = raw server
#   vs our client), expected code, frames to send: [ %send_frame args ], or
#   a string of raw bytes ]
my @cases = (
    [ 'unmasked client frame',   'client', 1002, [ payload => 'x', mask => 0 ] ],
    [ 'masked server frame',     'server', 1002, [ payload => 'x', mask => 1 ] ],
    [ 'RSV1 set',                'both',   1002, [ payload => 'x', rsv => 4 ] ],
    [ 'RSV2 set',                'both',   1002, [ payload => 'x', rsv => 2 ] ],
    [ 'RSV3 set',                'both',   1002, [ payload => 'x', rsv => 1 ] ],
    [ 'RSV1 on a ping',          'both',   1002, [ opcode => 9, rsv => 4 ] ],
    [ 'reserved opcode 3',       'both',   1002, [ opcode => 3, payload => 'x' ] ],
    [ 'reserved opcode 0xB',     'both',   1002, [ opcode => 0xB, payload => 'x' ] ],
    [ 'continuation without a start', 'both', 1002, [ opcode => 0, payload => 'x' ] ],
    [ 'text frame inside a fragmented message', 'both', 1002,
        [ opcode => 1, fin => 0, payload => 'a' ], [ opcode => 1, payload => 'b' ] ],
    [ 'binary frame inside a fragmented message', 'both', 1002,
        [ opcode => 2, fin => 0, payload => 'a' ], [ opcode => 2, payload => 'b' ] ],
    [ 'fragmented ping',         'both',   1002, [ opcode => 9, fin => 0, payload => 'p' ] ],
    [ 'ping with a 126-byte payload', 'both', 1002, [ opcode => 9, payload => 'p' x 126 ] ],
    [ 'pong with a 126-byte payload', 'both', 1002, [ opcode => 10, payload => 'p' x 126 ] ],
    [ 'close with a 1-byte payload',  'both', 1002, [ opcode => 8, payload => "\x03" ] ],
    (map { [ "close with invalid code $_", 'both', 1002, [ opcode => 8, payload => $close->($_) ] ] }
        999, 1005, 1006, 5000),
    [ 'invalid UTF-8 text "\xff"', 'both', 1007, [ payload => "\xff" ] ],
    [ 'overlong UTF-8 text',       'both', 1007, [ payload => "a\xc0\xafb" ] ],
    [ 'invalid UTF-8 across fragments', 'both', 1007,
        [ opcode => 1, fin => 0, payload => "ok\xc3" ], [ opcode => 0, payload => '(' ] ],
    [ 'invalid UTF-8 in a close reason', 'both', 1007,
        [ opcode => 8, payload => $close->(1000, "bye\xff") ] ],
    # RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
    [ 'masked frame length over 2^63', 'client', 1002, pack('C C N N a4', 0x82, 0x80 | 127, 0x8000_0000, 5, 'mask') ],
    [ 'frame length over 2^63',        'server', 1002, pack('C C N N', 0x82, 127, 0x8000_0000, 5) ],
);

# Send a case's frames.
sub send_case {
    my ($peer, @frames) = @_;
    ref $_ ? $peer->send_frame(@$_) : $peer->send_raw($_) for @frames;
}

# What our side must have seen: on_connect, on_error, on_close(code).
sub check_our_side {
    my ($label, $ev, $code) = @_;
    is_deeply($ev->{order}, [qw(connect error close)], "$label: on_error, then on_close")
        or diag(explain($ev->{order}));
    ok(defined $ev->{error}[0][0] && length $ev->{error}[0][0], "$label: on_error has a message");
    is($ev->{close}[0][0], $code, "$label: on_close got $code");
}

sub check_peer {
    my ($label, $peer, $code) = @_;
    is($peer->{close_code}, $code, "$label: the raw peer got close code $code");
    is(scalar $peer->frames_of(8), 1, "$label: ... in one close frame");
    is_deeply([ $peer->frames_of(1, 2, 0) ], [], "$label: ... and no data frame");
    ok($peer->{eof}, "$label: ... and the TCP connection was closed");
}

subtest 'raw client against our server' => sub {
    my $ctx = EV::Websockets::Context->new;
    my %ev;    # case index => recorded events of the server connection
    my $port = echo_server($ctx,
        on_connect => sub {
            my ($c, $h) = @_;
            my ($i) = $h->{Path} =~ m{^/case/(\d+)\z} or return;
            $c->stash->{case} = $i;
            push @{ $ev{$i}{order} }, 'connect';
        },
        on_error => sub {
            my $i = $_[0]->stash->{case} // return;
            push @{ $ev{$i}{error} }, [ $_[1] ];
            push @{ $ev{$i}{order} }, 'error';
        },
        on_close => sub {
            my $i = $_[0]->stash->{case} // return;
            push @{ $ev{$i}{close} }, [ @_[1, 2] ];
            push @{ $ev{$i}{order} }, 'close';
        },
    );

    # A well-behaved client that stays connected throughout.
    my %bystander;
    my $bystander = $ctx->connect(url => "ws://127.0.0.1:$port/", recording(\%bystander));
    ok(run_until(sub { $bystander{connect} }), 'a normal client connected');

    my @peers;
    for my $i (0 .. $#cases) {
        my ($name, $side, $code, @frames) = @{ $cases[$i] };
        next if $side eq 'server';
        $peers[$i] = RawPeer->client(
            port    => $port,
            path    => "/case/$i",
            on_open => sub { send_case($_[0], @frames) },
        );
    }
    my @active = grep { $peers[$_] } 0 .. $#cases;
    ok(run_until(sub { !grep { !($peers[$_]{eof} && $ev{$_}{close}) } @active }),
        'every violating connection was closed');
    run_for(0.2);    # late or repeated callbacks would show up here

    for my $i (@active) {
        my ($name, undef, $code) = @{ $cases[$i] };
        subtest $name => sub {
            check_peer($name, $peers[$i], $code);
            check_our_side($name, $ev{$i} || {}, $code);
        };
    }

    $bystander->send('still here');
    my %fresh;
    $ctx->connect(
        url => "ws://127.0.0.1:$port/",
        recording(\%fresh, on_connect => sub { $_[0]->send('new one') }),
    );
    ok(run_until(sub { $bystander{message} && $fresh{message} }), 'other clients still get echoes');
    is_deeply($bystander{message}, [ [ 'still here', 0, 1 ] ], 'the connected client got its echo');
    is_deeply($fresh{message},     [ [ 'new one', 0, 1 ] ],    'a new client got its echo');
    is($bystander{error}, undef, 'the connected client saw no error');
    is($bystander{close}, undef, '... and was not closed');
};

subtest 'raw server against our client' => sub {
    my $ctx = EV::Websockets::Context->new;

    # A connection of the same context to a well-behaved server.
    my $sctx = EV::Websockets::Context->new;
    my $echo_port = echo_server($sctx);
    my %bystander;
    my $bystander = $ctx->connect(url => "ws://127.0.0.1:$echo_port/", recording(\%bystander));
    ok(run_until(sub { $bystander{connect} }), 'a normal connection is open');

    my (@peers, @ev, @conns);
    for my $i (0 .. $#cases) {
        my ($name, $side, $code, @frames) = @{ $cases[$i] };
        next if $side eq 'client';
        $peers[$i] = RawPeer->server(on_open => sub { send_case($_[0], @frames) });
        $ev[$i]    = {};
        $conns[$i] = $ctx->connect(url => 'ws://127.0.0.1:' . $peers[$i]->port . '/', recording($ev[$i]));
    }
    my @active = grep { $peers[$_] } 0 .. $#cases;
    ok(run_until(sub { !grep { !($peers[$_]{eof} && $ev[$_]{close}) } @active }),
        'every violating connection was closed');
    run_for(0.2);

    for my $i (@active) {
        my ($name, undef, $code) = @{ $cases[$i] };
        subtest $name => sub {
            check_peer($name, $peers[$i], $code);
            check_our_side($name, $ev[$i], $code);
            is($conns[$i]->state, 'closed', "$name: state is \"closed\"");
        };
    }

    $bystander->send('still here');
    ok(run_until(sub { $bystander{message} }), 'the normal connection still gets echoes');
    is_deeply($bystander{message}, [ [ 'still here', 0, 1 ] ], '... its echo');
    is($bystander{error}, undef, '... no error');
    is($bystander{close}, undef, '... not closed');
};

done_testing;
