# Proves: permessage-deflate interoperates with Python websockets, both ways.
# POD: EV::Websockets, "connect" and "listen" (compression); README.pod,
# "TESTS".
#
# permessage-deflate (RFC 7692) against an independent implementation: the
# Python websockets library (t/lib/PyPeer.pm makes a venv with it), in both
# directions.  Our client talks to t/py/ws_echo_server.py with and without
# compression on either side; t/py/ws_client.py talks to our server, with
# and without compression => 1.  Wire byte counts kept by the Python side
# show that compressed messages really went over the wire compressed.
# Everything runs on 127.0.0.1.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use PyPeer qw(python_with_websockets py_script);    # before TestWS, which drops the proxy variables pip may need
use TestWS;
use SampleMessages;
use EV;
use EV::Websockets;
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);

my $PYTHON = need_peer('Python websockets', python_with_websockets());

# Made after the (possibly slow) venv setup above.
my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $TMP = tempdir('ev-ws-pydeflate-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Our client's offer, as the server sees it.
my $OUR_OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';

# Start ws_echo_server.py with @args.  Returns ($daemon, $port, $log), the
# port undef (and a diagnostic printed) if it did not come up within 10 s.
sub start_py_server {
    my (@args) = @_;
    return start_printed_server($TMP,
        [ $PYTHON, py_script('ws_echo_server.py'), '--lifetime', 60, @args ], "ws_echo_server.py @args");
}

# Run ws_client.py with @args to the end (it gives up after 20 s; we wait
# 25) while the loop runs (our server is in this process).  Returns (wait
# status, the decoded JSON line or undef, the whole output).
sub run_py_client {
    my (@args) = @_;
    my ($status, $out) = run_to_end($TMP, [ $PYTHON, py_script('ws_client.py'), '--timeout', 20, @args ], 25);
    my ($json) = json_lines($out);
    return ($status, $json, $out);
}

# The messages our client sends (see t/lib/SampleMessages.pm), with this
# test's own cases.
my @MESSAGES = sample_messages(72,
    # Repeats 20000 bytes back: compressible only with a window over 14
    # bits, so a sender that exceeds the window the receiver allows shows.
    '1 MiB random binary'       => sub { [ 'random 20000-byte block x 8', random_bytes(20000) x 8, 1 ] },
    'the same 2000 bytes again' => sub { fragmented('fragmented text', 0, 'frag-1 ', "frag-2 \xe2\x98\xba ", 'frag-3') },
);

# Connect our client to the Python echo server on $port with %opt, send
# @MESSAGES at once, then "extensions?", then $finish ('close:...' to make
# Python close, or undef to close ourselves once every answer is in).
# Returns a hash ref: headers (on_connect's), got ([data, is_binary] of
# each message), errors, close ([code, reason] of each on_close).
sub talk_to_python {
    my ($port, $finish, %opt) = @_;
    return echo_client($port, \@MESSAGES,
        %opt,
        on_connect => sub {
            my ($c) = @_;
            $c->send('extensions?');
            $c->send($finish) if defined $finish;
        },
        on_message => sub {
            my ($c, $r) = @_;
            $c->close(1000) if !defined $finish && @{ $r->{got} } == @MESSAGES + 1;
        },
    );
}

# Every echo arrived intact, once and in order, followed by the
# "extensions?" answer.  Returns that answer, decoded.
sub echoes_ok {
    my ($r, $name) = @_;
    echoes_intact($r, $name, \@MESSAGES, 1, 'plus the extensions? answer');
    my ($answer, $bin) = @{ $r->{got}[@MESSAGES] || [] };
    is($bin, 0, "$name: extensions? answered with text");
    my $info = eval { decode_json($answer // '') };
    ok($info, "$name: the answer is JSON") or diag($@);
    return $info || {};
}

# ---- (a) our client -> Python server, both compressing ----

subtest 'our client -> Python server: permessage-deflate' => sub {
    my ($d, $port) = start_py_server();
    ok(defined $port, 'the Python server started') or return;
    my $r = talk_to_python($port, 'close:4001:bye');
    my $ext = $r->{headers}{'Sec-WebSocket-Extensions'};
    like($ext // '', qr/^permessage-deflate\b/, 'on_connect headers: Sec-WebSocket-Extensions names permessage-deflate')
        or diag explain $r->{headers};
    my $info = echoes_ok($r, 'deflate');
    is($info->{request}, $OUR_OFFER, 'Python saw our offer');
    is($info->{response}, $ext, "on_connect's header is the server's answer") if defined $ext;
    is(scalar @{ $info->{negotiated} || [] }, 1, 'Python negotiated one extension')
        and like($info->{negotiated}[0], qr/^PerMessageDeflate\(/, '... PerMessageDeflate');
    diag("Python: $info->{negotiated}[0]") if $ENV{TEST_VERBOSE} && $info->{negotiated};
    # 2 MiB + 200 KB of payload, of which only the 1 MiB of random bytes
    # does not compress.
    wire_size_ok($info->{wire_bytes_received}, 1, 'our client');
    is($info->{echoed}, scalar @MESSAGES, 'Python echoed each message once');
    is_deeply($r->{close}, [ [ 4001, 'bye' ] ], 'Python closed with 4001 "bye"');
    is($r->{state}, 'closed', 'the connection is closed');
    stop_daemon($d);
};

# ---- (b) our client with compression => 0 ----

subtest 'our client with compression => 0 -> Python server' => sub {
    my ($d, $port) = start_py_server();
    ok(defined $port, 'the Python server started') or return;
    my $r = talk_to_python($port, undef, compression => 0);
    ok($r->{headers}, 'connected');
    ok(!exists $r->{headers}{'Sec-WebSocket-Extensions'}, 'no Sec-WebSocket-Extensions in the answer')
        or diag explain $r->{headers};
    my $info = echoes_ok($r, 'no offer');
    is($info->{request}, undef, 'Python saw no offer');
    is($info->{response}, undef, 'Python answered none');
    is_deeply($info->{negotiated}, [], 'nothing negotiated');
    wire_size_ok($info->{wire_bytes_received}, 0, 'our client');
    is_deeply($r->{close}, [ [ 1000, '' ] ], 'our close(1000) completed');
    stop_daemon($d);
};

# ---- (b') our client offers, the Python server declines ----

subtest 'our client -> Python server with --no-compression' => sub {
    my ($d, $port) = start_py_server('--no-compression');
    ok(defined $port, 'the Python server started') or return;
    my $r = talk_to_python($port, 'close:4002:declined');
    ok($r->{headers}, 'connected');
    ok(!exists $r->{headers}{'Sec-WebSocket-Extensions'}, 'no Sec-WebSocket-Extensions in the answer')
        or diag explain $r->{headers};
    my $info = echoes_ok($r, 'declined');
    is($info->{request}, $OUR_OFFER, 'Python saw our offer');
    is($info->{response}, undef, '... and declined it');
    is_deeply($info->{negotiated}, [], 'nothing negotiated');
    wire_size_ok($info->{wire_bytes_received}, 0, 'our client');
    is_deeply($r->{close}, [ [ 4002, 'declined' ] ], 'Python closed with 4002 "declined"');
    stop_daemon($d);
};

# ---- (c), (d) Python client -> our server ----

# Our echo server with %opt; run ws_client.py (with @args) against it.
# Returns the client's (status, json, output) and what our server saw:
# handshake (on_handshake's headers), connect (on_connect's), messages,
# close ([code, reason]), errors.
sub python_to_us {
    my ($opt, @args) = @_;
    my %s = (handshake => [], connect => [], messages => 0, close => [], errors => []);
    my $ctx = EV::Websockets::Context->new;
    my $port = echo_server($ctx,
        host         => '127.0.0.1',
        %$opt,
        on_handshake => sub { push @{ $s{handshake} }, { %{ $_[0] } }; 1 },
        on_connect   => sub { push @{ $s{connect} }, $_[1] },
        on_message   => sub {
            my ($c, $data, $binary) = @_;
            $s{messages}++;
            $binary ? $c->send_binary($data) : $c->send($data);
        },
        on_close     => sub { push @{ $s{close} }, [ $_[1], $_[2] ] },
        on_error     => sub { push @{ $s{errors} }, $_[1] },
    );
    my @client = run_py_client("ws://127.0.0.1:$port/", @args);
    run_until(sub { @{ $s{close} } }, 5);
    return (@client, \%s);
}

# The Python client's report: exit 0, every echo correct, clean close.
sub client_ok {
    my ($status, $json, $out, $name) = @_;
    is($status, 0, "$name: ws_client.py exited 0") or diag($out);
    ok($json && $json->{ok}, "$name: ws_client.py reports success") or diag($out);
    $json ||= {};
    my @messages = @{ $json->{messages} || [] };
    is(scalar @messages, 12, "$name: all 12 messages of its script checked");
    is_deeply([ map { $_->{name} } grep { !$_->{ok} } @messages ], [], "$name: every echo correct");
    is($json->{close_code}, 1000, "$name: our server answered the close with 1000");
    return $json;
}

subtest 'Python client -> our server with compression => 1' => sub {
    my ($status, $json, $out, $s) = python_to_us({ compression => 1 });
    $json = client_ok($status, $json, $out, 'deflate');
    like($json->{response_extensions} // '', qr/^permessage-deflate\b/,
        'the 101 carried Sec-WebSocket-Extensions: permessage-deflate') or diag($out);
    is(scalar @{ $json->{negotiated} || [] }, 1, 'Python negotiated one extension')
        and like($json->{negotiated}[0], qr/^PerMessageDeflate\(/, '... PerMessageDeflate');
    diag("answer: $json->{response_extensions}") if $ENV{TEST_VERBOSE} && $json->{response_extensions};
    wire_size_ok($json->{wire_bytes_received}, 1, 'our server');
    is(scalar @{ $s->{handshake} }, 1, 'on_handshake ran once');
    like($s->{handshake}[0]{'Sec-WebSocket-Extensions'} // '', qr/^permessage-deflate\b/,
        'on_handshake saw the offer') or diag explain $s->{handshake};
    like($s->{connect}[0]{'Sec-WebSocket-Extensions'} // '', qr/^permessage-deflate\b/,
        'on_connect saw the offer') or diag explain $s->{connect};
    is($s->{messages}, 12, 'our server got 12 messages');
    is_deeply($s->{errors}, [], 'our server: no errors');
    is_deeply($s->{close}, [ [ 1000, '' ] ], 'our server: on_close 1000');
};

subtest 'Python client -> our server without compression' => sub {
    my ($status, $json, $out, $s) = python_to_us({});
    $json = client_ok($status, $json, $out, 'plain server');
    ok(exists $json->{response_extensions} && !defined $json->{response_extensions},
        'no Sec-WebSocket-Extensions in the 101') or diag($out);
    is_deeply($json->{negotiated}, [], 'nothing negotiated');
    wire_size_ok($json->{wire_bytes_received}, 0, 'our server');
    like($s->{connect}[0]{'Sec-WebSocket-Extensions'} // '', qr/^permessage-deflate\b/,
        'the offer was still made (on_connect headers)');
    is($s->{messages}, 12, 'our server got 12 messages');
    is_deeply($s->{errors}, [], 'our server: no errors');
    is_deeply($s->{close}, [ [ 1000, '' ] ], 'our server: on_close 1000');
};

subtest 'Python client with compression off -> our server with compression => 1' => sub {
    my ($status, $json, $out, $s) = python_to_us({ compression => 1 }, '--no-compression');
    $json = client_ok($status, $json, $out, 'no offer');
    ok(exists $json->{response_extensions} && !defined $json->{response_extensions},
        'no Sec-WebSocket-Extensions in the 101') or diag($out);
    is_deeply($json->{negotiated}, [], 'nothing negotiated');
    wire_size_ok($json->{wire_bytes_received}, 0, 'our server');
    ok(!exists $s->{connect}[0]{'Sec-WebSocket-Extensions'}, 'no offer in the request headers');
    is_deeply($s->{close}, [ [ 1000, '' ] ], 'our server: on_close 1000');
};

ok(stop_all_daemons(), 'every peer process ended');

done_testing;
