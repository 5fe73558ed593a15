package SampleMessages;

# The sample messages the interoperability tests send to a peer that
# echoes them (t/interop/python-deflate.t, t/interop/node.t), how to send
# one, and what their size on the wire says about compression.
#
#     use SampleMessages;
#     my @MESSAGES = sample_messages($seed,
#         'the same 2000 bytes again' => sub { fragmented('fragmented text', 0, @pieces) },
#     );
#     send_message($conn, $_) for @MESSAGES;
#     my $r = echo_client($port, \@MESSAGES, ...);    # or all at once
#     echoes_intact($r, $name, \@MESSAGES, 1, 'plus the answer');
#
# A message is [ name, payload, is_binary, fragments ]: with fragments (a
# list), it goes out through send_fragment in those pieces, and the payload
# (their concatenation) is what must come back.

use strict;
use warnings;

use Test::More ();
use EV::Websockets;
use TestWS qw(run_until messages_match);
use Exporter 'import';

our @EXPORT = qw(sample_messages fragmented random_bytes send_message send_sample wire_size_ok
    echo_client echoes_intact);

my $MiB = 1 << 20;

# $n random bytes ($n a multiple of 4), from rand.
sub random_bytes {
    my ($n) = @_;
    return pack('N*', map { int rand 2**32 } 1 .. $n / 4);
}

# A fragmented message named $name made of @pieces.
sub fragmented {
    my ($name, $binary, @pieces) = @_;
    return [ $name, join('', @pieces), $binary, \@pieces ];
}

# The messages every peer gets, in order, after srand($seed): text, binary,
# empties, UTF-8, 1 MiB of compressible text, 1 MiB of random bytes, 2000
# random bytes sent twice (with context takeover the second copy is a
# reference into the first, so an inflater that lost the context shows),
# a fragmented binary message.  %after adds a test's own cases: after the
# message named <name>, the messages <name> => sub returns, called right
# there (so that what it draws from rand comes in that order).
sub sample_messages {
    my ($seed, %after) = @_;
    srand($seed);
    my $again;
    my @common = (
        sub { [ 'text',                    'hello',                0 ] },
        sub { [ 'binary',                  "\x00\x01\x02\xfe\xff", 1 ] },
        sub { [ 'empty text',              '',                     0 ] },
        sub { [ 'empty binary',            '',                     1 ] },
        sub { [ 'UTF-8 text',              "caf\xc3\xa9 \xe2\x98\xba \xf0\x9f\x98\x80", 0 ] },
        sub { [ '1 MiB compressible text', substr('All work and no play makes Jack a dull boy. ' x 30000, 0, $MiB), 0 ] },
        sub { [ '1 MiB random binary',     random_bytes($MiB),     1 ] },
        sub { [ '2000 random bytes',       $again = random_bytes(2000), 1 ] },
        sub { [ 'the same 2000 bytes again', $again,               1 ] },
        sub { fragmented('fragmented binary', 1, 'x' x 100_000, 'y' x 100_000, 'z') },
    );
    my @messages;
    for my $make (@common) {
        my $m = $make->();
        push @messages, $m;
        push @messages, $after{ $m->[0] }->() if $after{ $m->[0] };
    }
    return @messages;
}

# Send $payload on $conn as one message, binary if $binary; or, given
# $fragments (a list), through send_fragment in those pieces.
sub send_sample {
    my ($conn, $payload, $binary, $fragments) = @_;
    if ($fragments) {
        $conn->send_fragment($fragments->[$_], $binary, $_ == $#$fragments) for 0 .. $#$fragments;
    }
    else {
        $binary ? $conn->send_binary($payload) : $conn->send($payload);
    }
}

# Send message $m ([ name, payload, is_binary, fragments ]) on $conn.
sub send_message {
    my ($conn, $m) = @_;
    send_sample($conn, @$m[ 1 .. 3 ]);
}

# Connect a client to the echo server on 127.0.0.1:$port with %opt, send
# @$messages once connected, and run the loop until the connection closed
# (or failed before connecting), at most 15 s.  on_connect and on_message
# in %opt run after the sending and the recording, as ($conn, $r).
# Returns $r, a hash ref: headers (on_connect's), got ([data, is_binary]
# of each message), pongs (on_pong payloads), errors, close ([code,
# reason] of each on_close), state (at the end).
sub echo_client {
    my ($port, $messages, %opt) = @_;
    my %r = (got => [], pongs => [], errors => [], close => []);
    my ($on_connect, $on_message) = delete @opt{qw(on_connect on_message)};
    my $ctx = EV::Websockets::Context->new;
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        %opt,
        on_connect => sub {
            my ($c, $headers) = @_;
            $r{headers} = $headers;
            send_message($c, $_) for @$messages;
            $on_connect->($c, \%r) if $on_connect;
        },
        on_message => sub {
            my ($c, $data, $binary) = @_;
            push @{ $r{got} }, [ $data, $binary ];
            $on_message->($c, \%r) if $on_message;
        },
        on_pong    => sub { push @{ $r{pongs} }, $_[1] },
        on_error   => sub { push @{ $r{errors} }, $_[1] },
        on_close   => sub { push @{ $r{close} }, [ $_[1], $_[2] ] },
    );
    run_until(sub { @{ $r{close} } || (!$r{headers} && @{ $r{errors} }) }, 15);
    $r{state} = $conn->state;
    return \%r;
}

# What echo_client recorded ($r) under test name $name: no errors, one echo
# per message of @$messages and $extra more messages ($what says which),
# every echo intact, once and in order.
sub echoes_intact {
    my ($r, $name, $messages, $extra, $what) = @_;
    Test::More::is_deeply($r->{errors}, [], "$name: no errors");
    Test::More::is(scalar @{ $r->{got} }, @$messages + $extra, "$name: one echo per message, $what")
        or Test::More::diag(Test::More::explain([ map { [ length $_->[0], $_->[1] ] } @{ $r->{got} } ]));
    messages_match($name, $messages, $r->{got});
}

# $bytes, what $who sent of the sample messages on the wire (a peer's
# count), shows that they went compressed ($compressed true: over 2 MiB of
# payload, of which only the random MiB does not shrink) or not.
sub wire_size_ok {
    my ($bytes, $compressed, $who) = @_;
    $bytes //= 0;
    if ($compressed) {
        Test::More::cmp_ok($bytes, '<', 1.5 * $MiB, "$who sent compressed messages")
            and Test::More::cmp_ok($bytes, '>', $MiB, '... the random MiB included');
    }
    else {
        Test::More::cmp_ok($bytes, '>', 2 * $MiB, "$who sent the messages uncompressed");
    }
}

1;
