# Proves: every on_error text a client gets from a server that answers the
# upgrade wrongly, and a reset on an open connection.
# POD: EV::Websockets, "on_error messages".
#
# Every on_error text a client can get while opening, each from a server
# that answers the upgrade in the wrong way; and a connection reset once
# open.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use Digest::SHA qw(sha1_base64);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $ctx = EV::Websockets::Context->new;

# A 101 answer to the request in $head, with its headers adjusted: undef
# removes one, a value sets it.
sub switching {
    my ($head, %set) = @_;
    my ($key) = $head =~ /^Sec-WebSocket-Key: (\S+)\r$/mi;
    my %h = (
        Upgrade                => 'websocket',
        Connection             => 'Upgrade',
        'Sec-WebSocket-Accept' => sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=',
        %set,
    );
    return "HTTP/1.1 101 Switching Protocols\r\n"
        . join('', map { defined $h{$_} ? "$_: $h{$_}\r\n" : () } sort keys %h) . "\r\n";
}

# Connect to a server answering with $answer->($target, $head); returns
# what the client saw.
sub opening {
    my ($answer, %opt) = @_;
    my $port = http_answerer($answer);
    my %seen;
    $ctx->connect(
        url => "ws://127.0.0.1:$port/",
        %opt,
        on_connect => sub { $seen{connect}++ },
        on_close   => sub { $seen{close}++ },
        on_error   => sub { push @{ $seen{errors} }, $_[1] },
    );
    run_until(sub { $seen{errors} || $seen{connect} });
    run_for(0.05);
    return \%seen;
}

my @cases = (
    [ 'a 404' => sub { "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" },
        'handshake failed: HTTP 404 Not Found' ],
    [ 'a wrong accept key' => sub { switching($_[1], 'Sec-WebSocket-Accept' => 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=') },
        'handshake failed: bad Sec-WebSocket-Accept' ],
    [ 'no Upgrade header' => sub { switching($_[1], Upgrade => undef) },
        q{handshake failed: missing 'Upgrade: websocket'} ],
    [ 'no Connection header' => sub { switching($_[1], Connection => undef) },
        q{handshake failed: missing 'Connection: Upgrade'} ],
    [ 'a subprotocol nobody offered' => sub { switching($_[1], 'Sec-WebSocket-Protocol' => 'other') },
        q{handshake failed: server chose subprotocol 'other' that was not offered}, protocol => 'chat' ],
    [ 'an extension nobody offered' => sub { switching($_[1], 'Sec-WebSocket-Extensions' => 'x-made-up') },
        'handshake failed: server accepted an extension that was not offered' ],
    [ 'an endless response head' => sub { "HTTP/1.1 101 Switching Protocols\r\n" . ("X-Pad: " . ('p' x 100) . "\r\n") x 200 },
        'handshake failed: response head too large' ],
    [ 'garbage' => sub { "SSH-2.0-OpenSSH\r\n\r\n" },
        qr/^handshake failed: malformed response \(.+\)\z/ ],
    [ 'no answer at all' => sub { '' },
        'handshake failed: connection closed by peer' ],
);

for my $case (@cases) {
    my ($what, $answer, $expect, %opt) = @$case;
    my $seen = opening($answer, %opt);
    is(scalar @{ $seen->{errors} || [] }, 1, "$what: one on_error");
    ref $expect
        ? like($seen->{errors}[0], $expect, "... $expect")
        : is($seen->{errors}[0], $expect, "... \"$expect\"");
    ok(!$seen->{connect} && !$seen->{close}, '... and no other callback');
}

subtest 'a reset on an open connection: read failed, then 1006' => sub {
    my ($conn, $peer, $ev) = connect_raw();
    ok(run_until(sub { $ev->{connect} }), 'connected');
    $peer->reset_tcp;
    ok(run_until(sub { $ev->{close} }), 'closed');
    is_deeply($ev->{error}, [ ['read failed: Connection reset by peer'] ], 'on_error "read failed: Connection reset by peer"');
    is_deeply($ev->{close}, [ [ 1006, undef ] ], 'then on_close(1006, undef)');
    is_deeply($ev->{order}, [qw(connect error close)], 'in that order');
};

done_testing;
