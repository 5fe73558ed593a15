# Proves: closing a wss:// connection loses nothing still on its way out, and
# close_timeout ends a close with a peer that never reads.
# POD: EV::Websockets, "close" and "TLS".
#
# Closing a wss:// connection loses nothing that is still on its way out.
# With TLS an empty send queue does not mean the bytes left: the TLS
# session holds records until the kernel takes them.  The peer perl runs
# with t/shim/short_writes.c preloaded (each socket write takes at most
# 1000 bytes, and the next one finds the socket full), so its session
# keeps up to 64 KB for many loop iterations; it sends large messages and
# closes.  The other side must get every byte (length and SHA-256), then
# a clean 1000 close: for a server-initiated close, one crossed by the
# client's close, a client-initiated close, and simultaneous closes after
# a small and a 200 KB message from the client.  And
# close_timeout still ends a closing handshake with a peer that never
# reads.  (src/connection/session.rs has the same cases with small
# socket buffers.)
use strict;
use warnings;
use Test::More;
use Config;
use EV;
use EV::Websockets;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(90, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $CERTS = 't/certs';
my $PEER  = 't/bin/tls_close_peer.pl';
my $dir   = tempdir(CLEANUP => 1);

# The shim, built with perl's C compiler or else the system's cc.  Without
# one the test skips, except in CI, where it must run.
my $shim = "$dir/short_writes.so";
my $built;
for my $cc (grep { defined && length } $Config{cc}, 'cc') {
    $built = system("$cc -shared -fPIC -o $shim t/shim/short_writes.c -ldl >/dev/null 2>&1") == 0 and last;
}
need_peer('a C compiler for t/shim/short_writes.c', $built, 'cannot build t/shim/short_writes.c: no C compiler');

# $bytes bytes that differ everywhere, starting with $tag (as the peer's
# big_message).
sub big_message {
    my ($tag, $bytes) = @_;
    return substr($tag . pack('N*', map { $_ * 2654435761 % 4294967296 } 0 .. $bytes / 4), 0, $bytes);
}
sub summary { return sprintf '%d %s', length $_[0], sha256_hex($_[0]) }

# Start the peer perl with the shim: 'server', @actions or 'client',
# $port, @actions (see t/bin/tls_close_peer.pl).  Returns ($daemon, $log).
my $spawned = 0;
sub spawn_peer {
    my (@args) = @_;
    local $ENV{LD_PRELOAD} = join ' ', grep { defined && length } $ENV{LD_PRELOAD}, $shim;
    my $log = "$dir/peer-" . ++$spawned . '.log';
    return (spawn_daemon([ $^X, '-Iblib/lib', '-Iblib/arch', $PEER, @args ], $log), $log);
}

# Wait for the peer to exit (it does after its on_close); returns its
# output: the lines, and the summaries of the messages it sent.
sub peer_output {
    my ($d, $log) = @_;
    run_until(sub { defined $d->{status} }, 15);
    is(stop_daemon($d), 0, 'the peer exited after its on_close') or diag(slurp($log));
    my @lines = split /\n/, slurp($log);
    my @sent  = map { /^sent (.*)/ ? $1 : () } @lines;
    return ([ grep { !/^sent / } @lines ], \@sent);
}

# Callbacks that record our side's events in %$r; a callback in %extra
# runs after the recording, other options pass through.  Messages are
# kept whole and summed up later (digests inside on_message would slow
# down the close that follows).
sub ours {
    my ($r, %extra) = @_;
    my %record = (
        on_message => sub { push @{ $r->{data} }, $_[1] },
        on_error   => sub { push @{ $r->{errors} }, $_[1] },
        on_close   => sub { $r->{close} = [ $_[1], $_[2] ] },
    );
    for my $name (keys %record) {
        my $user = delete $extra{$name} or next;
        my $record = $record{$name};
        $record{$name} = sub { $record->(@_); $user->(@_) };
    }
    return (%record, %extra);
}

# Our client against a peer server doing @actions; %opt goes to connect.
# Returns (our events, the peer's lines, what the peer sent, the port).
sub against_peer_server {
    my ($actions, %opt) = @_;
    my ($d, $log) = spawn_peer(server => @$actions);
    my $port = printed_port($d, $log);
    my %r;
    if (!$port) {
        fail('the peer server started') or diag(slurp($log));
        return (\%r, [], [], 0);
    }
    my $ctx  = EV::Websockets::Context->new(ssl_ca => "$CERTS/ca.pem");
    my $conn = $ctx->connect(url => "wss://127.0.0.1:$port/", compression => 0, ours(\%r, %opt));
    ok(run_until(sub { $r{close} }, 15), 'our client closed');
    $r{messages} = [ map { summary($_) } @{ delete $r{data} || [] } ];
    return (\%r, peer_output($d, $log), $port);
}

sub tls_listen {
    my ($ctx, @opt) = @_;
    return $ctx->listen(
        port     => 0,
        host     => '127.0.0.1',
        ssl_cert => "$CERTS/server.pem",
        ssl_key  => "$CERTS/server-key.pem",
        @opt,
    );
}

subtest 'the server sends 200 KB and closes at once' => sub {
    my ($r, $lines, $sent, $port) = against_peer_server([ 'send:server:204800', 'close' ]);
    is_deeply($sent, [ summary(big_message('server', 204800)) ], 'the peer sent the 200 KB');
    is_deeply($r->{messages}, $sent, 'all of it arrived (length, digest)');
    is_deeply($r->{close}, [ 1000, 'done' ], "then the server's clean 1000 close");
    is_deeply($r->{errors} || [], [], 'no error');
    is_deeply($lines, [ $port, 'close 1000 ' ], 'the server got our echo of its close');
};

subtest "the closes cross while the server's last 60 KB wait in TLS" => sub {
    my ($r, $lines, $sent, $port) = against_peer_server(
        [ 'send:hello:16', 'wait-drain', 'send:tail:61440', 'close' ],
        on_message => sub { $_[0]->close(1000, 'bye') },    # on "hello" (a no-op after)
    );
    is_deeply($r->{messages}, $sent, 'both messages arrived whole (length, digest)');
    is_deeply($r->{close}, [ 1000, 'done' ], "then the server's clean 1000 close");
    is_deeply($r->{errors} || [], [], 'no error');
    is_deeply($lines, [ $port, 'close 1000 bye' ], 'the server got our close');
};

subtest 'the client sends 200 KB and closes at once' => sub {
    my %r;
    my $ctx  = EV::Websockets::Context->new;
    my $port = tls_listen($ctx, ours(\%r));
    my ($d, $log) = spawn_peer(client => $port, 'send:client:204800', 'close');
    ok(run_until(sub { $r{close} }, 15), 'our server closed');
    $r{messages} = [ map { summary($_) } @{ delete $r{data} || [] } ];
    my ($lines, $sent) = peer_output($d, $log);
    is_deeply($sent, [ summary(big_message('client', 204800)) ], 'the peer sent the 200 KB');
    is_deeply($r{messages}, $sent, 'all of it arrived (length, digest)');
    is_deeply($r{close}, [ 1000, 'done' ], "then the client's clean 1000 close");
    is_deeply($r{errors} || [], [], 'no error');
    is_deeply($lines, [ 'close 1000 ' ], 'the client got our echo of its close');
};

# Both send and close at once: the server's message waits in TLS while
# the closes cross, small and then 200 KB each way.
for my $size ([ 61440, 2000 ], [ 204800, 204800 ]) {
    my ($theirs, $mine) = @$size;
    subtest "both send ($theirs and $mine bytes) and close at once" => sub {
        my $ours = big_message('client', $mine);
        my ($r, $lines, $sent, $port) = against_peer_server(
            [ "send:server:$theirs", 'close' ],
            on_connect => sub { $_[0]->send_binary($ours); $_[0]->close(1000, 'bye') },
        );
        is_deeply($r->{messages}, $sent, "the server's message arrived whole (length, digest)");
        is_deeply($r->{close}, [ 1000, 'done' ], "then the server's clean 1000 close");
        is_deeply($r->{errors} || [], [], 'no error');
        is_deeply($lines, [ $port, 'message ' . summary($ours), 'close 1000 bye' ],
            'the server got our whole message, then our close');
    };
}

subtest 'close_timeout still ends a close to a peer that never reads' => sub {
    my (%r, $closing_at);
    my $big  = 'x' x (16 << 20);    # more than the kernel buffers
    my $sctx = EV::Websockets::Context->new;
    my $port = tls_listen($sctx, close_timeout => 0.5, ours(\%r, on_connect => sub {
        $_[0]->send_binary($big);
        $_[0]->close(1000, 'done');
        $closing_at = EV::now;
    }));
    my $cctx   = EV::Websockets::Context->new(ssl_ca => "$CERTS/ca.pem");
    my $client = $cctx->connect(
        url        => "wss://127.0.0.1:$port/",
        compression => 0,
        on_connect => sub { $_[0]->pause_recv },
    );
    ok(run_until(sub { $r{close} }, 10), 'the server gave up on the closing handshake');
    my $took = EV::now - ($closing_at // 0);
    cmp_ok($took, '>=', 0.4, sprintf 'after close_timeout (%.2f s)', $took);
    cmp_ok($took, '<', 3, '... not much later');
    is_deeply($r{close}, [ 1006, undef ], 'with 1006: no close frame came');
};

done_testing;
