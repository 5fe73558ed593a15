# Proves: a real browser (headless Chromium) talks to our server over ws://
# and wss://, with subprotocols and permessage-deflate.
# POD: EV::Websockets, "listen", "TLS"; README.pod, "TESTS".
#
# Interoperability with a real browser: headless Chromium (Debian's
# chromium package) as a WebSocket client of our server, over ws:// and
# wss://.  A file:// page (t/html/chromium-client.html, whose script
# t/html/chromium-client.js does the work) runs the steps this test gives it
# in the URL fragment and reports what the browser saw on the console;
# t/lib/Browser.pm starts Chromium in a process group of its own, reads the
# console lines from its stderr log (polled with an EV timer) and stops
# every process of it at the end.  Our side records what it received.
#
# For each scheme, one browser run does these steps against our listeners
# (compression => 1, protocol => [ 'chat.v1', 'chat.v2' ]):
#   echo      offers x-unknown, chat.v2, chat.v1; sends text, UTF-8 text,
#             binary (ArrayBuffer), empty text, empty binary, a 1 MiB
#             string, 70000 random bytes and a sentence twice; checks each
#             echo is intact and in order, then closes with 4000 and a reason
#   takeover  the same against a listener with context_takeover => 1, so
#             both sides keep their deflate context across messages
#   server    offers no subprotocol, sends 'close-me'; our server closes
#             with 4001 "bye"
#   reject    offers only x-unknown: our server answers 400, and the
#             browser must report a failed, unclean connection
# Both views are asserted: the browser's (subprotocol, ws.extensions,
# echoes, close code/reason/wasClean) and ours (request headers,
# negotiated subprotocol, every message byte for byte, the close code and
# reason the browser sent).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use TestWS;
use Browser;
use EV;
use EV::Websockets;
use Cwd qw(abs_path);
use Encode qw(encode_utf8);
use File::Temp qw(tempdir);
use JSON::PP ();

my $CHROMIUM = Browser::chromium();
if (!$CHROMIUM) {
    my $why = 'headless Chromium is needed (Debian: apt-get install chromium)';
    BAIL_OUT("$why, and CI must run the interoperability tests") if $ENV{CI};
    plan skip_all => $why;
}

# Generous: a cold browser start can take a few seconds; a normal run of
# the whole file takes about 3.
my $guard = EV::timer(60, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $TMP  = tempdir('ev-ws-chromium-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $PAGE = abs_path('t/html/chromium-client.html') // BAIL_OUT('t/html/chromium-client.html is missing');
my $MiB  = 1 << 20;

# ---- The messages, as specs for the page (see chromium-client.js) ----

my $sentence = 'The quick brown fox jumps over the lazy dog, once more.';
my @MESSAGES = (
    { binary => 0, text  => 'hello' },
    { binary => 0, text  => "caf\x{e9} \x{263a} \x{1f600}" },    # 2-, 3- and 4-byte UTF-8
    { binary => 1, bytes => [ 0 .. 255 ] },
    { binary => 0, text  => '' },
    { binary => 1, bytes => [] },
    { binary => 0, prng  => 1, length => $MiB },
    # incompressible, and over 65535 bytes (64-bit frame length)
    { binary => 1, prng  => 2, length => 70_000 },
    # twice: with context takeover the second one is a back-reference
    { binary => 0, text  => $sentence },
    { binary => 0, text  => $sentence },
);

# The page's generator (prngMessage in chromium-client.js): a 32-bit LCG
# whose top byte is either the byte or, for text, picks a printable ASCII
# character.
sub prng_bytes {
    my ($seed, $length, $binary) = @_;
    my $x = $seed;
    my @bytes;
    $#bytes = $length - 1;
    for my $i (0 .. $length - 1) {
        $x = ($x * 1664525 + 1013904223) & 0xFFFFFFFF;
        my $byte = $x >> 24;
        $bytes[$i] = $binary ? $byte : 33 + $byte % 94;
    }
    return pack('C*', @bytes);
}

# The bytes our server should receive for a spec.
sub wire_bytes {
    my ($spec) = @_;
    return prng_bytes(@$spec{qw(prng length binary)}) if exists $spec->{prng};
    return pack('C*', @{ $spec->{bytes} }) if $spec->{binary};
    return encode_utf8($spec->{text});
}
my @EXPECTED = map { [ wire_bytes($_), $_->{binary} ] } @MESSAGES;

# ---- Our server: listeners that echo and record ----

# What our server saw, by "<scheme> <path>": headers (on_connect's),
# protocol (get_protocol in on_connect), messages ([data, is_binary] each),
# close ([code, reason] of each on_close), errors.
my %seen;

my $ctx = EV::Websockets::Context->new;

# A listener for $scheme ('ws' or 'wss') with %extra options.  Echoes every
# message, except the text 'close-me', which it answers with close(4001,
# 'bye').  Returns the port.
sub listener {
    my ($scheme, %extra) = @_;
    return $ctx->listen(
        port        => 0,
        host        => '127.0.0.1',
        compression => 1,
        protocol    => [ 'chat.v1', 'chat.v2' ],
        ($scheme eq 'wss' ? (ssl_cert => 't/certs/server.pem', ssl_key => 't/certs/server-key.pem') : ()),
        %extra,
        on_connect => sub {
            my ($c, $h) = @_;
            $c->stash->{seen} = $seen{"$scheme $h->{Path}"} =
                { headers => $h, protocol => $c->get_protocol, messages => [], close => [], errors => [] };
        },
        on_message => sub {
            my ($c, $data, $binary) = @_;
            push @{ $c->stash->{seen}{messages} }, [ $data, $binary ];
            if (!$binary && $data eq 'close-me') { $c->close(4001, 'bye') }
            elsif ($binary)                      { $c->send_binary($data) }
            else                                 { $c->send($data) }
        },
        on_close => sub { push @{ $_[0]->stash->{seen}{close} }, [ $_[1], $_[2] ] },
        on_error => sub { push @{ $_[0]->stash->{seen}{errors} }, $_[1] },
    );
}

# ---- The browser run ----

# $s (characters) as UTF-8, percent-encoded but for unreserved characters
# and those in $keep (e.g. '/' for a path).
sub pct {
    my ($s, $keep) = @_;
    $keep //= '';
    (my $e = encode_utf8($s)) =~ s{([^A-Za-z0-9\-._~$keep])}{sprintf('%%%02X', ord $1)}ge;
    return $e;
}

# The steps for one scheme (see the top of this file).
sub steps_for {
    my ($scheme, $port, $takeover_port) = @_;
    my $base = "$scheme://127.0.0.1";
    return [
        { name => 'echo', url => "$base:$port/echo", protocols => [qw(x-unknown chat.v2 chat.v1)],
          messages => \@MESSAGES, close => [ 4000, 'done with echo' ] },
        { name => 'takeover', url => "$base:$takeover_port/takeover", protocols => ['chat.v2'],
          messages => \@MESSAGES, close => [ 4000, 'done with takeover' ] },
        { name => 'server', url => "$base:$port/server", protocols => [],
          messages => [ { binary => 0, text => 'close-me' } ], close => undef },
        { name => 'reject', url => "$base:$port/reject", protocols => ['x-unknown'],
          messages => [], close => undef },
    ];
}

# Start Chromium (with the extra flags @args) on the page with $steps,
# wait for the page's 'done' (at most 25 s), stop it.  Returns
# { step name => [ its records ] }, the records of no step under ''.
sub run_browser {
    my ($scheme, $steps, @args) = @_;
    my $dir = "$TMP/$scheme";
    mkdir $dir or die "mkdir $dir: $!";
    my $json = JSON::PP->new->ascii->canonical->encode({ steps => $steps });
    my $url  = 'file://' . pct($PAGE, '/') . '#' . pct($json);
    my $browser = Browser->start($CHROMIUM, url => $url, dir => $dir, args => \@args);
    my $done = $browser->wait_for(sub { grep { $_->{event} eq 'done' } $browser->records }, 25);
    ok($done, "$scheme: the page ran every step") or diag($browser->log_tail(30));
    ok(!$browser->exited, "$scheme: the browser was still running");
    my @left = $browser->stop;
    is_deeply(\@left, [], "$scheme: no Chromium process is left after stopping it");
    my %by_step;
    push @{ $by_step{ $_->{step} // '' } }, $_ for $browser->records;
    return \%by_step;
}

# What the browser saw in one step, from its records: open (the open
# record or undef), echoes (the echo records), errors (how many error
# events), close (the close record or undef), other (anything else).
sub browser_view {
    my ($records) = @_;
    my %v = (echoes => [], errors => 0);
    for my $r (@{ $records || [] }) {
        if    ($r->{event} eq 'open')  { $v{open} = $r }
        elsif ($r->{event} eq 'echo')  { push @{ $v{echoes} }, $r }
        elsif ($r->{event} eq 'error') { $v{errors}++ }
        elsif ($r->{event} eq 'close') { $v{close} = $r }
        else                           { push @{ $v{other} }, $r }
    }
    return \%v;
}

# Both views of echo step $step (one of steps_for's) of $scheme, whose
# page records are $records; $protocol is the subprotocol our listener must
# pick and $extensions what ws.extensions must match.
sub echo_step_ok {
    my ($scheme, $step, $records, $protocol, $extensions) = @_;
    my $v = browser_view($records);
    my $name = "$scheme $step->{name}";
    my ($code, $reason) = @{ $step->{close} };

    # The browser's side.
    ok($v->{open}, "$name: the browser's WebSocket opened") or return diag explain $records;
    is($v->{open}{protocol}, $protocol, "$name: ws.protocol is our server's choice, $protocol");
    like($v->{open}{extensions}, $extensions, "$name: ws.extensions shows permessage-deflate as negotiated")
        or diag $v->{open}{extensions};
    note("$name: ws.extensions = $v->{open}{extensions}");
    is(scalar @{ $v->{echoes} }, scalar @MESSAGES, "$name: one echo per message");
    is_deeply([ map { $_->{index} } grep { $_->{ok} } @{ $v->{echoes} } ], [ 0 .. $#MESSAGES ],
        "$name: every echo arrived intact, with its type, in order") or diag explain $v->{echoes};
    is($v->{errors}, 0, "$name: no error event");
    # The close event of the side that closed first carries the code and
    # reason of the answer: our server echoes the code (RFC 6455 5.5.1),
    # with an empty reason or the browser's.
    my $close = $v->{close} || {};
    is_deeply([ @$close{qw(code wasClean)} ], [ $code, JSON::PP::true ],
        "$name: the browser's close event after close($code): $code, wasClean") or diag explain $close;
    ok(defined $close->{reason} && ($close->{reason} eq '' || $close->{reason} eq $reason),
        "$name: ... and the reason is empty or the browser's own") or diag explain $close;
    ok(!$v->{other}, "$name: nothing else happened") or diag explain $v->{other};

    # Ours.
    my ($path) = $step->{url} =~ m{^wss?://[^/]+(/.*)};
    my $s = $seen{"$scheme $path"};
    ok($s, "$name: our server got the connection") or return;
    is($s->{protocol}, $protocol, "$name: get_protocol on our side is $protocol");
    is($s->{headers}{'Sec-WebSocket-Protocol'}, join(', ', @{ $step->{protocols} }),
        "$name: the request offered the page's subprotocol list");
    like($s->{headers}{'Sec-WebSocket-Extensions'} // '', qr/^permessage-deflate\b/,
        "$name: Chromium offered permessage-deflate");
    like($s->{headers}{'User-Agent'} // '', qr/HeadlessChrome/, "$name: the client is headless Chromium");
    is(scalar @{ $s->{messages} }, scalar @EXPECTED, "$name: our server got every message");
    for my $i (0 .. $#EXPECTED) {
        my ($data, $binary) = @{ $s->{messages}[$i] || [] };
        # eq rather than is(): a mismatch must not dump a megabyte
        ok(defined $data && $data eq $EXPECTED[$i][0] && $binary == $EXPECTED[$i][1],
            "$name: message $i arrived byte for byte, " . ($EXPECTED[$i][1] ? 'binary' : 'text'))
            or diag('got ' . (defined $data ? length($data) . " bytes, binary=$binary" : 'nothing')
                . ', expected ' . length($EXPECTED[$i][0]));
    }
    is_deeply($s->{close}, [ [ $code, $reason ] ], "$name: on_close got the browser's $code \"$reason\"");
    is_deeply($s->{errors}, [], "$name: no error on our side");
    return;
}

# The server-close step: our close(4001, 'bye') as the browser saw it, and
# the browser's answer as we saw it.
sub server_close_ok {
    my ($scheme, $records) = @_;
    my $v = browser_view($records);
    my $name = "$scheme server";
    ok($v->{open}, "$name: the browser's WebSocket opened") or return diag explain $records;
    is($v->{open}{protocol}, '', "$name: no subprotocol offered, none chosen");
    is_deeply([ @{ $v->{close} || {} }{qw(code reason wasClean echoes)} ], [ 4001, 'bye', JSON::PP::true, 0 ],
        "$name: the browser's close event: 4001 \"bye\", wasClean, no message") or diag explain $v->{close};
    is($v->{errors}, 0, "$name: no error event");

    my $s = $seen{"$scheme /server"};
    ok($s, "$name: our server got the connection") or return;
    is($s->{protocol}, undef, "$name: get_protocol on our side is undef");
    ok(!exists $s->{headers}{'Sec-WebSocket-Protocol'}, "$name: no Sec-WebSocket-Protocol in the request");
    is_deeply($s->{messages}, [ [ 'close-me', 0 ] ], "$name: our server got 'close-me'");
    # RFC 6455 5.5.1: the endpoint answering a Close "typically echos the
    # status code it received"; Chromium echoes the reason too.
    is_deeply($s->{close}, [ [ 4001, 'bye' ] ], "$name: on_close got the browser's answer, 4001 \"bye\"")
        or diag explain $s->{close};
    is_deeply($s->{errors}, [], "$name: no error on our side");
    return;
}

# The reject step: a subprotocol we do not speak.
sub reject_ok {
    my ($scheme, $records) = @_;
    my $v = browser_view($records);
    my $name = "$scheme reject";
    ok(!$v->{open}, "$name: the browser's WebSocket never opened");
    ok($v->{errors}, "$name: the browser fired an error event");
    is_deeply([ @{ $v->{close} || {} }{qw(code wasClean)} ], [ 1006, JSON::PP::false ],
        "$name: then a close event: 1006, not clean") or diag explain $records;
    ok(!$seen{"$scheme /reject"}, "$name: no connection on our side");
    return;
}

for my $scheme (qw(ws wss)) {
    subtest "Chromium -> our server over $scheme://" => sub {
        my $t0 = EV::time;
        my $port          = listener($scheme);
        my $takeover_port = listener($scheme, context_takeover => 1);
        my $steps = steps_for($scheme, $port, $takeover_port);
        my $by_step = run_browser($scheme, $steps, $scheme eq 'wss' ? '--ignore-certificate-errors' : ());
        my %step = map { $_->{name} => $_ } @$steps;

        my ($start) = @{ $by_step->{''} || [] };
        like($start->{userAgent} // '', qr/HeadlessChrome/, 'the page ran in headless Chromium');
        note("user agent: $start->{userAgent}") if $start;

        # Our default answer asks both sides not to keep a context.
        echo_step_ok($scheme, $step{echo}, $by_step->{echo}, 'chat.v1',
            qr/^permessage-deflate(?=.*; ?server_no_context_takeover)(?=.*; ?client_no_context_takeover)/);
        # With context_takeover => 1 neither is asked.
        echo_step_ok($scheme, $step{takeover}, $by_step->{takeover}, 'chat.v2',
            qr/^permessage-deflate(?!.*no_context_takeover)/);
        server_close_ok($scheme, $by_step->{server});
        reject_ok($scheme, $by_step->{reject});
        note(sprintf('%s: %.2f s', $scheme, EV::time - $t0));
    };
}

done_testing;
