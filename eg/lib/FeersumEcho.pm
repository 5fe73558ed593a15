package FeersumEcho;

# What eg/feersum_psgi.pl and eg/feersum_native.pl share: Feersum serving
# HTTP on 127.0.0.1, and an EV::Websockets echo on every socket they hand
# over with adopt().  Each example keeps the part that differs: how its
# request handler gets the socket.
#
#   my $echo = FeersumEcho->new($port);    # listens; $echo->{feersum}, {ctx}
#   ... in the handler, for a WebSocket upgrade request:
#   $echo->adopt($socket_handle, $env);
#   ... for anything else, answer with $echo->not_websocket.
#   $echo->run;                              # until SIGINT/SIGTERM

use strict;
use warnings;

use EV;
use EV::Websockets;
use Feersum;
use IO::Socket::INET;
use Shutdown;    # eg/lib/Shutdown.pm

sub new {
    my ($class, $port) = @_;
    my $socket = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $port,
        Listen    => 128,
        Proto     => 'tcp',
        ReuseAddr => 1,
        Blocking  => 0,
    ) or die "cannot listen on 127.0.0.1:$port: $@\n";
    my $feersum = Feersum->endjinn;
    $feersum->use_socket($socket);
    my $ctx = EV::Websockets::Context->new;
    # First signal: stop taking HTTP requests, close the WebSockets with
    # 1001 and leave once they are gone (at most 2 seconds).  A second
    # signal leaves at once.
    my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
        grace   => 2,
        on_stop => sub { $feersum->unlisten },
    );
    return bless { port => $port, feersum => $feersum, ctx => $ctx, shutdown => $shutdown }, $class;
}

# Whether $env is a WebSocket upgrade request.
sub is_upgrade { ($_[1]{HTTP_UPGRADE} // '') =~ /websocket/i }

# The answer to any other request.
sub not_websocket { "This is a WebSocket echo server: connect to ws://127.0.0.1:$_[0]{port}/\n" }

# The upgrade request, rebuilt from the request's environment (Feersum has
# already read it from the socket).
sub upgrade_request {
    my ($env) = @_;
    my $request = 'GET ' . ($env->{REQUEST_URI} // '/') . " HTTP/1.1\r\n";
    for my $key (sort keys %$env) {
        next unless $key =~ /^HTTP_(.+)/;
        (my $name = $1) =~ s/_/-/g;
        $request .= "$name: $env->{$key}\r\n";
    }
    return "$request\r\n";
}

# Serve a WebSocket echo on $fh, the request's socket.
sub adopt {
    my ($self, $fh, $env) = @_;
    # The callbacks capture only plain values, not $env.
    my $peer     = $env->{REMOTE_ADDR} // '?';
    my $path     = $env->{PATH_INFO} // '/';
    # shutting down (adopt would croak): drop it, the socket closes
    return if $self->{shutdown}->stopping;
    $self->{ctx}->adopt(
        fh           => $fh,
        initial_data => upgrade_request($env),
        on_connect   => sub { print "client $peer connected, path $path\n" },
        on_message   => sub {
            my ($conn, $data, $is_binary) = @_;
            $is_binary ? $conn->send_binary($data) : $conn->send($data);
        },
        on_close => sub {
            my ($conn, $code, $reason) = @_;
            print join(' ', "client $peer closed:", $code, $reason // ()), "\n";
        },
        on_error => sub { print "client $peer error: $_[1]\n" },
    );
}

sub run {
    my ($self) = @_;
    print "listening on ws://127.0.0.1:$self->{port}/ (Ctrl-C to stop)\n";
    EV::run;
    %$self = ();    # the context goes: the listening sockets close
    print "bye\n";
}

1;
