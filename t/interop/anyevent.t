# Proves: AnyEvent::WebSocket::Client on the same loop talks to our server,
# whose answer to its forbidden close code 1005 harms no one.
# POD: EV::Websockets, "DESCRIPTION", "on_error messages"; README.pod,
# "TESTS".
#
# Interoperability with AnyEvent::WebSocket::Client (an independent
# WebSocket client; it has no server side) talking to our server, in this
# process and on the same EV loop: AnyEvent runs on its EV backend and
# everything is driven by EV::run (run_until).
#
# The conversation follows the script of t/lib/PerlPeers.pm: text, UTF-8,
# binary, empty and 1 MiB messages echoed with their type, fragmented
# messages both ways, pings both ways, a subprotocol, and closes with a
# code and a reason from either side.  Then a known defect of the client:
# its close() without arguments, and its answer to a server's close frame,
# carry status 1005, which RFC 6455 forbids on the wire; the frames are
# captured with a raw peer, and our server must treat them as a protocol
# error without harm to itself or to other connections.
#
# Needs the Debian package libanyevent-websocket-client-perl (0.54 there).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use PerlPeers;    # loads EV first, so AnyEvent picks its EV backend
BEGIN { need_modules('libanyevent-websocket-client-perl', 'AnyEvent::WebSocket::Client') }
use TestWS;
use RawPeer;
use EV;
use EV::Websockets;
use AnyEvent;
use Protocol::WebSocket::Frame;    # a dependency of AnyEvent::WebSocket::Client
use Scalar::Util qw(refaddr);

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# AnyEvent must share our loop, or nothing below could work in one process.
is(AnyEvent::detect(), 'AnyEvent::Impl::EV', 'AnyEvent runs on EV');

# AnyEvent::WebSocket::Connection 0.54 answers pings but hands only text
# and binary messages to its callbacks: pongs are dropped unseen.  To see
# that our pongs arrive, wrap its (private) _process_message, which every
# incoming message goes through, and record pongs for the connections
# registered in %PONGS (refaddr => the record's pong list).
my %PONGS;
{
    my $process = AnyEvent::WebSocket::Connection->can('_process_message')
        or BAIL_OUT('AnyEvent::WebSocket::Connection has no _process_message to watch pongs with');
    no warnings 'redefine';
    *AnyEvent::WebSocket::Connection::_process_message = sub {
        my ($conn, $message) = @_;
        my $pongs = $PONGS{ refaddr $conn };
        push @$pongs, $message->body if $pongs && $message->is_pong;
        goto &$process;
    };
}

# An AnyEvent::WebSocket::Client connection to $url, as a PerlPeers adapter
# (%opt goes to AnyEvent::WebSocket::Client->new).  Its record also holds
# conn (the AnyEvent::WebSocket::Connection) and protocol (its
# subprotocol).  The close is [close_code, close_reason] as the connection
# has them when it finishes (undef code: no close frame came).
sub ae_client {
    my ($url, %opt) = @_;
    my $rec = new_record;
    # max_payload_size 0: no limit (the default 64 KiB is below our 1 MiB).
    my $client = AnyEvent::WebSocket::Client->new(max_payload_size => 0, %opt);
    $client->connect($url)->cb(sub {
        my $conn = eval { $_[0]->recv };
        if (!$conn) {
            push @{ $rec->{errors} }, "connect failed: $@";
            return;
        }
        $PONGS{ refaddr $conn } = $rec->{pongs};
        @$rec{qw(connected conn protocol)} = (1, $conn, $conn->subprotocol);
        $conn->on(each_message => sub {
            my (undef, $m) = @_;
            push @{ $rec->{got} }, [ $m->body, $m->is_binary ? 1 : 0 ];
        });
        $conn->on(parse_error => sub { push @{ $rec->{errors} }, "parse error: $_[1]" });
        $conn->on(finish => sub {
            my ($c, $error) = @_;
            push @{ $rec->{errors} }, $error if defined $error;
            $rec->{close} = [ $c->close_code, $c->close_reason ];
        });
    });
    my $conn = sub { $rec->{conn} or die 'the AnyEvent client is not connected' };
    my $message = sub { AnyEvent::WebSocket::Message->new(opcode => $_[0], body => $_[1]) };
    return {
        rec       => $rec,
        client    => $client,
        send      => sub { $conn->()->send($message->($_[1] ? 2 : 1, $_[0])) },
        # The connection has no API for fragments: write the frames
        # (masked, as from a client) to its AnyEvent::Handle.
        fragments => sub {
            my ($pieces, $binary) = @_;
            for my $k (0 .. $#$pieces) {
                my $frame = Protocol::WebSocket::Frame->new(
                    buffer => $pieces->[$k], opcode => $k ? 0 : $binary ? 2 : 1, fin => $k == $#$pieces ? 1 : 0,
                    masked => 1, max_payload_size => 0,
                );
                $conn->()->handle->push_write($frame->to_bytes);
            }
        },
        ping      => sub { $conn->()->send($message->(9, $_[0])) },
        close     => sub { $conn->()->close(@_) },
    };
}

my $PROTOCOLS = [ 'chat.v2', 'chat.v1' ];    # ours, in order of preference
my $ctx = EV::Websockets::Context->new;
my ($port, $conns) = our_server($ctx, protocol => $PROTOCOLS);
my $URL = "ws://127.0.0.1:$port/";

subtest 'AnyEvent client -> our server, client closes' => sub {
    my $cl = ae_client($URL, subprotocol => [ 'chat.v1', 'chat.v2' ]);
    my $srv = exchange_ok('AnyEvent -> our server', $cl, $conns) or return;
    # Subprotocol: our server picks its first preference among the offers.
    is($srv->{protocol}, 'chat.v2', 'our server chose chat.v2');
    is($srv->{headers}{'Sec-WebSocket-Protocol'}, 'chat.v1,chat.v2', "... from the client's offer");
    is($cl->{rec}{protocol}, 'chat.v2', 'the client sees chat.v2');
    # Our server answers with the code of the client's close frame and no
    # reason (which the client reports as "").
    close_ok('client close(4000)', $cl, $srv, client => 4000, 'client bye',
        client => [ 4000, '' ], server => [ 4000, 'client bye' ]);
};

# What AnyEvent::WebSocket::Client really sends, seen by a raw server:
# close() without arguments and the answer to a server's close frame both
# carry the status code 1005 (AnyEvent::WebSocket::Connection::close packs
# `$code ? $code : 1005`, and answers every close frame by calling close()
# without arguments).  RFC 6455 7.4.1: 1005 "MUST NOT be set as a status
# code in a Close control frame by an endpoint"; a close without a code
# must have an empty payload.
sub ae_close_on_the_wire {
    my ($peer_acts) = @_;
    my $peer = RawPeer->server(reply_close => 0);
    my $cl = ae_client('ws://127.0.0.1:' . $peer->port . '/');
    connect_ok('the client, to a raw server', $cl) or return;
    $peer_acts->($peer, $cl);
    run_until(sub { $peer->frames_of(8) }, 5);
    my ($close) = $peer->frames_of(8);
    return $close ? $close->{payload} : undef;
}

subtest 'AnyEvent client: close codes on the wire' => sub {
    my $payload = ae_close_on_the_wire(sub { $_[1]{close}->() });
    is(unpack('H*', $payload // ''), '03ed', 'close() without arguments sends status 1005 (03 ed)');
    $payload = ae_close_on_the_wire(sub { $_[0]->send_frame(opcode => 8, payload => RawPeer::close_payload(4001, 'bye')) });
    is(unpack('H*', $payload // ''), '03ed', "its answer to a close frame with 4001 carries 1005 too");
};

# Hence, when our server closes, the client's answer is a protocol error:
# the client has the server's code and reason, our server reports the
# invalid 1005 (on_error, then on_close with 1002: its close frame was
# already sent, so nothing more goes out).
subtest 'our server closes an AnyEvent client' => sub {
    my $cl = ae_client($URL);
    my $srv = exchange_ok('AnyEvent -> our server, server closes', $cl, $conns) or return;
    is($cl->{rec}{protocol}, undef, 'no subprotocol offered, none chosen');
    is($srv->{protocol}, undef, '... on our side either');
    close_ok('our close(4001)', $cl, $srv, server => 4001, 'server bye',
        client        => [ 4001, 'server bye' ],
        server        => [ 1002, 'protocol error: invalid close code 1005' ],
        server_errors => [ 'protocol error: invalid close code 1005' ]);
};

# close() without arguments, to our server: a protocol error for our
# server (on_error, close 1002), which the client sees as the close code;
# the server takes the next connection as if nothing happened.
subtest 'AnyEvent close() without arguments, then a new connection' => sub {
    my $cl = ae_client($URL);
    my $srv = connect_ok('close()', $cl, $conns) or return;
    $cl->{send}->('before the close', 0);
    run_until(sub { @{ $cl->{rec}{got} } }, 5);
    is_deeply($cl->{rec}{got}, [ [ 'before the close', 0 ] ], 'one echo');
    close_ok('close()', $cl, $srv, client => undef, undef,
        client        => [ 1002, 'protocol error: invalid close code 1005' ],
        server        => [ 1002, 'protocol error: invalid close code 1005' ],
        server_errors => [ 'protocol error: invalid close code 1005' ]);

    my $next = ae_client($URL, subprotocol => ['chat.v1']);
    my $next_srv = exchange_ok('the next client', $next, $conns) or return;
    is($next->{rec}{protocol}, 'chat.v1', 'it gets its subprotocol');
    close_ok('the next client close(1000)', $next, $next_srv, client => 1000, 'done',
        client => [ 1000, '' ], server => [ 1000, 'done' ]);
};

done_testing;
