package EchoPeers;
# Echo pairs for Bench::echo, all in this process's EV loop on 127.0.0.1:
# a client and a server of each implementation (or our server where the
# peer is a client only), and the raw-TCP floor.  Each entry: a name, the
# modules it needs, and start($peer, $size) as Bench::echo expects.
use strict;
use warnings;

use EV;
use EV::Websockets;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use feature qw(current_sub);

BEGIN { $ENV{MOJO_REACTOR} = 'Mojo::Reactor::EV' }    # before Mojo loads

my $MAX = 64 * 1024 * 1024;    # message size limit for every peer

our @ALL = (
    { name => 'EV::Websockets', needs => [], start => \&ours },
    { name => 'raw TCP floor', needs => [], start => \&raw_tcp },
    {
        name  => 'Mojolicious',
        needs => [qw(Mojolicious Mojo::Reactor::EV Mojo::Server::Daemon Mojo::UserAgent)],
        start => \&mojolicious,
    },
    {
        name  => 'AnyEvent::WebSocket::Client',
        needs => [qw(AnyEvent AnyEvent::WebSocket::Client)],
        start => \&anyevent,
    },
    {
        name  => 'Net::Async::WebSocket',
        needs => [qw(IO::Async::Loop::EV Net::Async::WebSocket::Client)],
        start => \&net_async,
    },
    {
        name  => 'Net::WebSocket::EVx',
        needs => [qw(Net::WebSocket::EVx)],
        start => \&evx,
    },
);

# Why a peer cannot run here (a module missing), or undef.
sub missing {
    my ($entry) = @_;
    for my $module (@{ $entry->{needs} }) {
        (my $file = "$module.pm") =~ s{::}{/}g;
        return "$module is not installed" unless eval { require $file; 1 };
    }
    return undef;
}

# Our echo server; returns [context, port].
sub our_server {
    my $ctx  = EV::Websockets::Context->new(proxy => '');
    my $port = $ctx->listen(
        port             => 0,
        max_message_size => $MAX,
        on_message       => sub { $_[2] ? $_[0]->send_binary($_[1]) : $_[0]->send($_[1]) },
    );
    return [ $ctx, $port ];
}

sub ours {
    my ($peer) = @_;
    my ($ctx, $port) = @{ our_server() };
    my $conn = $ctx->connect(
        url              => "ws://127.0.0.1:$port/",
        compression      => 0,
        max_message_size => $MAX,
        on_connect       => sub {
            my ($c) = @_;
            $peer->{ready}->(sub { $_[1] ? $c->send_binary($_[0]) : $c->send($_[0]) }, sub { $c->close(1000) });
        },
        on_message => sub { $peer->{echo}->(length $_[1]) },
        on_error   => sub { $peer->{fail}->($_[1]) },
    );
    return [ $ctx, $conn ];
}

# No WebSocket at all: EV::io, sysread and syswrite, echoing bytes.  The
# client counts an echo each time $size more bytes have come back.
sub raw_tcp {
    my ($peer, $size) = @_;
    my $listen = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
        or die "listen: $!";
    my (%keep, $server_w);
    my $accept_w = EV::io($listen, EV::READ, sub {
        my $s = $listen->accept or return;
        $s->blocking(0);
        setsockopt $s, IPPROTO_TCP, TCP_NODELAY, 1;
        my $buf = '';
        $server_w = EV::io($s, EV::READ, sub {
            my $n = sysread $s, $buf, 256 * 1024;
            return $peer->{fail}->("server read: " . ($n // $!)) unless $n;
            my $off = 0;
            while ($off < $n) {    # blocking is rare for an echo this size
                my $w = syswrite $s, $buf, $n - $off, $off;
                $off += $w if $w;
            }
        });
        $keep{server} = $s;
    });
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $listen->sockport) or die "connect: $!";
    $c->blocking(0);
    setsockopt $c, IPPROTO_TCP, TCP_NODELAY, 1;
    my ($buf, $pending, $out) = ('', 0, '');
    my ($read_w, $write_w);
    my $flush = sub {
        my $w = syswrite $c, $out;
        substr($out, 0, $w, '') if $w;
        $write_w = length $out ? EV::io($c, EV::WRITE, __SUB__) : undef;
    };
    $read_w = EV::io($c, EV::READ, sub {
        my $n = sysread $c, $buf, 256 * 1024;
        return $peer->{fail}->("client read: " . ($n // $!)) unless $n;
        $pending += $n;
        while ($pending >= $size && $size) {
            $pending -= $size;
            $peer->{echo}->($size);
        }
    });
    my $ready = EV::timer(0, 0, sub {
        $peer->{ready}->(
            sub { $out .= $_[0]; $flush->() unless $write_w },
            sub { undef $read_w; undef $write_w; undef $server_w; close $c },
        );
    });
    return [ $listen, $accept_w, \%keep, $c, \$read_w, $ready ];
}

sub mojolicious {
    my ($peer) = @_;
    require Mojolicious;
    my $app = Mojolicious->new;
    $app->log->level('fatal');
    $app->routes->websocket('/' => sub {
        my ($c) = @_;
        $c->tx->max_websocket_size($MAX);
        $c->on(text   => sub { $_[0]->send($_[1]) });
        $c->on(binary => sub { $_[0]->send({ binary => $_[1] }) });
    });
    my $daemon = Mojo::Server::Daemon->new(app => $app, listen => ['http://127.0.0.1'], silent => 1)->start;
    my $port   = $daemon->ports->[0];
    my $ua     = Mojo::UserAgent->new(max_response_size => $MAX);
    # no permessage-deflate: the other peers do not compress either
    $ua->on(start => sub { $_[1]->req->headers->remove('Sec-WebSocket-Extensions') });
    $ua->websocket("ws://127.0.0.1:$port/" => sub {
        my ($ua, $tx) = @_;
        return $peer->{fail}->('Mojo::UserAgent: handshake failed') unless $tx->is_websocket;
        $tx->max_websocket_size($MAX);
        $tx->on(message => sub { $peer->{echo}->(length $_[1]) });
        $peer->{ready}->(sub { $tx->send($_[1] ? { binary => $_[0] } : $_[0]) }, sub { $tx->finish(1000) });
    });
    return [ $daemon, $ua ];
}

sub anyevent {
    my ($peer) = @_;
    my ($ctx, $port) = @{ our_server() };
    my $client = AnyEvent::WebSocket::Client->new(max_payload_size => $MAX);
    my $conn;
    $client->connect("ws://127.0.0.1:$port/")->cb(sub {
        $conn = eval { shift->recv } or return $peer->{fail}->("AnyEvent::WebSocket::Client: $@");
        $conn->on(each_message => sub { $peer->{echo}->(length $_[1]->body) });
        $peer->{ready}->(
            sub {
                $conn->send($_[1] ? AnyEvent::WebSocket::Message->new(opcode => 2, body => $_[0]) : $_[0]);
            },
            sub { $conn->close },
        );
    });
    return [ $ctx, $client, \$conn ];
}

sub net_async {
    my ($peer) = @_;
    require Net::Async::WebSocket::Server;
    my $loop   = IO::Async::Loop::EV->new;    # watchers on EV's default loop
    my $server = Net::Async::WebSocket::Server->new(
        on_client => sub {
            my (undef, $client) = @_;
            $client->configure(
                on_text_frame   => sub { $_[0]->send_text_frame($_[1]) },
                on_binary_frame => sub { $_[0]->send_binary_frame($_[1]) },
            );
        },
    );
    $loop->add($server);
    my $client = Net::Async::WebSocket::Client->new(
        on_text_frame   => sub { $peer->{echo}->(length $_[1]) },
        on_binary_frame => sub { $peer->{echo}->(length $_[1]) },
    );
    $loop->add($client);
    my $ready;
    $ready = $server->listen(addr => { family => 'inet', socktype => 'stream', ip => '127.0.0.1', port => 0 })
        ->then(sub {
            my $port = $server->read_handle->sockport;
            $client->connect(url => "ws://127.0.0.1:$port/");
        })->on_done(sub {
            $peer->{ready}->(
                sub { $_[1] ? $client->send_binary_frame($_[0]) : $client->send_text_frame($_[0]) },
                sub { $client->close_now },
            );
        })->on_fail(sub { $peer->{fail}->("Net::Async::WebSocket: @_") });
    return [ $loop, $server, $client, $ready ];
}

# Net::WebSocket::EVx speaks frames on a socket that is already upgraded:
# the client's handshake with our server is done here, blocking (it is
# loopback and happens before timing starts).
sub evx {
    my ($peer) = @_;
    my ($ctx, $port) = @{ our_server() };
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die "connect: $!";
    print $s "GET / HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    my $answer = '';
    sysread($s, $answer, 4096, length $answer) || die "handshake: $!" until $answer =~ /\r\n\r\n/;
    $answer =~ m{^HTTP/1\.1 101 } or die "handshake refused: $answer";
    $s->blocking(0);
    my $ws = Net::WebSocket::EVx->new({
        fh          => $s,
        type        => 'client',
        on_msg_recv => sub { my ($rsv, $opcode, $msg) = @_; $peer->{echo}->(length $msg) },
        on_close    => sub { },
    });
    my $ready = EV::timer(0, 0, sub {
        $peer->{ready}->(sub { $ws->queue_msg($_[0], $_[1] ? 2 : 1) }, sub { $ws->close(1000) });
    });
    return [ $ctx, $s, $ws, $ready ];
}

1;
