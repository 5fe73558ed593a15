# Proves: adopt serves WebSockets behind Feersum, from a PSGI and a
# native handler, including a frame sent along with the upgrade request.
# POD: EV::Websockets, "adopt" (the Feersum example).
#
# adopt() behind Feersum: a PSGI handler adopting psgix.io, and a native
# handler.
#
# Feersum 1.41 (Debian) facts this relies on, checked by hand:
# - PSGI: psgix.io is an IO::Socket::INET on Feersum's own descriptor.  The
#   app must answer with a streaming response (a code ref) that never calls
#   its responder; a plain `return;` makes Feersum write a 500 into the
#   socket ("Invalid PSGI response").  Feersum closes its descriptor once the
#   request is over, even though psgix.io still wraps it, so psgix.io's
#   descriptor is closed twice (see the second subtest); adopting a dup of
#   psgix.io avoids that.  What Feersum read past the request head it
#   pushes back into psgix.io's PerlIO buffer.
# - native: Feersum::Connection has no io method, and $req->env has no
#   psgix.io; $req->fileno is the socket, which Feersum closes when $req is
#   freed, so the handler adopts a dup of it (open '+<&').
# t/server/adopt-behind-feersum-1.5.t tests the newer Feersum API.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use File::Temp qw(tempfile);
use lib 't/lib';
use TestWS;
use RawPeer;

BEGIN {
    plan skip_all => "Feersum cannot be loaded: $@" unless eval { require Feersum; 1 };
}

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $echo = sub { $_[0]->send("echo:$_[1]") };

# The context the handlers adopt into; each subtest makes a fresh one.
my $ctx;

my $listener = IO::Socket::INET->new(
    Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', ReuseAddr => 1, Blocking => 0,
) or die "listen: $@";
my $port    = $listener->sockport;
my $feersum = Feersum->endjinn;
$feersum->use_socket($listener);
$feersum->set_psgix_io(1) if $feersum->can('set_psgix_io');    # newer Feersum only

# Run $code with STDERR (descriptor 2) going to a file; returns what was
# written there.  Test::More keeps its own copy of STDERR.
sub stderr_of {
    my ($code) = @_;
    my ($tmp, $file) = tempfile(UNLINK => 1);
    open(my $saved, '>&', \*STDERR) or die "dup STDERR: $!";
    open(STDERR, '>&', $tmp) or die "redirect STDERR: $!";
    my $ok = eval { $code->(); 1 };
    my $err = $@;
    open(STDERR, '>&', $saved) or die "restore STDERR: $!";
    die $err unless $ok;
    open(my $in, '<', $file) or die "read $file: $!";
    local $/;
    return scalar(<$in>) // '';
}

# A WebSocket client held open until the test closes it.  Returns a hash:
# conn, ctx, and what happened (connect, messages, close, error).
sub open_client {
    my ($path, %opt) = @_;
    my $c = { ctx => EV::Websockets::Context->new, messages => [] };
    $c->{conn} = $c->{ctx}->connect(
        url        => "ws://127.0.0.1:$port$path",
        %opt,
        on_connect => sub { $c->{connect} = 1 },
        on_message => sub { push @{ $c->{messages} }, $_[1] },
        on_close   => sub { $c->{close} = [ @_[ 1, 2 ] ] },
        on_error   => sub { $c->{error} = $_[1] },
    );
    return $c;
}

# While $first is open, open a second client (its socket takes the lowest
# free descriptor number, e.g. one Feersum just closed); close $first, wait
# for $server_closed->(), and check that the second client still works.
# Returns the second client.
sub second_survives_first {
    my ($first, $server_closed) = @_;
    my $second = open_client('/second');
    run_until(sub { $second->{connect} || $second->{error} });
    $second->{conn}->send('before');
    run_until(sub { @{ $second->{messages} } || $second->{error} });
    $first->{conn}->close(1000, 'done');
    run_until(sub { $first->{close} && $server_closed->() });
    $second->{conn}->send('after') if $second->{conn}->is_connected;
    run_until(sub { @{ $second->{messages} } == 2 || $second->{error} || $second->{close} }, 2);
    return $second;
}

subtest 'PSGI handler adopts psgix.io' => sub {
    my (%s, @hs, @state, @io);
    $ctx = EV::Websockets::Context->new;
    $feersum->psgi_request_handler(sub {
        my $env = shift;
        return [ 400, [ 'Content-Type' => 'text/plain' ], ["not a websocket\n"] ]
            unless ($env->{HTTP_UPGRADE} // '') =~ /websocket/i;
        my $io = $env->{'psgix.io'};
        push @io, ref $io;
        my $conn = $ctx->adopt(
            fh           => $io,
            initial_data => upgrade_request($env),
            protocol     => 'chat',
            on_handshake => sub { push @hs, { %{ $_[0] } }; 1 },
            recording(\%s, on_message => $echo),
        );
        push @state, $conn->state;
        return sub { };    # streaming, never started: Feersum leaves the socket alone
    });

    my ($r1, $r2);
    my $noise = stderr_of(sub {
        $r1 = ws_roundtrip("ws://127.0.0.1:$port/chat?room=1", protocol => 'chat', message => 'one');
        $r2 = ws_roundtrip("ws://127.0.0.1:$port/other", message => 'two');
    });
    is($r1->{reply}, 'echo:one', 'first client: handshake and echo');
    is($r1->{protocol}, 'chat', '... subprotocol negotiated by adopt');
    is_deeply($r1->{close}, [ 1000, '' ], '... clean close');
    is($r2->{reply}, 'echo:two', 'second client: handshake and echo');
    is($r2->{protocol}, undef, '... no subprotocol offered, none chosen');
    is_deeply(\@io, [ ('IO::Socket::INET') x 2 ], 'psgix.io is a socket handle');
    is_deeply(\@state, [ 'connected', 'connected' ], 'adopt returned connected connections');
    is_deeply($s{connect}, [ [undef], [undef] ], 'server on_connect with undef headers');
    is_deeply($s{message}, [ [ 'one', 0, 1 ], [ 'two', 0, 1 ] ], 'server on_message');
    is_deeply([ map { $_->{Path} } @hs ], [ '/chat', '/other' ], 'on_handshake sees the rebuilt Path');
    is($hs[0]{Query}, 'room=1', '... and Query');
    is($hs[0]{Host}, "127.0.0.1:$port", '... and Host');
    is($noise, '', 'nothing on STDERR (no Feersum or descriptor complaints)');
};

# Feersum 1.41 closes the descriptor under psgix.io as soon as the request
# is over.  The module holds the psgix.io handle until the WebSocket ends and
# then lets it go, and Perl closes that descriptor number again.  A socket
# opened in between (here our second client's, which the Rust core opens
# without PerlIO) gets that number and would be closed under it.
# A PSGI app adopts psgix.io as $handle_of->($env) gives it; a first client
# echoes and closes while a second one, connected meanwhile, must keep
# working (its descriptor may reuse the first one's number).  Returns what
# was seen and what went to STDERR.
sub psgi_reuse_case {
    my ($handle_of) = @_;
    my ($server_close, $adopted);
    $ctx = EV::Websockets::Context->new;
    $feersum->psgi_request_handler(sub {
        my $env = shift;
        $ctx->adopt(
            fh           => $handle_of->($env),
            initial_data => upgrade_request($env),
            on_connect   => sub { $adopted = 1 },
            on_message   => $echo,
            on_close     => sub { $server_close //= $_[1] },
        );
        return sub { };
    });
    my ($first, $second);
    my $noise = stderr_of(sub {
        $first = open_client('/first');
        run_until(sub { $first->{connect} && $adopted });
        $first->{conn}->send('ping');
        run_until(sub { @{ $first->{messages} } });
        $second = second_survives_first($first, sub { $server_close });
    });
    is_deeply($first->{messages}, ['echo:ping'], 'first client: echo');
    is($first->{close}[0], 1000, 'first client closed with 1000');
    is($server_close, 1000, 'server on_close for it');
    is_deeply($second->{messages}, [ 'echo:before', 'echo:after' ],
        'a client connected meanwhile still works after the first one ends');
    is($second->{error}, undef, '... no error');
    is($second->{close}, undef, '... not closed');
    return $noise;
}

subtest 'PSGI: the end of an adopted psgix.io does not close a reused descriptor' => sub {
    my $noise = psgi_reuse_case(sub { $_[0]{'psgix.io'} });
    is($noise, '', 'nothing on STDERR');
};

subtest 'PSGI: adopting a duplicate of psgix.io' => sub {
    my $noise = psgi_reuse_case(sub {
        open(my $fh, '+<&', $_[0]{'psgix.io'}) or die "dup: $!";
        return $fh;
    });
    # Feersum 1.41 and the psgix.io handle both close the original
    # descriptor as the request ends; Feersum reports its own failed close.
    is_deeply([ grep { $_ ne 'close at destruction: Bad file descriptor' } split /\n/, $noise ], [],
        'nothing on STDERR but Feersum 1.41\'s note about its double close');
};

# A client that sends its first frame in the same write as the upgrade
# request: Feersum reads both, and pushes what follows the request head back
# into psgix.io's PerlIO buffer, where adopt takes it from.
subtest 'PSGI: a frame right behind the upgrade request is served' => sub {
    my %s;
    $ctx = EV::Websockets::Context->new;
    $feersum->psgi_request_handler(sub {
        my $env = shift;
        $ctx->adopt(fh => $env->{'psgix.io'}, initial_data => upgrade_request($env),
            recording(\%s, on_message => $echo));
        return sub { };
    });
    my $request = "GET /eager HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        . "Sec-WebSocket-Version: 13\r\n\r\n";
    my $frame = RawPeer::frame({ mode => 'client' }, opcode => 1, payload => 'eager');
    my $peer;
    my $noise = stderr_of(sub {
        $peer = RawPeer->client(port => $port, request => $request . $frame);
        run_until(sub { $peer->messages || $peer->{eof} });
        $peer->send_frame(opcode => 8, payload => RawPeer::close_payload(1000, ''));
        run_until(sub { $peer->{eof} && $s{close} });
    });
    ok($peer->{open}, 'upgraded');
    is_deeply([ $peer->messages ], [ [ 1, 'echo:eager' ] ], 'the frame sent with the request is echoed');
    is_deeply($s{message}, [ [ 'eager', 0, 1 ] ], '... once');
    is_deeply($s{close}, [ [ 1000, '' ] ], 'closed cleanly');
    is($noise, '', 'nothing on STDERR');
};

subtest 'native request_handler' => sub {
    my (%s, @how, @state);
    $ctx = EV::Websockets::Context->new;
    $feersum->request_handler(sub {
        my $req = shift;
        my $env = $req->env;
        if (($env->{HTTP_UPGRADE} // '') !~ /websocket/i) {
            $req->send_response(400, [ 'Content-Type' => 'text/plain' ], \"not a websocket\n");
            return;
        }
        my $fh;
        if ($req->can('io')) {    # newer Feersum hands the socket over
            $fh = $req->io;
            push @how, 'io';
        }
        else {                    # 1.41: a dup of the descriptor; Feersum closes its own
            open($fh, '+<&', $req->fileno) or die "dup: $!";
            push @how, 'fileno';
        }
        my $conn = $ctx->adopt(
            fh           => $fh,
            initial_data => upgrade_request($env),
            protocol     => [ 'v2', 'v1' ],
            headers      => { 'X-Served-By' => 'feersum-native' },
            recording(\%s, on_message => $echo),
        );
        push @state, $conn->state;
        return;
    });

    my ($r, $first, $second);
    my $noise = stderr_of(sub {
        $r = ws_roundtrip("ws://127.0.0.1:$port/native", protocol => 'v1, v2', message => 'native');
        $first = open_client('/held');
        run_until(sub { $first->{connect} && @{ $s{connect} || [] } == 2 });
        $first->{conn}->send('held');
        run_until(sub { @{ $first->{messages} } });
        $second = second_survives_first($first, sub { @{ $s{close} || [] } == 2 });
    });
    is($r->{reply}, 'echo:native', 'handshake and echo');
    is($r->{protocol}, 'v2', "... the adopter's first choice of protocol");
    is($r->{headers}{'X-Served-By'}, 'feersum-native', '... headers from adopt');
    is_deeply($r->{close}, [ 1000, '' ], '... clean close');
    is_deeply(\@how, [ ('fileno') x 3 ], 'Feersum 1.41: the socket comes from $req->fileno')
        if !Feersum::Connection->can('io');
    is_deeply($first->{messages}, ['echo:held'], 'a held client: echo');
    is_deeply(\@state, [ ('connected') x 3 ], 'adopt returned connected connections');
    is_deeply($s{connect}, [ ([undef]) x 3 ], 'server on_connect with undef headers');
    is_deeply($s{close}, [ [ 1000, '' ], [ 1000, 'done' ] ], 'server on_close for the two that ended');
    is_deeply($second->{messages}, [ 'echo:before', 'echo:after' ],
        'a client connected meanwhile still works after the held one ends');
    is($second->{error}, undef, '... no error');
    is($noise, '', 'nothing on STDERR');
};

done_testing;
