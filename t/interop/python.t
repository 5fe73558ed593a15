# Proves: the base protocol interoperates with Python websockets, both ways.
# POD: EV::Websockets, "DESCRIPTION"; README.pod, "TESTS".
#
# The base protocol (RFC 6455) against an independent implementation: the
# Python websockets library (t/lib/PyPeer.pm makes a venv with it), in both
# directions, compression off on both sides (t/interop/python-deflate.t covers
# permessage-deflate).
#
# Each scenario below says what our side does (callbacks) and what the
# Python side does (a list of actions run by t/py/interop_peer.py), and
# checks what each side saw.  Every scenario runs twice: our client against
# the Python server, and the Python client against our server (which lives
# in this process, so the EV loop runs while the Python client does).
# Everything runs on 127.0.0.1.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use PyPeer qw(python_with_websockets py_script);    # before TestWS, which drops the proxy variables pip may need
use TestWS;
use SampleMessages qw(send_sample);
use EV;
use EV::Websockets;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use JSON::PP ();

my $PYTHON = need_peer('Python websockets', python_with_websockets());

# Made after the (possibly slow) venv setup above.
my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# KEEP=1 keeps the Python logs (and prints where) for a look afterwards.
my $TMP = tempdir('ev-ws-pyinterop-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{KEEP});

diag("Python logs in $TMP") if $ENV{KEEP};

my $JSON = JSON::PP->new;

# The subprotocols both servers (ours and Python's) speak, in order of
# preference.
my @SERVER_PROTOCOLS = qw(chat.v2 chat.v1);

# ---- The messages: [ name, [ fragments ], is_binary ] ----
# One fragment is a plain message; several make a fragmented message (our
# side: send_fragment; Python: an iterable given to send()).  Both sides
# send all of them.

my $MiB = 1 << 20;
srand(80);
my @MESSAGES = (
    [ 'text',                   [ "caf\xc3\xa9 \xe2\x98\xba" ],                       0 ],
    [ 'binary',                 [ "\x00\x01\x02\xfe\xff" ],                           1 ],
    [ 'empty text',             [ '' ],                                               0 ],
    [ 'empty binary',           [ '' ],                                               1 ],
    # 16 bytes, two of its characters multi-byte, repeated up to 1 MiB
    [ '1 MiB text',             [ "Jack \xe2\x98\xba caf\xc3\xa9 !" x ($MiB / 16) ],  0 ],
    [ '1 MiB binary',           [ pack('N*', map { int rand 2**32 } 1 .. $MiB / 4) ], 1 ],
    # The smiley's 3 bytes are split over two fragments: UTF-8 must be
    # checked on the whole message, not per fragment.
    [ 'fragmented text',        [ 'frag-1 ', "frag-2 \xe2\x98", "\xba frag-3" ],      0 ],
    [ 'fragmented binary',      [ 'x' x 100_000, 'y' x 100_000, 'z' ],                1 ],
    [ 'fragmented, one empty',  [ 'abc', '', 'def' ],                                 1 ],
);

sub payload { join '', @{ $_[0][1] } }

# Our side sends message $m on $conn.
sub our_send {
    my ($conn, $m) = @_;
    my (undef, $fragments, $binary) = @$m;
    send_sample($conn, payload($m), $binary, @$fragments > 1 ? $fragments : undef);
}

# The Python actions (see t/py/interop_peer.py); data goes as hex.
sub py_send  { my ($m) = @_; +{ send => $m->[2] ? 'binary' : 'text', fragments => [ map { unpack 'H*', $_ } @{ $m->[1] } ] } }
sub py_recv  { +{ recv => $_[0] } }
sub py_ping  { +{ ping => unpack 'H*', $_[0] } }
sub py_close { +{ close => [ $_[0], $_[1] ] } }

# Ping payloads: empty, bytes that are not UTF-8, and the 125-byte maximum.
my @OUR_PINGS = ('', "\x00\xff ours", 'o' x 125);
my @PY_PINGS  = ('', "\x00\xff theirs", 't' x 125);

# A 123-byte close reason (the most a close frame holds), 61 two-byte
# characters and "!"; and one of 124 bytes, which close() cuts on a
# character boundary, to 122.
my $REASON_123 = "\xc3\xa9" x 61 . '!';
my $REASON_124 = "\xc3\xa9" x 62;

# ---- Shared checks ----

# What the Python side received equals @MESSAGES as our side sent them,
# type, bytes and frames: one frame per fragment.
sub python_got_messages {
    my ($py) = @_;
    my @got = @{ $py->{received} || [] };
    is(scalar @got, scalar @MESSAGES, 'Python received every message');
    for my $i (0 .. $#MESSAGES) {
        my ($name, $fragments, $binary) = @{ $MESSAGES[$i] };
        my $g = $got[$i] || {};
        is($g->{type}, $binary ? 'binary' : 'text', "Python: $name has the right type");
        # sha256 rather than the bytes: a mismatch must not dump a megabyte
        ok(($g->{sha256} // '') eq sha256_hex(payload($MESSAGES[$i])) && ($g->{length} // -1) == length payload($MESSAGES[$i]),
            "Python: $name arrived intact") or diag explain $g;
        is_deeply($g->{frames}, [ map { length } @$fragments ],
            "Python: $name came in " . @$fragments . ' frame' . (@$fragments > 1 ? 's, one per fragment' : ''));
    }
}

# What our side received equals @MESSAGES as Python sent them.
sub we_got_messages {
    my ($us) = @_;
    my @got = @{ $us->{messages} };
    is(scalar @got, scalar @MESSAGES, 'we received every message');
    for my $i (0 .. $#MESSAGES) {
        my ($name, $fragments, $binary) = @{ $MESSAGES[$i] };
        my ($data, $bin) = @{ $got[$i] || [] };
        my $want = payload($MESSAGES[$i]);
        ok(defined $data && $data eq $want, "we: $name arrived intact" . (@$fragments > 1 ? ' (reassembled)' : ''))
            or diag('got ' . (defined $data ? length($data) . ' bytes' : 'nothing') . ', sent ' . length $want);
        is($bin, $binary, "we: $name is " . ($binary ? 'binary' : 'text'));
    }
}

# A connection that ended normally on our side: no error, one on_close with
# [ $code, $reason ].
sub we_closed_with {
    my ($us, $code, $reason, $what) = @_;
    is_deeply($us->{errors}, [], 'we: no errors');
    is_deeply($us->{close}, [ [ $code, $reason ] ], "we: on_close reports $what");
}

# The close frame Python received, [ code, reason ].
sub python_got_close {
    my ($py, $code, $reason, $what) = @_;
    is_deeply($py->{close_rcvd}, [ $code, $reason ], "Python received $what");
}

# ---- The scenarios ----
# name (also the URL path), offer (the client's subprotocols), python (the
# Python actions), ours (callbacks run on our side after the recording:
# ($conn, $record, @callback args)), check (the tests: ($us, $py, $role),
# $us what our side recorded, $py Python's report, $role our side's role),
# refused (the server refuses the handshake).

my @SCENARIOS = (
    {
        name   => 'messages',
        python => [ (map { py_send($_) } @MESSAGES), py_recv(scalar @MESSAGES), py_close(1000, '') ],
        ours   => { on_connect => sub { our_send($_[0], $_) for @MESSAGES } },
        check  => sub {
            my ($us, $py) = @_;
            python_got_messages($py);
            we_got_messages($us);
            # Python ends with close(1000, ""): a 1000 with an empty reason.
            we_closed_with($us, 1000, '', q{Python's 1000 with an empty reason});
            python_got_close($py, 1000, '', 'our answer, 1000 with an empty reason');
            is($us->{protocol}, undef, 'we: no subprotocol');
            is($py->{subprotocol}, undef, 'Python: no subprotocol');
            is($py->{offered}, undef, 'no Sec-WebSocket-Protocol in the request');
        },
    },
    {
        # Both sides ping; we tell Python once our pongs are all in, and
        # Python closes after that.
        name   => 'pings',
        python => [ (map { py_ping($_) } @PY_PINGS), py_recv(1), py_close(1000, '') ],
        ours   => {
            on_connect => sub { $_[0]->send_ping($_) for @OUR_PINGS },
            on_pong    => sub { my ($c, $r) = @_; $c->send('pongs received') if @{ $r->{pongs} } == @OUR_PINGS },
        },
        check => sub {
            my ($us, $py) = @_;
            is_deeply($py->{pings_received}, [ map { unpack 'H*', $_ } @OUR_PINGS ], 'Python received our pings, payloads intact');
            is_deeply($us->{pongs}, \@OUR_PINGS, 'we: on_pong once per ping, with its payload, in order');
            is_deeply($py->{pongs}, [ map { { ping => unpack('H*', $_), ok => JSON::PP::true } } @PY_PINGS ],
                q{Python's pings were each answered});
            is_deeply($py->{pongs_received}, [ map { unpack 'H*', $_ } @PY_PINGS ],
                '... by exactly one pong each, with the ping payload');
            is_deeply([ map { $_->{hex} } @{ $py->{received} } ], [ unpack 'H*', 'pongs received' ],
                'Python got our message after the pongs');
            is_deeply($us->{messages}, [], 'we: pings are not messages');
            we_closed_with($us, 1000, '', '1000');
        },
    },
    {
        name   => 'we-close-4000',
        python => [],
        ours   => { on_connect => sub { $_[0]->close(4000, 'ours') } },
        check  => sub {
            my ($us, $py) = @_;
            python_got_close($py, 4000, 'ours', '4000 "ours"');
            is_deeply($py->{close_sent}, [ 4000, 'ours' ], 'Python answered with the same code and reason');
            we_closed_with($us, 4000, 'ours', q{Python's answer});
        },
    },
    {
        name   => 'we-close-1000',
        python => [],
        ours   => { on_connect => sub { $_[0]->close(1000) } },
        check  => sub {
            my ($us, $py) = @_;
            python_got_close($py, 1000, '', '1000 with an empty reason');
            we_closed_with($us, 1000, '', q{Python's answer});
        },
    },
    {
        name   => 'we-close-123-byte-reason',
        python => [],
        ours   => { on_connect => sub { $_[0]->close(4002, $REASON_123) } },
        check  => sub {
            my ($us, $py) = @_;
            python_got_close($py, 4002, $REASON_123, 'the 123-byte UTF-8 reason intact');
            we_closed_with($us, 4002, $REASON_123, q{Python's answer, the reason intact});
        },
    },
    {
        name   => 'we-close-124-byte-reason',
        python => [],
        ours   => { on_connect => sub { $_[0]->close(4003, $REASON_124) } },
        check  => sub {
            my ($us, $py) = @_;
            my $cut = substr($REASON_124, 0, 122);
            python_got_close($py, 4003, $cut, 'the reason cut to 122 bytes, on a character boundary');
            we_closed_with($us, 4003, $cut, q{Python's answer});
        },
    },
    {
        name   => 'they-close-4001',
        python => [ py_close(4001, 'theirs') ],
        check  => sub {
            my ($us, $py) = @_;
            we_closed_with($us, 4001, 'theirs', '4001 "theirs"');
            # RFC 6455 5.5.1: the answer typically echoes the status code;
            # ours does, without the reason (which is optional).
            python_got_close($py, 4001, '', 'our answer echoing 4001');
        },
    },
    {
        name   => 'invalid-utf8',
        python => [ py_send([ undef, [ "ok \xff\xfe" ], 0 ]) ],
        check  => sub {
            my ($us, $py) = @_;
            is_deeply($us->{messages}, [], 'we: the message was not delivered');
            is_deeply($us->{errors}, [ 'invalid UTF-8 in text message' ], 'we: on_error reports invalid UTF-8');
            is(scalar @{ $us->{close} }, 1, 'we: on_close once')
                and is($us->{close}[0][0], 1007, 'we: on_close reports 1007');
            is(($py->{close_rcvd} || [])->[0], 1007, 'Python received a close frame with 1007');
        },
    },
    {
        # The client offers "chat.v1, chat.v2" (ours as one header value);
        # both servers prefer chat.v2, so the choice is the server's, not
        # the first offered.
        name   => 'subprotocol',
        offer  => [qw(chat.v1 chat.v2)],
        python => [ py_close(1000, '') ],
        check  => sub {
            my ($us, $py, $role) = @_;
            is($us->{protocol}, 'chat.v2', 'we: get_protocol is chat.v2');
            is($py->{subprotocol}, 'chat.v2', 'Python: the subprotocol is chat.v2');
            is($py->{offered}, 'chat.v1, chat.v2', 'the request offered "chat.v1, chat.v2"');
            if ($role eq 'client') {
                is($us->{headers}{'Sec-WebSocket-Protocol'}, 'chat.v2', q{on_connect: the 101's Sec-WebSocket-Protocol});
            }
            else {
                is($us->{headers}{'Sec-WebSocket-Protocol'}, 'chat.v1, chat.v2', 'on_connect: the offer');
            }
            we_closed_with($us, 1000, '', '1000');
        },
    },
    {
        name    => 'no-common-subprotocol',
        offer   => [qw(chat.v9)],
        python  => [],
        refused => 1,
        check   => sub {
            my ($us, $py, $role) = @_;
            if ($role eq 'client') {
                is_deeply($us->{errors}, [ 'handshake failed: HTTP 400 Bad Request' ], 'we: on_error reports the 400');
                ok(!$us->{connected}, 'we: no on_connect');
                is_deeply($us->{close}, [], 'we: no on_close');
                is_deeply($py, {}, 'the Python server ran no handler for it');
            }
            else {
                is($py->{status}, 400, 'Python: the server answered 400') or diag explain $py;
                like($py->{error} // '', qr/^InvalidStatus\b/, 'Python: connect raised InvalidStatus');
                ok(!$us->{connected}, 'we: no on_connect');
            }
        },
    },
);
my %SCENARIO = map { $_->{name} => $_ } @SCENARIOS;

# ---- Running them ----

# The scenarios, as t/py/interop_peer.py reads them.
my $SCENARIO_FILE = "$TMP/scenarios.json";
{
    open(my $fh, '>', $SCENARIO_FILE) or die "$SCENARIO_FILE: $!";
    print $fh $JSON->encode([ map { +{ name => $_->{name}, offer => $_->{offer}, actions => $_->{python} } } @SCENARIOS ]);
    close $fh or die "$SCENARIO_FILE: $!";
}

# The command that runs interop_peer.py with @args (its output goes to a
# log of its own: spawn_logged).
sub peer_cmd {
    my (@args) = @_;
    return [ $PYTHON, py_script('interop_peer.py'), @args, '--scenarios', $SCENARIO_FILE ];
}

# The reports in a Python log, by scenario name; reasons as UTF-8 bytes,
# like ours.  (Python's json.dumps writes ASCII.)
sub python_reports {
    my ($log) = @_;
    my %r;
    for my $report (json_lines(slurp($log))) {
        for my $close (grep { $_ } @$report{qw(close_rcvd close_sent)}) {
            utf8::encode($close->[1]);
        }
        $r{ $report->{scenario} } = $report;
    }
    return \%r;
}

# The callbacks of our side, client or server: they record what happens
# in $records->{<scenario name>} (connected, headers, protocol (get_protocol
# in on_connect), messages ([ data, is_binary ]), pongs, errors, close
# ([ code, reason ])), then run the scenario's own callbacks.  The scenario
# is the connection's stash->{scenario}, which a client sets at connect and
# a server takes from the request path.
sub our_side {
    my ($records) = @_;
    my $record = sub {
        $records->{ $_[0]->stash->{scenario} // '' } //= { messages => [], pongs => [], errors => [], close => [] };
    };
    my $hook = sub {
        my ($what, $c, @args) = @_;
        my $s   = $SCENARIO{ $c->stash->{scenario} // '' };
        my $own = $s && $s->{ours} && $s->{ours}{$what};
        $own->($c, $record->($c), @args) if $own;
    };
    return (
        on_connect => sub {
            my ($c, $headers) = @_;
            $c->stash->{scenario} //= ($headers->{Path} // '') =~ s{^/}{}r;
            my $r = $record->($c);
            $r->{connected}++;
            @$r{qw(headers protocol)} = ($headers, $c->get_protocol);
            $hook->(on_connect => @_);
        },
        on_message => sub { push @{ $record->($_[0])->{messages} }, [ @_[ 1, 2 ] ]; $hook->(on_message => @_) },
        on_pong    => sub { push @{ $record->($_[0])->{pongs} },    $_[1];          $hook->(on_pong    => @_) },
        on_error   => sub { push @{ $record->($_[0])->{errors} },   $_[1];          $hook->(on_error   => @_) },
        on_close   => sub { push @{ $record->($_[0])->{close} },    [ @_[ 1, 2 ] ]; $hook->(on_close   => @_) },
    );
}

# Our side of a scenario is over: on_close, or on_error before connecting.
sub over {
    my ($r) = @_;
    return $r && (@{ $r->{close} } || (!$r->{connected} && @{ $r->{errors} }));
}

# Our client against the Python server, one scenario after the other.
# Returns (our records, Python's reports), both by scenario name.
sub our_client_to_python {
    my ($d, $port, $log) = start_printed_server($TMP,
        peer_cmd('server', '--subprotocols', join(',', @SERVER_PROTOCOLS), '--lifetime', 60), 'interop_peer.py server');
    if (!defined $port) {
        fail('the Python server started');
        return ({}, {}, $log);
    }
    my %ours;
    my $ctx = EV::Websockets::Context->new;
    my $reports = {};
    my $poll = EV::timer(0, 0.02, sub { $reports = python_reports($log) });
    for my $s (@SCENARIOS) {
        my $conn = $ctx->connect(
            url         => "ws://127.0.0.1:$port/$s->{name}",
            compression => 0,
            ($s->{offer} ? (protocol => join(', ', @{ $s->{offer} })) : ()),
            our_side(\%ours),
        );
        $conn->stash->{scenario} = $s->{name};
        run_until(sub { over($ours{ $s->{name} }) }, 10)
            or diag("$s->{name}: our client's connection did not end");
        # Python reports once its side of the connection is closed too; a
        # refused handshake never reaches its handler.
        run_until(sub { $reports->{ $s->{name} } }, 5) unless $s->{refused};
    }
    $reports = python_reports($log);
    stop_daemon($d);
    return (\%ours, $reports, $log);
}

# The Python client against our server: it runs every scenario, one after
# the other, while the loop runs.  Returns (our records, Python's reports).
sub python_to_our_server {
    my %ours;
    my $ctx = EV::Websockets::Context->new;
    my $port = $ctx->listen(
        host        => '127.0.0.1',
        port        => 0,
        protocol    => [@SERVER_PROTOCOLS],
        compression => 0,
        our_side(\%ours),
    );
    my ($status, $out, $log) = run_to_end($TMP, peer_cmd('client', "ws://127.0.0.1:$port", '--timeout', 20), 25);
    is($status, 0, 'interop_peer.py client exited 0') or diag($out);
    run_until(sub { !grep { !$_->{refused} && !over($ours{ $_->{name} }) } @SCENARIOS }, 5);
    return (\%ours, python_reports($log), $log);
}

# Run each scenario's check on the results of one direction.
sub check_all {
    my ($label, $role, $ours, $reports, $log) = @_;
    for my $s (@SCENARIOS) {
        subtest "$label: $s->{name}" => sub {
            my $us = $ours->{ $s->{name} } || { messages => [], pongs => [], errors => [], close => [] };
            my $py = $reports->{ $s->{name} };
            if (!$s->{refused}) {
                is($us->{connected}, 1, 'we: on_connect once');
                ok($py, 'Python reported') or diag(slurp($log));
                is($py->{error}, undef, 'Python: connected');
                is($py->{stopped_by}, undef, 'Python: every action completed');
            }
            $s->{check}->($us, $py || {}, $role);
        };
    }
}

check_all('our client -> Python server', 'client', our_client_to_python());
check_all('Python client -> our server', 'server', python_to_our_server());

ok(stop_all_daemons(), 'every peer process ended');

done_testing;
