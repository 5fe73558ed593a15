# Proves: compression's presets and settings hash negotiate the windows and
# context takeover they name, and messages of every size round-trip with
# each; a Python websockets client asking for small windows gets them; bad
# values croak.
# POD: EV::Websockets, "connect" and "listen" (compression), "Limits and
# their defaults", "PERFORMANCE AND MEMORY".
#
# Our client against our server over 127.0.0.1 for each preset (the same on
# both sides), for a settings hash, and for mixes with compression => 1:
# the offer on_handshake sees, the answer on_connect sees, and text and
# binary messages of several sizes (past every window, random and
# compressible, fragmented, repeated so that context takeover matters)
# echoed intact.  Then t/py/ws_client.py (Python websockets) offers
# server_max_window_bits=9 and client_max_window_bits=9 to a server with
# dedicated_3kb, and its default offer to the same server.
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

my $guard = EV::timer(60, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $EXT = 'Sec-WebSocket-Extensions';

srand(7692);
my $json = join ',', map { qq({"id":$_,"status":"ok","price":"101.25"}) } 1 .. 3000;    # ~120 KB
my $again = random_bytes(3000);
my @MESSAGES = (
    [ 'short text',        'hello, compressed world ' x 4, 0 ],
    [ 'short binary',      "\x00\x01\xfe\xff" x 64,        1 ],
    [ 'empty text',        '',                             0 ],
    [ 'text of 120 KB',    $json,                          0 ],
    [ '3000 random bytes', $again,                         1 ],
    [ 'the same again',    $again,                         1 ],
    [ '70000 random bytes', random_bytes(70_000),          1 ],
    [ 'the text again',    $json,                          0 ],
    fragmented('fragmented text', 0, 'frag-1 ' x 200, "frag-2 \xe2\x98\xba " x 200, 'frag-3'),
    [ 'text after',        'done ' x 40,                   0 ],
);

# The offer our client makes and the answer our server gives, by preset.
my $BARE = 'permessage-deflate; client_max_window_bits';
sub small {
    my ($bits) = @_;
    return ("permessage-deflate; client_max_window_bits=$bits; server_max_window_bits=$bits",
        "permessage-deflate; server_max_window_bits=$bits; client_max_window_bits=$bits");
}
my @PRESETS = (
    [ shared => 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits',
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover' ],
    [ dedicated_3kb   => small(9) ],
    [ dedicated_4kb   => small(9) ],
    [ dedicated_8kb   => small(10) ],
    [ dedicated_16kb  => small(11) ],
    [ dedicated_32kb  => small(12) ],
    [ dedicated_64kb  => small(13) ],
    [ dedicated_128kb => small(14) ],
    [ dedicated_256kb => $BARE, 'permessage-deflate' ],
);

# Our echo server with %$server, our client with %$client: returns what
# the client recorded (see echo_client) with the offer the server saw.
sub ours {
    my ($server, $client) = @_;
    my $ctx = EV::Websockets::Context->new;
    my $offer;
    my $port = echo_server($ctx,
        host         => '127.0.0.1',
        %$server,
        on_handshake => sub { $offer = $_[0]{$EXT}; 1 },
    );
    my $r = echo_client($port, \@MESSAGES, %$client,
        on_message => sub { my ($c, $r) = @_; $c->close(1000) if @{ $r->{got} } == @MESSAGES });
    $r->{offer} = $offer;
    return $r;
}

sub negotiated_ok {
    my ($name, $r, $offer, $answer) = @_;
    is($r->{offer}, $offer, "$name: the offer");
    is($r->{headers}{$EXT}, $answer, "$name: the answer (on_connect's headers)");
    echoes_intact($r, $name, \@MESSAGES, 0, 'nothing more');
    is_deeply($r->{close}, [ [ 1000, '' ] ], "$name: closed cleanly");
}

for my $p (@PRESETS) {
    my ($preset, $offer, $answer) = @$p;
    subtest "compression => '$preset' on both sides" => sub {
        negotiated_ok($preset, ours({ compression => $preset }, { compression => $preset }), $offer, $answer);
    };
}

subtest 'a settings hash on both sides' => sub {
    my $c = { window_bits => 10, mem_level => 2 };
    negotiated_ok('hash', ours({ compression => $c }, { compression => { %$c } }), small(10));
    my $fresh = { window_bits => 11, context_takeover => 0 };
    negotiated_ok('hash without context takeover', ours({ compression => $fresh }, { compression => { %$fresh } }),
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=11; server_max_window_bits=11',
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=11');
};

subtest 'presets meet compression => 1' => sub {
    my $OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
    negotiated_ok('default client, dedicated_3kb server', ours({ compression => 'dedicated_3kb' }, {}), $OFFER,
        'permessage-deflate; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9');
    negotiated_ok('dedicated_3kb client, compression => 1 server', ours({ compression => 1 }, { compression => 'dedicated_3kb' }),
        (small(9))[0], 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9');
    negotiated_ok('dedicated_3kb client, context_takeover => 1 server',
        ours({ compression => 1, context_takeover => 1 }, { compression => 'dedicated_3kb' }),
        (small(9))[0], 'permessage-deflate; server_max_window_bits=9');
    negotiated_ok('compression => 1 with context_takeover => 1, as before',
        ours({ compression => 1, context_takeover => 1 }, {}), $OFFER, 'permessage-deflate; client_no_context_takeover');
    negotiated_ok('a hash follows context_takeover => 0', ours({ compression => { window_bits => 12 }, context_takeover => 0 }, {}),
        $OFFER, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12');
    my $r = ours({}, { compression => 'dedicated_3kb' });
    ok(!exists $r->{headers}{$EXT}, 'a server without compression answers no extension');
    echoes_intact($r, 'uncompressed', \@MESSAGES, 0, 'nothing more');
};

subtest 'bad values croak' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $croak = sub {
        my ($call, $message, @opt) = @_;
        my $ok = eval {
            $call eq 'listen'
                ? $ctx->listen(port => 0, host => '127.0.0.1', @opt)
                : $ctx->connect(url => 'ws://127.0.0.1:1/', @opt);
            1;
        };
        ok(!$ok, "$call(@opt) croaks");
        like($@, qr/^\Q$message\E at /, "... $message");
    };
    for my $call (qw(listen connect)) {
        $croak->($call, "compression: unknown preset 'dedicated_2kb'", compression => 'dedicated_2kb');
        $croak->($call, 'compression: window_bits must be from 9 to 15', compression => { window_bits => 8 });
        $croak->($call, 'compression: window_bits must be from 9 to 15', compression => { window_bits => 16 });
        $croak->($call, 'compression: mem_level must be from 1 to 9', compression => { mem_level => 0 });
        $croak->($call, 'compression: context_takeover must be 0 or 1', compression => { context_takeover => 'yes' });
        $croak->($call, "compression: unknown setting 'level' (known: window_bits, mem_level, context_takeover)",
            compression => { level => 9 });
    }
    $croak->('listen', "context_takeover => 1 contradicts compression => 'shared'",
        compression => 'shared', context_takeover => 1);
    $croak->('listen', "context_takeover => 0 contradicts compression => 'dedicated_8kb'",
        context_takeover => 0, compression => 'dedicated_8kb');
    my $ok = eval { EV::Websockets::Context->new->adopt(fh => \*STDIN, compression => 'huge'); 1 };
    ok(!$ok, 'adopt croaks too');
    like($@, qr/^compression: unknown preset 'huge' at /, "... unknown preset 'huge'");
    is(scalar $ctx->connections, 0, 'no connection was made');
};

# ---- Python websockets against our server with dedicated_3kb ----

subtest 'Python websockets client -> our dedicated_3kb server' => sub {
    my ($python, $why) = python_with_websockets();
    need_peer('Python websockets', $python, $why);
    my $tmp = tempdir('ev-ws-presets-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    for my $case ([ 'small windows asked', [ '--window-bits', 9 ] ], [ 'default offer', [] ]) {
        my ($name, $args) = @$case;
        my (@answers, @closed, @errors);
        my $ctx = EV::Websockets::Context->new;
        my $port = echo_server($ctx,
            host        => '127.0.0.1',
            compression => 'dedicated_3kb',
            on_connect  => sub { },
            on_close    => sub { push @closed, $_[1] },
            on_error    => sub { push @errors, $_[1] },
        );
        my ($status, $out) = run_to_end($tmp,
            [ $python, py_script('ws_client.py'), "ws://127.0.0.1:$port/", '--timeout', 20, @$args ], 25);
        my ($json) = json_lines($out);
        is($status, 0, "$name: ws_client.py exited 0") or diag($out);
        ok($json && $json->{ok}, "$name: every echo correct") or diag($out);
        $json ||= {};
        is($json->{response_extensions}, 'permessage-deflate; server_max_window_bits=9; client_max_window_bits=9',
            "$name: our answer");
        like($json->{negotiated}[0] // '', qr/^PerMessageDeflate\(/, "$name: Python negotiated permessage-deflate");
        like($json->{negotiated}[0] // '', qr/remote_max_window_bits=9, local_max_window_bits=9/,
            "$name: ... with 9-bit windows both ways") or diag($json->{negotiated}[0]);
        cmp_ok($json->{wire_bytes_received} // 0, '<', 2.5 * (1 << 20), "$name: our server sent compressed messages");
        run_until(sub { @closed }, 5);
        is_deeply(\@errors, [], "$name: no errors on our side");
        is_deeply(\@closed, [1000], "$name: closed with 1000");
    }
    ok(stop_all_daemons(), 'every peer process ended');
};

done_testing;
