# Proves: adopt serves WebSockets behind the Feersum 1.5 API: $req->io from
# a native handler, psgix.io from a second server instance, two listeners on
# one instance and, when Feersum was built with TLS, a TLS 1.3 listener.
# POD: EV::Websockets, "adopt" and "Feersum versions".
#
# Skipped with Feersum 1.41 (Debian), which has none of this API; the 1.41
# paths are tested in t/server/adopt-behind-feersum.t.  What this relies on,
# from Feersum 1.5's documentation and source:
# - $req->io hands the socket over: an IO::Socket::INET on Feersum's own
#   descriptor (which Feersum closes when its connection object goes), with
#   whatever Feersum read past the request head pushed back into the
#   handle's PerlIO buffer; on a TLS listener, one end of a Unix socketpair
#   that Feersum relays through TLS (the handle owns that descriptor).
# - new_instance makes an independent server; use_socket once per listener;
#   set_tls(cert_file, key_file, listener => $index) makes one of them TLS
#   1.3, if has_tls says Feersum was built with it.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use lib 't/lib';
use TestWS;
use RawPeer;

BEGIN {
    plan skip_all => "Feersum cannot be loaded: $@" unless eval { require Feersum; 1 };
    plan skip_all => "Feersum $Feersum::VERSION has no \$req->io or new_instance (the 1.5 API);"
        . ' t/server/adopt-behind-feersum.t tests the 1.41 one'
        unless Feersum::Connection->can('io') && Feersum->can('new_instance');
}

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $echo = sub { $_[0]->send("echo:$_[1]") };

sub listener {
    my $listener = IO::Socket::INET->new(
        Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', ReuseAddr => 1, Blocking => 0,
    ) or die "listen: $@";
    return $listener;
}

sub is_upgrade { ($_[0]{HTTP_UPGRADE} // '') =~ /websocket/i }

# An upgrade request with a first text frame right behind it, in one write.
sub eager_client {
    my ($port, $payload) = @_;
    my $request = "GET /eager HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        . "Sec-WebSocket-Version: 13\r\n\r\n";
    my $frame = RawPeer::frame({ mode => 'client' }, opcode => 1, payload => $payload);
    return RawPeer->client(port => $port, request => $request . $frame);
}

# The context the handlers adopt into, what they saw (%seen) and its
# callbacks recorded (%s); each subtest starts afresh.
my ($ctx, %seen, %s);
sub fresh_context { $ctx = EV::Websockets::Context->new; %seen = %s = () }

# One native instance on two listeners.
my @listeners = (listener(), listener());
my @ports     = map { $_->sockport } @listeners;
my $native    = Feersum->new_instance;
$native->use_socket($_) for @listeners;
$native->request_handler(sub {
    my $req = shift;
    my $env = $req->env;
    if (!is_upgrade($env)) {
        $req->send_response(400, [ 'Content-Type' => 'text/plain' ], \"not a websocket\n");
        return;
    }
    push @{ $seen{port} }, $env->{SERVER_PORT};
    my $io = $req->io;    # the socket, with what Feersum read ahead in its buffer
    push @{ $seen{io} }, ref $io;
    $ctx->adopt(fh => $io, initial_data => upgrade_request($env), recording(\%s, on_message => $echo));
    return;
});

subtest 'native: $req->io on each of two listeners' => sub {
    fresh_context();
    my @r = map { ws_roundtrip("ws://127.0.0.1:$_/native", message => "to $_") } @ports;
    is_deeply([ map { $_->{reply} } @r ], [ map { "echo:to $_" } @ports ], 'each listener: handshake and echo');
    is_deeply([ map { $_->{close} } @r ], [ ([ 1000, '' ]) x 2 ], '... clean closes');
    is_deeply($seen{port}, [@ports], 'SERVER_PORT is the listener the client came in on');
    is(scalar(grep { $_->isa('IO::Handle') } @{ $seen{io} }), 2, '$req->io is a handle each time')
        or diag explain $seen{io};
    is(scalar @{ $s{close} || [] }, 2, 'server on_close for both');
};

subtest 'native: a frame right behind the upgrade request is served' => sub {
    fresh_context();
    my $peer = eager_client($ports[1], 'eager');
    ok(run_until(sub { $peer->messages || $peer->{eof} }), 'an answer');
    ok($peer->{open}, 'upgraded');
    is_deeply([ $peer->messages ], [ [ 1, 'echo:eager' ] ],
        'the frame Feersum read with the request comes through $req->io\'s buffer');
    is_deeply($s{message}, [ [ 'eager', 0, 1 ] ], '... once');
    $peer->send_frame(opcode => 8, payload => RawPeer::close_payload(1000, ''));
    ok(run_until(sub { $peer->{eof} }), 'closed');
};

subtest 'a second instance serves PSGI beside the first' => sub {
    fresh_context();
    my $listener = listener();
    my $port     = $listener->sockport;
    my $psgi     = Feersum->new_instance;
    $psgi->use_socket($listener);
    $psgi->set_psgix_io(1) if $psgi->can('set_psgix_io');
    $psgi->psgi_request_handler(sub {
        my $env = shift;
        return [ 400, [ 'Content-Type' => 'text/plain' ], ["not a websocket\n"] ] unless is_upgrade($env);
        $ctx->adopt(fh => $env->{'psgix.io'}, initial_data => upgrade_request($env),
            recording(\%s, on_message => $echo));
        return sub { };    # streaming, never started: the socket is ours
    });
    my $r = ws_roundtrip("ws://127.0.0.1:$port/psgi", message => 'psgi');
    is($r->{reply}, 'echo:psgi', 'PSGI instance: handshake and echo');
    is_deeply($r->{close}, [ 1000, '' ], '... clean close');
    my $n = ws_roundtrip("ws://127.0.0.1:$ports[0]/native", message => 'still native');
    is($n->{reply}, 'echo:still native', 'the native instance still answers on its own listener');
    my $peer = eager_client($port, 'psgi eager');
    ok(run_until(sub { $peer->messages || $peer->{eof} }), 'an eager client gets an answer');
    is_deeply([ $peer->messages ], [ [ 1, 'echo:psgi eager' ] ], '... the echo of its first frame');
    $peer->send_frame(opcode => 8, payload => RawPeer::close_payload(1000, ''));
    ok(run_until(sub { $peer->{eof} }), 'closed');
    $psgi->unlisten;
};

subtest 'native: a TLS 1.3 listener (Feersum relays $req->io through TLS)' => sub {
    plan skip_all => 'this Feersum was built without TLS (has_tls is false)'
        unless $native->can('has_tls') && $native->has_tls;
    fresh_context();
    my $listener = listener();
    my $port     = $listener->sockport;
    $native->use_socket($listener);
    $native->set_tls(cert_file => 't/certs/server.pem', key_file => 't/certs/server-key.pem', listener => 2);
    my $client = EV::Websockets::Context->new(ssl_ca => 't/certs/ca.pem');
    my $r = ctx_roundtrip($client, "wss://127.0.0.1:$port/tls", message => 'secret');
    is($r->{reply}, 'echo:secret', 'wss:// through Feersum\'s TLS: handshake and echo');
    is_deeply($r->{errors}, [], '... no error');
    is_deeply($r->{closes}, [ [ 1000, '' ] ], '... clean close');
    is_deeply($seen{port}, [$port], 'served by the TLS listener');
    my $plain = ws_roundtrip("ws://127.0.0.1:$ports[0]/plain", message => 'plain');
    is($plain->{reply}, 'echo:plain', 'the plain listeners of the same instance still answer');
};

$native->unlisten;
done_testing;
