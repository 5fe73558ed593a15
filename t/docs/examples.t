# Proves: each example in eg/ does what its header says and shuts down
# cleanly.
# POD: README.pod, "EXAMPLES"; EV::Websockets, "EXAMPLES".
#
# Smoke test of the examples in eg/ (other than demo.pl, echo_* and
# feersum_*, tested by t/docs/demo.t and t/docs/feersum-examples.t): each runs
# in a child perl (t/lib/Example.pm), and our client (or server, for the
# client examples) on 127.0.0.1 checks that it does what its header says.
# Every server example must also shut down on SIGTERM, closing an open
# client with 1001, and exit 0 without a warning.  About 5 seconds; the
# longest waits are router.pl's /time ticks (1 s apart) and the keepalive
# and reconnect timers, all shortened by options where the examples have
# them.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use Digest::SHA qw(sha256);
use File::Temp qw(tempdir);
use lib 't/lib';
use TestWS;
use RawPeer;
use Example;

my $guard = EV::timer(28, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $REFUSED = 'handshake failed: HTTP 403 Forbidden';

# A client connection from a context of its own, recording its events in
# the returned hash (see TestWS::recording; $ev->{conn} is the connection).
# Waits (at most 5 s) until it is open or failed.
sub client {
    my ($url, %opt) = @_;
    my $ev = { ctx => EV::Websockets::Context->new(%{ delete $opt{ctx_opt} || {} }) };
    $ev->{conn} = $ev->{ctx}->connect(url => $url, connect_timeout => 5, recording($ev, %opt));
    run_until(sub { $ev->{connect} || $ev->{error} });
    return $ev;
}

# The data of the messages a client received, in order.
sub texts { return map { $_->[0] } @{ $_[0]{message} || [] } }

# Wait until the client got at least $n messages.
sub got_messages {
    my ($ev, $n, $secs) = @_;
    return run_until(sub { @{ $ev->{message} || [] } >= $n || $ev->{close} || $ev->{error} }, $secs);
}

# The example $script started with @args: checks that it printed its port.
# Returns ($example, $port).
sub start_server {
    my ($script, @args) = @_;
    my $ex   = Example->start($script, @args);
    my $port = $ex->port;
    ok($port, "$script is listening") or diag $ex->output;
    return ($ex, $port);
}

# An upgrade to $url is refused with 403.
sub refused_ok {
    my ($url, $what) = @_;
    my $r = ws_roundtrip($url);
    is($r->{error}, $REFUSED, "$what: refused with 403");
    ok(!$r->{connected}, '... and never opened');
}

# SIGTERM: the open client $held is closed with 1001 ($reason), the example
# exits 0, and printed neither an exception nor a warning.
sub shutdown_ok {
    my ($ex, $held, $reason) = @_;
    ok($held->{connect}, 'a client is open') or return;
    $ex->signal('TERM');
    ok(run_until(sub { $held->{close} || $held->{error} }, 4), 'SIGTERM: the open client is closed');
    is_deeply($held->{close}, [ [ 1001, $reason ] ], "... with 1001 \"$reason\"");
    exits_ok($ex, 0);
}

# The example prints (or has printed) a line matching $re.  Output that
# follows a network event may come a moment after it: wait for it.
sub printed_ok {
    my ($ex, $re, $name) = @_;
    ok(scalar $ex->wait_for($re), $name) or diag $ex->output;
}

# The example exits with $code and a clean output.
sub exits_ok {
    my ($ex, $code) = @_;
    my $got = $ex->wait_exit(5);
    $ex->stop unless defined $got;
    is($got, $code, "$ex->{script} exits $code");
    ok($ex->clean, '... without an exception or a warning') or diag $ex->output;
}

subtest 'chat_server.pl: rooms, token authentication, client mode' => sub {
    my ($ex, $port) = start_server('eg/chat_server.pl', qw(--port 0 --user alice=a-token --user bob=b-token));
    my $base = "ws://127.0.0.1:$port";

    # alice joins the lobby with a token in the query, bob with a header.
    my $alice = client("$base/room/lobby?token=a-token");
    ok(got_messages($alice, 2), 'alice is in') or diag $ex->output;
    is_deeply([ texts($alice) ], [ '* welcome to #lobby, alice; here: nobody else', '* alice joined #lobby' ],
        'alice: welcome, then her own join notice');
    my $bob = client("$base/room/lobby", headers => { Authorization => 'Bearer b-token' });
    ok(got_messages($bob, 2) && got_messages($alice, 3), 'bob is in (token in a header)');
    is((texts($bob))[0], '* welcome to #lobby, bob; here: alice', 'bob is told who is here');
    is((texts($alice))[2], '* bob joined #lobby', 'alice hears bob join');

    # alice again, in another room: she must not hear the lobby.
    my $attic = client("$base/room/attic?token=a-token");
    ok(got_messages($attic, 2), 'a member of another room');

    $alice->{conn}->send("hi bob, caf\N{U+E9}");
    ok(got_messages($bob, 3) && got_messages($alice, 4), 'a line in the lobby');
    is((texts($bob))[2], "<alice> hi bob, caf\xc3\xa9", 'bob hears alice, with her name (UTF-8 intact)');
    is((texts($alice))[3], "<alice> hi bob, caf\xc3\xa9", '... and so does alice');

    # Refusals happen in on_handshake: 403, nothing opens.
    refused_ok("$base/room/lobby?token=wrong", 'a wrong token');
    refused_ok("$base/room/lobby",             'no token');
    refused_ok("$base/lobby?token=a-token",    'a path that is no room');
    printed_ok($ex, qr{^refused /room/lobby \(bad path or token\)$}m, 'the server logged a refusal');

    # The client mode of the script, as bob, fed through its standard input.
    my $cli = Example->start('eg/chat_server.pl', '--client', "$base/room/lobby?token=b-token", stdin => 1);
    ok($cli->wait_for(qr/^\* welcome to #lobby, bob; here: (?:alice, bob|bob, alice)$/m), 'client mode: joined the lobby')
        or diag $cli->output;
    $cli->write_stdin("hello from the cli\n");
    ok(got_messages($alice, 6), 'a line typed into the client mode') or diag $cli->output;
    is((texts($alice))[5], '<bob> hello from the cli', '... reaches alice');
    $alice->{conn}->send('hi cli');
    ok($cli->wait_for(qr/^<alice> hi cli$/m), 'client mode prints what the room says');
    $cli->close_stdin;
    exits_ok($cli, 0);
    like($cli->output, qr/^closed: 1000$/m, 'client mode: the end of input leaves with 1000');
    ok(got_messages($alice, 8), 'alice hears the client mode leave');
    is((texts($alice))[7], '* bob left #lobby', '... as "bob left"');

    is(scalar(grep { /^<alice>/ } texts($attic)), 0, 'the other room heard nothing of the lobby');
    shutdown_ok($ex, $alice, 'server shutting down');
    is((texts($alice))[-1], '* server shutting down', 'members are told before the close');
};

subtest 'tls_server.pl: wss:// echo, trusted with ssl_ca' => sub {
    my ($ex, $port) = start_server('eg/tls_server.pl', qw(--port 0));
    like($ex->output, qr{^listening on wss://}m, 'it serves wss://');
    my $url = "wss://127.0.0.1:$port/tls";
    my $r = ctx_roundtrip(EV::Websockets::Context->new(ssl_ca => 't/certs/ca.pem'), $url, message => 'over TLS');
    is($r->{reply}, 'over TLS', 'echo over wss:// for a client trusting the test CA');
    $r = ctx_roundtrip(EV::Websockets::Context->new, $url);
    like($r->{errors}[0] // '', qr/^TLS handshake failed: the server's certificate is not signed by a CA in ssl_ca /, 'without ssl_ca the certificate is not trusted');

    # The script's own client mode.
    my $cli = Example->start('eg/tls_server.pl', '--client', $url, '--message', "caf\xc3\xa9");
    exits_ok($cli, 0);
    like($cli->output, qr/^echo ok: caf\xc3\xa9$/m, 'client mode: its message echoed');
    $cli = Example->start('eg/tls_server.pl', '--client', $url, '--ca', 't/certs/other-ca.pem');
    is($cli->wait_exit, 1, 'client mode trusting another CA fails');
    like($cli->output, qr/^error: TLS handshake failed: the server's certificate is not signed by a CA in ssl_ca /m, '... with a TLS error');

    shutdown_ok($ex, client($url, ctx_opt => { ssl_ca => 't/certs/ca.pem' }), 'server shutting down');
};

subtest 'make_certs.pl: a CA and a server certificate for tls_server.pl' => sub {
    my $dir = tempdir(CLEANUP => 1);
    my $mk  = Example->start('eg/make_certs.pl', '--dir', $dir);
    exits_ok($mk, 0);
    like($mk->output, qr/^made a server certificate for localhost 127\.0\.0\.1 ::1: /m, 'it names the hosts');
    my ($ex, $port) = start_server('eg/tls_server.pl', '--port', 0,
        '--cert', "$dir/server.pem", '--key', "$dir/server-key.pem");
    my $cli = Example->start('eg/tls_server.pl', '--client', "wss://127.0.0.1:$port/", '--ca', "$dir/ca.pem");
    exits_ok($cli, 0);
    like($cli->output, qr/^echo ok: /m, 'the client trusting the new CA gets its echo');
    $cli = Example->start('eg/tls_server.pl', '--client', "wss://127.0.0.1:$port/");
    is($cli->wait_exit, 1, 'trusting the test CA instead fails');
    shutdown_ok($ex, client("wss://127.0.0.1:$port/", ctx_opt => { ssl_ca => "$dir/ca.pem" }), 'server shutting down');
};

subtest 'binary.pl: chunked binary upload checked with SHA-256' => sub {
    my $ex = Example->start('eg/binary.pl', qw(--size 200000 --chunk 30000));
    exits_ok($ex, 0);
    like($ex->output, qr/digest ok$/m, 'in-process: the server computed the same digest');
    like($ex->output, qr/^client: server confirms 200000 bytes, same sha256: transfer intact$/m, '... and the client says so');

    $ex = Example->start('eg/binary.pl', qw(--size 1000 --corrupt));
    exits_ok($ex, 1);
    like($ex->output, qr/DIGEST MISMATCH$/m, '--corrupt: the server notices');
    like($ex->output, qr/transfer DAMAGED$/m, '... and the client');

    # The server alone, driven with the documented packed messages.
    my $port;
    ($ex, $port) = start_server('eg/binary.pl', qw(--server --port 0));
    my $data  = pack 'C*', map { ($_ * 7) & 255 } 1 .. 100_000;
    my $ev = client("ws://127.0.0.1:$port/");
    my $conn = $ev->{conn};
    $conn->send_binary(pack 'a4 N n/a*', 'FILE', length $data, 'test.bin');
    my $seq = 0;
    $conn->send_binary(pack('a4 N', 'DATA', $seq++) . substr($data, $_ * 40000, 40000)) for 0 .. 2;
    $conn->send_binary(pack 'a4 N a32', 'DONE', $seq, sha256($data));
    ok(got_messages($ev, 1), 'a receipt');
    my ($type, $ok, $chunks, $bytes, $digest) = unpack 'a4 C N N a32', (texts($ev))[0] // '';
    is_deeply([ $type, $ok, $chunks, $bytes ], [ 'RCPT', 1, 3, 100_000 ], 'RCPT: ok, 3 chunks, 100000 bytes');
    is($digest, sha256($data), '... with the digest of the data');
    is($ev->{message}[0][1], 1, '... as a binary message');
    $conn->send('text is refused');
    ok(run_until(sub { $ev->{close} }), 'a text message ends the upload');
    is($ev->{close}[0][0], 1003, '... with 1003');

    # The client alone, against that server, with a file.
    my $cli = Example->start('eg/binary.pl', '--url', "ws://127.0.0.1:$port/", '--file', 't/certs/ca.pem');
    exits_ok($cli, 0);
    like($cli->output, qr/^client: server confirms \d+ bytes, same sha256: transfer intact$/m, '--url --file: intact');
    shutdown_ok($ex, client("ws://127.0.0.1:$port/"), 'server shutting down');
};

subtest 'backpressure.pl: all data arrives, the queue stays bounded' => sub {
    my ($high, $chunk) = (256 * 1024, 64 * 1024);
    # The example's report: "peak queue N bytes (high-water H + chunk C)".
    my $peak_ok = sub {
        my ($ex) = @_;
        my ($peak) = $ex->output =~ /peak queue (\d+) bytes/;
        ok(defined $peak && $peak > 0 && $peak <= $high + $chunk,
            'peak queue within high-water + chunk (' . ($peak // 'not reported') . ')') or diag $ex->output;
        my ($waits) = $ex->output =~ /waited for on_drain (\d+) times\n(?!.*waited for)/s;
        ok($waits, 'it waited for on_drain (' . ($waits // 0) . ' times)');
    };

    my $ex = Example->start('eg/backpressure.pl', qw(--total 4M --chunk 64K --high 256K --rate 64M));
    exits_ok($ex, 0);
    like($ex->output, qr/^consumer: got everything: 64 messages, 4194304 bytes, in order$/m,
        'in-process: the slow consumer got everything, in order');
    $peak_ok->($ex);

    # The producer alone, against our own slow consumer: it pauses reading
    # after each message and resumes a moment later.
    my (@seq, $bytes, $resume);
    my $consumer = EV::Websockets::Context->new;
    my $port = $consumer->listen(
        port       => 0,
        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            if (!$is_binary) {    # the producer's summary: "end <messages> <bytes>"
                $conn->send($data eq 'end ' . @seq . " $bytes" ? 'ok got it' : "bad: $data");
                return;
            }
            push @seq, unpack 'N', $data;
            $bytes += length $data;
            $conn->pause_recv;
            $resume = EV::timer(0.002, 0, sub { $conn->resume_recv });
        },
    );
    $ex = Example->start('eg/backpressure.pl', '--url', "ws://127.0.0.1:$port/", qw(--total 2M --chunk 64K --high 256K));
    exits_ok($ex, 0);
    is($bytes, 2 * 1024 * 1024, 'our consumer got every byte');
    is_deeply(\@seq, [ 0 .. 31 ], '... in 32 messages, in order');
    like($ex->output, qr/^producer: consumer says: ok got it$/m, 'the producer sent its summary');
    $peak_ok->($ex);
    undef $resume;
};

subtest 'reconnect.pl: exponential backoff, reset after success' => sub {
    my ($port, $server);
    my $listen = sub {
        $server = { ctx => EV::Websockets::Context->new };
        $port = $server->{ctx}->listen(port => $port // 0, recording($server));
    };
    $listen->();
    my $ex = Example->start('eg/reconnect.pl', '--url', "ws://127.0.0.1:$port/",
        qw(--base 0.05 --max-delay 0.4 --max-attempts 50));
    my $hello = sub {    # the server heard connection #$n say hello
        my ($n) = @_;
        return run_until(sub { grep { $_->[0] eq "hello, this is connection #$n" } @{ $server->{message} || [] } });
    };
    my $server_conn = sub { (grep { $_->state eq 'connected' } $server->{ctx}->connections)[0] };

    ok($hello->(1), 'connected, said hello') or diag $ex->output;

    # The server drops it: it comes back.
    $server_conn->()->close(1012, 'restarting');
    ok($hello->(2), 'after the server closed it, it reconnected') or diag $ex->output;
    printed_ok($ex, qr/^closed: 1012 restarting\nreconnecting in [\d.]+ s \(attempt 1\)$/m, '... after one backoff');

    # The server goes away: attempts fail and the waits grow.
    undef $server;
    ok(run_until(sub { $ex->count(qr/Connection refused/) >= 3 }), 'with the server gone, attempts fail')
        or diag $ex->output;
    $listen->();    # and is back, on the same port
    ok($hello->(3), 'once the server is back, it reconnected') or diag $ex->output;
    printed_ok($ex, qr/^connected \(connection #3, after ([4-9]|\d\d) failed attempt\(s\)\)$/m, '... after several failed attempts');
    my $out = $ex->output;

    # Each wait is base * 2**(attempt-1), at most max-delay, times a jitter
    # factor between 1/2 and 1 (printed to the millisecond).
    my @lines = $out =~ /^reconnecting in ([\d.]+) s \(attempt (\d+)\)$/mg;
    my @gone  = map { [ @lines[ 2 * $_, 2 * $_ + 1 ] ] } 1 .. @lines / 2 - 1;    # after the first drop
    is_deeply([ map { $_->[1] } @gone ], [ 1 .. @gone ], 'attempts counted 1, 2, 3... while the server was gone');
    my @bad = grep {
        my ($delay, $n) = @$_;
        my $full = 0.05 * 2**($n - 1);
        $full = 0.4 if $full > 0.4;
        $delay < $full / 2 - 0.001 || $delay > $full + 0.001;
    } @gone;
    is_deeply(\@bad, [], 'each wait between half and all of min(0.4, 0.05 * 2**(attempt-1))');

    # A successful connection reset the count: the next drop is attempt 1.
    $server_conn->()->close(1012, 'restarting');
    ok($hello->(4), 'dropped again, reconnected again');
    ok(run_until(sub { substr($ex->output, length $out) =~ /^reconnecting in [\d.]+ s \(attempt 1\)$/m }),
        '... starting over at attempt 1') or diag $ex->output;

    ok(run_until(sub { $server_conn->() }), 'open');
    $ex->signal('TERM');
    ok(run_until(sub { grep { $_->[0] != 1012 } @{ $server->{close} || [] } }), 'SIGTERM: it closes');
    is_deeply($server->{close}[-1], [ 1001, 'going away' ], '... with 1001 "going away"');
    exits_ok($ex, 0);

    # Bounded: it gives up.
    $ex = Example->start('eg/reconnect.pl', '--url', 'ws://127.0.0.1:' . closed_port() . '/',
        qw(--base 0.01 --max-attempts 3));
    exits_ok($ex, 1);
    is($ex->count(qr/connect failed: Connection refused/), 3, '--max-attempts 3: three attempts');
    like($ex->output, qr/^giving up after 3 failed attempt\(s\)$/m, '... then it gives up');
};

subtest 'keepalive.pl: pongs, and a silent peer detected' => sub {
    # The demo: the in-process server stops reading after 2 pongs.
    my $ex = Example->start('eg/keepalive.pl', qw(--interval 0.1 --timeout 0.2 --pongs 2));
    exits_ok($ex, 0);
    like($ex->output, qr/client: pong #2: the server is alive/, 'demo: pongs');
    like($ex->output, qr/client: error: ping timeout\n.*client: closed: 1011 ping timeout$/m,
        'demo: the hung server is detected: "ping timeout", then 1011');

    # Client mode against a raw peer that answers pings, then stops.
    my $peer = RawPeer->server;
    $ex = Example->start('eg/keepalive.pl', '--url', 'ws://127.0.0.1:' . $peer->port . '/', qw(--interval 0.1 --timeout 0.2));
    ok($ex->wait_for(qr/pong #2/), 'client mode: pongs from a live peer') or diag $ex->output;
    cmp_ok(scalar $peer->frames_of(9), '>=', 2, '... answering its pings');
    $peer->{auto_pong} = 0;    # the peer goes silent
    ok(run_until(sub { $peer->{got_close} }, 3), 'the silent peer is closed');
    is($peer->{close_code}, 1011, '... with 1011');
    exits_ok($ex, 1);
    like($ex->output, qr/error: ping timeout\n.*closed: 1011 ping timeout$/m, '... after "ping timeout"');

    # Server mode: a client that never answers pings is dropped.
    my $port;
    ($ex, $port) = start_server('eg/keepalive.pl', qw(--server --port 0 --interval 0.1 --timeout 0.2));
    my $silent = RawPeer->client(port => $port, auto_pong => 0);
    ok(run_until(sub { $silent->{got_close} }, 3), 'server mode: a silent client is closed');
    is($silent->{close_code}, 1011, '... with 1011');
    printed_ok($ex, qr/server: error: ping timeout/, '... after "ping timeout"');
    shutdown_ok($ex, client("ws://127.0.0.1:$port/"), 'going away');
};

subtest 'router.pl: one listener, routes by path' => sub {
    my ($ex, $port) = start_server('eg/router.pl', 0);
    my $base = "ws://127.0.0.1:$port";

    my $echo = client("$base/echo", on_connect => sub { $_[0]->send('text'); $_[0]->send_binary("\0\xff") });
    ok(got_messages($echo, 2), '/echo answers');
    is_deeply($echo->{message}, [ [ 'text', 0, 1 ], [ "\0\xff", 1, 1 ] ], '... with the same text and binary');

    is(ws_roundtrip("$base/upper", message => "caf\N{U+E9}")->{reply}, "CAF\xc3\x89", '/upper upper-cases (UTF-8)');

    my $time = client("$base/time");
    ok(got_messages($time, 2, 3), '/time pushes');
    like($_, qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, '... the time') for (texts($time))[0, 1];

    refused_ok("$base/nope",      'an unknown path');
    refused_ok("$base/echo/more", 'a path below a route');
    printed_ok($ex, qr{^refused /nope$}m, 'the server logged it');
    shutdown_ok($ex, $time, 'server shutting down');
};

subtest 'graceful_shutdown.pl: stop listening, close with 1001, wait, exit 0' => sub {
    my ($ex, $port) = start_server('eg/graceful_shutdown.pl', qw(--port 0 --grace 5));
    my $polite = client("ws://127.0.0.1:$port/");
    my $slow   = RawPeer->client(port => $port, reply_close => 0);    # answers closes only when told
    ok(run_until(sub { $slow->{open} && $ex->count(qr/client connected/) == 2 }), 'two clients');

    $ex->signal('TERM');
    ok(run_until(sub { $polite->{close} && $slow->{got_close} }), 'SIGTERM: both are closed');
    is_deeply($polite->{close}, [ [ 1001, 'going away' ] ], '... with 1001 "going away"');
    is($slow->{close_code}, 1001, '... both');
    ok($ex->wait_for(qr/1 connection\(s\) still closing/), 'the server waits for the one that has not answered');
    like(ws_roundtrip("ws://127.0.0.1:$port/")->{error} // '', qr/^connect failed: /,
        'a client arriving during the shutdown is refused: nothing listens');
    ok(!defined $ex->{status}, 'still running');

    $slow->send_frame(opcode => 8, payload => RawPeer::close_payload(1001));
    exits_ok($ex, 0);
    like($ex->output, qr/^all connections closed\nbye$/m, 'it exited once the last client answered');

    # A client that never answers: --grace bounds the wait.
    ($ex, $port) = start_server('eg/graceful_shutdown.pl', qw(--port 0 --grace 0.3));
    my $mute = RawPeer->client(port => $port, reply_close => 0);
    ok(run_until(sub { $mute->{open} && $ex->count(qr/client connected/) }), 'a client that will not answer');
    $ex->signal('TERM');
    exits_ok($ex, 0);
    ok(run_until(sub { $mute->{eof} }), 'it was dropped');
    like($ex->output, qr/^closed: 1006\nall connections closed\nbye$/m, '... with on_close 1006');
};

subtest 'relay.pl: both ways, close codes passed on' => sub {
    my $up = { ctx => EV::Websockets::Context->new };
    my $up_port = echo_server($up->{ctx}, recording($up, on_message => sub {
        my ($conn, $data, $is_binary) = @_;
        $is_binary ? $conn->send_binary($data) : $conn->send($data);
    }));
    my ($ex, $port) = start_server('eg/relay.pl', '--port', 0, '--upstream', "ws://127.0.0.1:$up_port/up");
    my $url = "ws://127.0.0.1:$port/";

    # Sent at once, before the relay's upstream connection is open.
    my $c = client($url, on_connect => sub { $_[0]->send("caf\N{U+E9}"); $_[0]->send_binary("\x00\x01\xfe") });
    ok(got_messages($c, 2), 'messages relayed to the upstream echo and back');
    is_deeply($c->{message}, [ [ "caf\xc3\xa9", 0, 1 ], [ "\x00\x01\xfe", 1, 1 ] ], '... intact, text as text, binary as binary');
    $c->{conn}->close(4001, 'client done');
    ok(run_until(sub { $up->{close} }), 'the client closed: the upstream is closed');
    is_deeply($up->{close}, [ [ 4001, 'client done' ] ], '... with its code and reason');

    # The upstream closes: the client is closed the same way.
    $c = client($url);
    ok(run_until(sub { my @o = $up->{ctx}->connections; @o == 1 }), 'a second pair');
    ($up->{ctx}->connections)[0]->close(4002, 'upstream done');
    ok(run_until(sub { $c->{close} }), 'the upstream closed: the client is closed');
    is_deeply($c->{close}, [ [ 4002, 'upstream done' ] ], '... with its code and reason');
    shutdown_ok($ex, client($url), 'relay shutting down');

    # No upstream at all.
    ($ex, $port) = start_server('eg/relay.pl', '--port', 0, '--upstream', 'ws://127.0.0.1:' . closed_port() . '/');
    $c = client("ws://127.0.0.1:$port/");
    ok(run_until(sub { $c->{close} }), 'an unreachable upstream: the client is closed');
    is_deeply($c->{close}, [ [ 1014, 'bad gateway: upstream unavailable' ] ], '... with 1014');
    is($ex->stop, 0, 'stopped');
};

subtest 'adopt_anyevent.pl: sockets from AnyEvent tcp_server, adopted' => sub {
    plan skip_all => 'AnyEvent is not installed' unless eval { require AnyEvent; 1 };
    my ($ex, $port) = start_server('eg/adopt_anyevent.pl', 0);
    like($ex->output, qr/^AnyEvent backend: AnyEvent::Impl::EV$/m, 'AnyEvent runs on EV');
    my $c = client("ws://127.0.0.1:$port/some/path", on_connect => sub { $_[0]->send('hi'); $_[0]->send_binary("\xff") });
    ok(got_messages($c, 2), 'echoes');
    is_deeply($c->{message}, [ [ '[/some/path] hi', 0, 1 ], [ "[/some/path] \xff", 1, 1 ] ],
        '... prefixed with the path that on_handshake saw');
    printed_ok($ex, qr{^accepted TCP connection #1 from 127\.0\.0\.1:\d+\n#1 upgraded to WebSocket, path /some/path$}m,
        'accepted by AnyEvent, then upgraded');
    shutdown_ok($ex, $c, 'server shutting down');
};

done_testing;
