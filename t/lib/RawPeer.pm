package RawPeer;

# A raw-socket WebSocket peer for tests, driven by EV.  It speaks just enough
# RFC 6455 to open a connection; after that it sends whatever frames a test
# asks for, well-formed or not, and records every frame it receives.
#
#   my $peer = RawPeer->client(port => $port);   # upgrades, then frames
#   my $peer = RawPeer->server;                  # connect to $peer->port
#   $peer->send_frame(opcode => 1, payload => 'hi', rsv => 4, mask => 0);
#   run_until(sub { $peer->{eof} });
#
# State, readable by tests:
#   open          upgrade completed (client: got a 101; server: sent it)
#   head          the peer's HTTP head (the 101 response, or the request)
#   status        client mode: the response status code
#   headers       the head's headers, keys lowercased
#   frames        frames received, in order: hashrefs
#                 { opcode, fin, rsv, masked, payload, time }
#   got_close     a close frame arrived; close_code (undef when the frame had
#                 no payload) and close_reason (bytes) hold its contents
#   eof           the other side closed TCP (or reset it; then also error)
#
# Options of both constructors:
#   auto_pong   => 1   answer each ping with a pong carrying its payload
#   reply_close => 1   answer a close frame with one carrying the same code
#   on_open  => sub { my ($peer) = @_ }
#   on_frame => sub { my ($peer, $frame) = @_ }    after recording it
#   path     => '/'    client mode: request target
#   extra_headers => [ Name => "value", ... ]   added to the upgrade request
#                       (client mode) or to the 101 response (server mode)
#   request  => $bytes  client mode: send these bytes instead of the upgrade
#                       request (for malformed or plain HTTP requests)
# In client mode a response other than 101 leaves the peer not open, with
# status, status_line (the first line), head and headers set; any body stays
# in rbuf.
# In server mode, once close frames went both ways, the peer shuts down its
# side of TCP (RFC 6455 7.1.1).
#
# Sending: send_frame(%args) (see frame() for the arguments), send_raw($bytes),
# frame(%args) for the bytes of one frame (to send several in one write),
# close_tcp to drop the connection, reset_tcp to drop it with a reset (RST).
# Reading: frames_of(@opcodes), opcodes, messages (data frames reassembled).

use strict;
use warnings;
use feature 'bitwise';
no warnings 'experimental::bitwise';

use EV;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_ERROR SO_LINGER SHUT_WR);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Digest::SHA qw(sha1_base64);
use MIME::Base64 qw(encode_base64);
use Scalar::Util qw(weaken);

# Writing to a peer that has gone must fail with EPIPE, not kill the test.
$SIG{PIPE} = 'IGNORE';

my $GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

sub accept_key { return sha1_base64($_[0] . $GUID) . '=' }

sub close_payload {
    my ($code, $reason) = @_;
    return pack('n', $code) . ($reason // '');
}

sub _new {
    my ($class, $mode, %opt) = @_;
    return bless {
        auto_pong => 1, reply_close => 1, path => '/', %opt,
        mode => $mode, rbuf => '', wbuf => '', frames => [], open => 0, eof => 0,
    }, $class;
}

sub client {
    my ($class, %opt) = @_;
    my $self = $class->_new(client => %opt);
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp', Blocking => 0,
    ) or die "RawPeer: cannot connect to port $self->{port}: $@";
    $self->{key} = pack('N4', map { int rand 2**32 } 1 .. 4);
    $self->{key} = encode_base64($self->{key}, '');
    $self->{key} = $1 if ($self->{request} // '') =~ /^Sec-WebSocket-Key:[ \t]*(\S+)/mi;
    $self->{wbuf} = $self->{request} // "GET $self->{path} HTTP/1.1\r\nHost: 127.0.0.1:$self->{port}\r\n"
        . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: $self->{key}\r\nSec-WebSocket-Version: 13\r\n"
        . $self->_extra_headers . "\r\n";
    $self->{connecting} = 1;
    $self->_attach($sock);
    my $weak = $self;
    weaken($weak);
    $self->{ww} = EV::io($sock, EV::WRITE, sub {    # the connect has finished
        delete $weak->{ww};
        $weak->{connecting} = 0;
        if (my $err = unpack 'i', getsockopt($sock, SOL_SOCKET, SO_ERROR)) {
            $! = $err;
            @$weak{qw(error eof)} = ("$!", 1);
            return;
        }
        $weak->_flush;
    });
    return $self;
}

sub server {
    my ($class, %opt) = @_;
    my $self = $class->_new(server => %opt);
    my $listener = IO::Socket::INET->new(
        Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Blocking => 0,
    ) or die "RawPeer: cannot listen: $@";
    $self->{port} = $listener->sockport;
    my $weak = $self;
    weaken($weak);
    $self->{lw} = EV::io($listener, EV::READ, sub {
        my $sock = $listener->accept or return;
        delete $weak->{lw};    # one client only
        close $listener;
        $weak->_attach($sock);
    });
    return $self;
}

sub port { return $_[0]{port} }

sub _attach {
    my ($self, $sock) = @_;
    $sock->blocking(0);
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    $self->{sock} = $sock;
    my $weak = $self;
    weaken($weak);
    $self->{rw} = EV::io($sock, EV::READ, sub { $weak->_on_read });
}

sub _on_read {
    my ($self) = @_;
    my $n = sysread($self->{sock}, $self->{rbuf}, 262144, length $self->{rbuf});
    if (!defined $n) {
        return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        $self->{error} = "$!";
    }
    if (!$n) {
        $self->{eof} = 1;
        delete $self->{rw};
        return;
    }
    $self->_parse;
}

# The extra_headers option as header lines.
sub _extra_headers {
    my ($self) = @_;
    my @extra = @{ $self->{extra_headers} || [] };
    my $lines = '';
    $lines .= sprintf "%s: %s\r\n", splice(@extra, 0, 2) while @extra;
    return $lines;
}

sub _parse {
    my ($self) = @_;
    if (!$self->{open}) {
        return if defined $self->{head};    # refused: the rest is a body
        my $end = index($self->{rbuf}, "\r\n\r\n");
        return if $end < 0;
        my $head = $self->{head} = substr($self->{rbuf}, 0, $end + 4, '');
        my ($first, @lines) = split /\r\n/, $head;
        for (@lines) {
            $self->{headers}{ lc $1 } = $2 if /^([^:]+):\s*(.*?)\s*\z/;
        }
        if ($self->{mode} eq 'server') {
            my $accept = accept_key($self->{headers}{'sec-websocket-key'} // '');
            $self->send_raw("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                . "Connection: Upgrade\r\nSec-WebSocket-Accept: $accept\r\n"
                . $self->_extra_headers . "\r\n");
        }
        else {
            $self->{status_line} = $first;
            ($self->{status}) = $first =~ m{^HTTP/1\.1 (\d{3})};
            return unless ($self->{status} // 0) == 101;
            $self->{accept_ok} =
                ($self->{headers}{'sec-websocket-accept'} // '') eq accept_key($self->{key});
        }
        $self->{open} = 1;
        $self->{on_open}->($self) if $self->{on_open};
    }
    while ($self->{sock} && (my $frame = $self->_parse_frame)) {
        push @{ $self->{frames} }, $frame;
        $self->_react($frame);
        $self->{on_frame}->($self, $frame) if $self->{on_frame};
    }
}

sub _parse_frame {
    my ($self) = @_;
    my $buf = \$self->{rbuf};
    return if length $$buf < 2;
    my ($b0, $b1) = unpack 'CC', $$buf;
    my ($len, $off) = ($b1 & 0x7f, 2);
    if ($len == 126) { return if length $$buf < 4;  ($len, $off) = (unpack('x2 n',  $$buf), 4) }
    if ($len == 127) { return if length $$buf < 10; ($len, $off) = (unpack('x2 Q>', $$buf), 10) }
    my $masked = $b1 >> 7;
    return if length $$buf < $off + 4 * $masked + $len;
    my $key = $masked ? substr($$buf, $off, 4) : '';
    substr($$buf, 0, $off + 4 * $masked, '');
    my $payload = substr($$buf, 0, $len, '');
    $payload ^.= substr($key x (($len >> 2) + 1), 0, $len) if $masked;
    return {
        fin => $b0 >> 7, rsv => ($b0 >> 4) & 7, opcode => $b0 & 0xf,
        masked => $masked, payload => $payload, time => EV::now,
    };
}

sub _react {
    my ($self, $frame) = @_;
    if ($frame->{opcode} == 9 && $self->{auto_pong} && !$self->{close_sent}) {
        $self->send_frame(opcode => 10, payload => $frame->{payload});
    }
    elsif ($frame->{opcode} == 8 && !$self->{got_close}) {
        $self->{got_close} = 1;
        my $p = $frame->{payload};
        $self->{close_code}   = length $p >= 2 ? unpack('n', $p) : undef;
        $self->{close_reason} = length $p >= 2 ? substr($p, 2) : undef;
        if ($self->{reply_close} && !$self->{close_sent}) {
            $self->send_frame(opcode => 8, payload => substr($p, 0, 2));
        }
        $self->_shut_when_closed;
    }
}

# The bytes of one frame.  fin (1), rsv (0, 3 bits: 4 = RSV1), opcode (1),
# mask (1 for a client, 0 for a server), raw_len (the length the header
# claims; the payload is sent as given, so it can be shorter).
sub frame {
    my ($self, %a) = @_;
    my $payload = $a{payload} // '';
    utf8::downgrade($payload);    # dies on wide characters: frames carry bytes
    my $mask = $a{mask} // ($self->{mode} eq 'client' ? 1 : 0);
    my $len  = $a{raw_len} // length $payload;
    my $head = pack 'C', (($a{fin} // 1) ? 0x80 : 0) | (($a{rsv} // 0) & 7) << 4 | (($a{opcode} // 1) & 0xf);
    my $mbit = $mask ? 0x80 : 0;
    $head .= $len < 126 ? pack('C', $mbit | $len)
           : $len < 65536 ? pack('Cn', $mbit | 126, $len)
           : pack('CQ>', $mbit | 127, $len);
    if ($mask) {
        my $key = pack 'N', int rand 2**32;
        $head .= $key;
        $payload ^.= substr($key x ((length($payload) >> 2) + 1), 0, length $payload);
    }
    return $head . $payload;
}

sub send_frame {
    my ($self, %a) = @_;
    $self->{close_sent} = 1 if ($a{opcode} // 1) == 8;
    $self->send_raw($self->frame(%a));
    $self->_shut_when_closed;
}

# A server closes TCP once close frames went both ways (RFC 6455 7.1.1).
sub _shut_when_closed {
    my ($self) = @_;
    return unless $self->{mode} eq 'server' && $self->{close_sent} && $self->{got_close};
    $self->{shut_after_flush} = 1;
    $self->_flush;
}

sub send_raw {
    my ($self, $bytes) = @_;
    $self->{wbuf} .= $bytes;
    $self->_flush;
}

sub _flush {
    my ($self) = @_;
    my $sock = $self->{sock};
    return if !$sock || $self->{connecting};
    while (length $self->{wbuf}) {
        my $n = syswrite($sock, $self->{wbuf});
        if (!defined $n) {
            next if $! == EINTR;
            last if $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{write_error} = "$!";
            $self->{wbuf} = '';
            last;
        }
        substr($self->{wbuf}, 0, $n, '');
    }
    if (length $self->{wbuf}) {
        my $weak = $self;
        weaken($weak);
        $self->{ww} ||= EV::io($sock, EV::WRITE, sub { $weak->_flush });
        return;
    }
    delete $self->{ww};
    shutdown($sock, SHUT_WR) if delete $self->{shut_after_flush};
}

# Frames received with the given opcode(s), e.g. $peer->frames_of(8).
sub frames_of {
    my ($self, @op) = @_;
    my %want = map { $_ => 1 } @op;
    return grep { $want{ $_->{opcode} } } @{ $self->{frames} };
}

# Opcodes of all frames received, in order.
sub opcodes { return map { $_->{opcode} } @{ $_[0]{frames} } }

# Data messages received: [ opcode of the first frame, reassembled payload ].
sub messages {
    my ($self) = @_;
    my (@msgs, $cur);
    for my $f (grep { $_->{opcode} < 8 } @{ $self->{frames} }) {
        $cur //= [ $f->{opcode}, '' ];
        $cur->[1] .= $f->{payload};
        push @msgs, $cur if $f->{fin};
        undef $cur if $f->{fin};
    }
    return @msgs;
}

# Drop the TCP connection at once, without a close frame.
sub close_tcp {
    my ($self) = @_;
    delete @$self{qw(rw ww lw)};
    close delete $self->{sock} if $self->{sock};
}

# Drop the TCP connection with a reset (RST) instead of a FIN.
sub reset_tcp {
    my ($self) = @_;
    setsockopt($self->{sock}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $self->{sock};
    $self->close_tcp;
}

sub DESTROY { $_[0]->close_tcp }

1;
