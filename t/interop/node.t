# Proves: the protocol, with and without permessage-deflate, interoperates
# with Node.js ws, both ways.
# POD: EV::Websockets, "DESCRIPTION", "connect" and "listen" (compression);
# README.pod, "TESTS".
#
# Interoperability with an independent implementation: Node.js and its `ws`
# library (t/lib/NodePeer.pm installs it into the peers' cache), in both
# directions.  Our client talks to t/js/ws_echo_server.js; t/js/ws_client.js
# talks to our server, which runs in this process (so the EV loop runs
# while the Node client does).  Both directions cover text, binary, empty,
# UTF-8, 1 MiB and fragmented messages, pings answered by the other side's
# automatic pong, close codes and reasons initiated by either side (and
# what each side reports), subprotocol negotiation, and permessage-deflate
# negotiated or not, with ws's byte counts showing that compressed messages
# were compressed on the wire.  Everything runs on 127.0.0.1.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use NodePeer qw(node_with_ws js_script $WS_VERSION);    # before TestWS, which drops the proxy variables npm may need
use TestWS;
use SampleMessages;
use EV;
use EV::Websockets;
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);

my $NODE = need_peer('Node.js with ws', node_with_ws());

# Made after the (possibly slow) npm install above.
my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $TMP = tempdir('ev-ws-node-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Close reasons end in a non-ASCII character.  Our close() takes a
# character string; on_close reports the reason as UTF-8 bytes, Node's
# JSON (once decoded) as characters.
my $SMILEY = "\x{263a}";
sub utf8_bytes {
    my ($string) = @_;
    utf8::encode($string);
    return $string;
}

# Our client's permessage-deflate offer, as the server sees it.
my $OUR_OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';

# ws's byte counts for a connection with $us ('our client' or 'our
# server'): $counts->{wire_bytes_received} and wire_bytes_sent, handshake
# included.  Each way carries over 2.2 MiB of payload; compressed
# ($compressed true), only the random MiB does not shrink.
sub wire_ok {
    my ($counts, $compressed, $us) = @_;
    wire_size_ok($counts->{wire_bytes_received}, $compressed, $us);
    wire_size_ok($counts->{wire_bytes_sent}, $compressed, 'Node');
}

# Run the loop until $cond->() is true, at most $secs seconds, checking it
# every 20 ms (for conditions on files that Node writes, which no watcher
# sees change).
sub poll_until {
    my ($cond, $secs) = @_;
    my $poll = EV::timer(0, 0.02, sub { });
    return run_until($cond, $secs);
}

# ---- our client -> Node server ----

# Start ws_echo_server.js with @args.  Returns ($daemon, $port, $log), the
# port undef (and a diagnostic printed) if it did not come up within 10 s.
sub start_node_server {
    my (@args) = @_;
    return start_printed_server($TMP,
        [ $NODE, js_script('ws_echo_server.js'), '--lifetime', 60, @args ], "ws_echo_server.js @args");
}

# What the Node server reported about its connection(s): the list of its
# event objects, which may be filtered by event name.
sub node_events {
    my ($log, $event) = @_;
    return grep { ref $_ eq 'HASH' && (!defined $event || $_->{event} eq $event) } json_lines(slurp($log));
}

# The messages our client sends (see t/lib/SampleMessages.pm), with this
# test's own cases.
my @MESSAGES = sample_messages(81,
    # The smiley's three bytes are split across fragments: only the whole
    # message has to be valid UTF-8, for us as a sender and for ws as
    # receiver.
    'the same 2000 bytes again' => sub { fragmented('fragmented text', 0, 'frag-1 ', "frag-2 \xe2", "\x98\xba", ' frag-3') },
    'fragmented binary'         => sub { fragmented('fragmented, empty fragments', 0, '', 'a', '', '') },
);

# Connect our client to the Node server on $port with %opt and send
# @MESSAGES at once, then a ping with payload "perl-ping" (Node answers it
# by itself) and "ping?node-ping" (Node pings us, our automatic pong goes
# back, and Node says "pong:node-ping").  Once all that is back, ask
# "info?"; once that is answered, finish: $finish is either the text
# 'close:<code>:<reason>' (Node closes) or [ $code, $reason ] (we close).
# Returns a hash ref: headers (on_connect's), protocol (get_protocol in
# on_connect), got ([data, is_binary] of each message), pongs (on_pong
# payloads), errors, close ([code, reason] of each on_close), state (at the
# end), info (the decoded info? answer).
sub talk_to_node {
    my ($port, $finish, %opt) = @_;
    my $r = echo_client($port, \@MESSAGES,
        %opt,
        on_connect => sub {
            my ($c, $r) = @_;
            $r->{protocol} = $c->get_protocol;
            $c->send_ping('perl-ping');
            $c->send('ping?node-ping');
        },
        on_message => sub {
            my ($c, $r) = @_;
            # Node handles frames in order, so the echoes come first, then
            # "pong:node-ping" (after our pong reached Node).
            if (@{ $r->{got} } == @MESSAGES + 1) {
                $c->send('info?');
            }
            elsif (@{ $r->{got} } == @MESSAGES + 2) {
                ref $finish ? $c->close(@$finish) : $c->send($finish);
            }
        },
    );
    my ($info) = @{ $r->{got} } == @MESSAGES + 2 ? $r->{got}[-1][0] : undef;
    $r->{info} = eval { decode_json($info // '') } || {};
    return $r;
}

# Every echo arrived intact, once and in order, then "pong:node-ping" and
# the info? answer; our ping came back as a pong with its payload.
sub echoes_ok {
    my ($r, $name) = @_;
    echoes_intact($r, $name, \@MESSAGES, 2, 'then the pong report and info');
    is_deeply($r->{got}[@MESSAGES], [ 'pong:node-ping', 0 ],
        "$name: Node's ping got our automatic pong, with its payload");
    is_deeply($r->{pongs}, [ 'perl-ping' ], "$name: our send_ping got on_pong with its payload");
    is($r->{info}{ws_version}, $WS_VERSION, "$name: the server runs ws $WS_VERSION");
    is($r->{info}{echoed}, scalar @MESSAGES, "$name: Node echoed each message once");
}

# Node's view of the one connection: a ping event with our payload, a pong
# event with its own, and a close event with [ $code, $reason ].  Node may
# report its close event after our on_close fired.
sub node_saw {
    my ($log, $name, $code, $reason) = @_;
    poll_until(sub { node_events($log, 'close') }, 5);
    is_deeply([ map { $_->{payload} } node_events($log, 'ping') ], [ 'perl-ping' ],
        "$name: Node got our ping with its payload");
    is_deeply([ map { $_->{payload} } node_events($log, 'pong') ], [ 'node-ping' ],
        "$name: Node got our pong with its payload");
    is_deeply([ node_events($log, 'error') ], [], "$name: Node reported no error");
    is_deeply([ map { [ $_->{code}, $_->{reason} ] } node_events($log, 'close') ], [ [ $code, $reason ] ],
        "$name: Node's close event reports $code and the expected reason");
}

subtest 'our client -> Node server: permessage-deflate, chat.v2, we close' => sub {
    my ($d, $port, $log) = start_node_server('--deflate');
    ok(defined $port, 'the Node server started') or return;
    my $bye = "perl says bye $SMILEY";
    my $r = talk_to_node($port, [ 4002, $bye ], protocol => 'chat.v1, chat.v2');
    echoes_ok($r, 'deflate');
    my $info = $r->{info};

    # Subprotocols: both sides agree on the one Node picked.
    is($info->{request_protocols}, 'chat.v1, chat.v2', 'Node saw our offer of chat.v1, chat.v2');
    is($r->{protocol}, 'chat.v2', 'get_protocol: chat.v2');
    is($r->{headers}{'Sec-WebSocket-Protocol'}, 'chat.v2', "in the 101's Sec-WebSocket-Protocol");
    is($info->{protocol}, 'chat.v2', "ws's protocol: chat.v2");

    # permessage-deflate negotiated, and used both ways: the payload went
    # over in little more than the 1 MiB that cannot be compressed.
    is($info->{request_extensions}, $OUR_OFFER, 'Node saw our offer');
    my $ext = $r->{headers}{'Sec-WebSocket-Extensions'};
    like($ext // '', qr/^permessage-deflate\b/, 'on_connect headers: Sec-WebSocket-Extensions names permessage-deflate')
        or diag explain $r->{headers};
    is($ext, $info->{response_extensions}, "... as Node sent it");
    is($info->{extensions}, 'permessage-deflate', 'ws negotiated permessage-deflate');
    diag('ws parameters: ' . JSON::PP->new->canonical->encode($info->{deflate_params} // {})) if $ENV{TEST_VERBOSE};
    wire_ok($info, 1, 'our client');

    # We closed with 4002: Node reports it and echoes it back (RFC 6455
    # 5.5.1), which our on_close reports.
    node_saw($log, 'deflate', 4002, $bye);
    is_deeply($r->{close}, [ [ 4002, utf8_bytes($bye) ] ], 'on_close: the code and reason Node echoed');
    is($r->{state}, 'closed', 'the connection is closed');
    stop_daemon($d);
};

subtest 'our client -> Node server without permessage-deflate, no subprotocol, Node closes' => sub {
    my ($d, $port, $log) = start_node_server();
    ok(defined $port, 'the Node server started') or return;
    my $bye = utf8_bytes("node says bye $SMILEY");
    my $r = talk_to_node($port, "close:4001:$bye");
    echoes_ok($r, 'plain');
    my $info = $r->{info};
    is($info->{request_protocols}, undef, 'no subprotocol offered');
    is($r->{protocol}, undef, 'get_protocol: undef');
    is($info->{protocol}, '', "ws's protocol: none");

    # Node declined our offer: nothing negotiated, everything uncompressed.
    is($info->{request_extensions}, $OUR_OFFER, 'Node saw our offer');
    ok(!exists $r->{headers}{'Sec-WebSocket-Extensions'}, 'no Sec-WebSocket-Extensions in the 101')
        or diag explain $r->{headers};
    is($info->{extensions}, '', 'ws negotiated no extension');
    wire_ok($info, 0, 'our client');

    # Node closed with 4001: our on_close reports it, and Node reports the
    # close frame we answered with: the same code, no reason (RFC 6455
    # 5.5.1 says the answer typically echoes the code; ws also echoes the
    # reason, we do not).
    is_deeply($r->{close}, [ [ 4001, $bye ] ], "on_close: Node's code and reason");
    node_saw($log, 'plain', 4001, '');
    is($r->{state}, 'closed', 'the connection is closed');
    stop_daemon($d);
};

subtest 'our client with compression => 0 and only chat.v1 -> Node server with permessage-deflate' => sub {
    my ($d, $port, $log) = start_node_server('--deflate');
    ok(defined $port, 'the Node server started') or return;
    my $r = talk_to_node($port, [ 1000 ], compression => 0, protocol => 'chat.v1');
    echoes_ok($r, 'no offer');
    my $info = $r->{info};

    # Node only speaks chat.v2: it answers without a subprotocol, which
    # RFC 6455 4.1 allows, and we accept that.
    is($info->{request_protocols}, 'chat.v1', 'Node saw our offer of chat.v1');
    is($r->{protocol}, undef, 'get_protocol: undef');
    ok(!exists $r->{headers}{'Sec-WebSocket-Protocol'}, 'no Sec-WebSocket-Protocol in the 101');

    is($info->{request_extensions}, undef, 'Node saw no offer');
    ok(!exists $r->{headers}{'Sec-WebSocket-Extensions'}, 'no Sec-WebSocket-Extensions in the 101');
    is($info->{extensions}, '', 'ws negotiated no extension');
    wire_ok($info, 0, 'our client');

    # close(1000) without a reason: Node reports 1000 and an empty reason.
    node_saw($log, 'no offer', 1000, '');
    is_deeply($r->{close}, [ [ 1000, '' ] ], 'on_close: 1000 echoed');
    stop_daemon($d);
};

# ---- Node client -> our server ----

# Our echo server (in this process), with %opt for listen.  It understands
# the commands of ws_echo_server.js: "close:<code>:<reason>" makes it close
# with that code and reason, "ping?<payload>" makes it send_ping that
# payload and answer the pong with "pong:<payload>".  Returns ($ctx, $port,
# $s): $s records connect (request headers), protocol (get_protocol in
# on_connect), messages (the number echoed), pongs, close, errors.
sub our_server {
    my (%opt) = @_;
    my $s = { connect => [], protocol => [], messages => 0, pongs => [], close => [], errors => [] };
    my $ctx = EV::Websockets::Context->new;
    my $port = $ctx->listen(
        port       => 0,
        host       => '127.0.0.1',
        %opt,
        on_connect => sub {
            push @{ $s->{connect} }, $_[1];
            push @{ $s->{protocol} }, $_[0]->get_protocol;
        },
        on_message => sub {
            my ($c, $data, $binary) = @_;
            if (!$binary) {
                return $c->send_ping($1) if $data =~ /\Aping\?(.*)\z/s;
                return $c->close($1, $2) if $data =~ /\Aclose:(\d+):(.*)\z/s;
            }
            $s->{messages}++;
            $binary ? $c->send_binary($data) : $c->send($data);
        },
        on_pong    => sub {
            push @{ $s->{pongs} }, $_[1];
            $_[0]->send("pong:$_[1]");
        },
        on_close   => sub { push @{ $s->{close} }, [ $_[1], $_[2] ] },
        on_error   => sub { push @{ $s->{errors} }, $_[1] },
    );
    return ($ctx, $port, $s);
}

# Run ws_client.js against our server (%$opt for listen) with @args, to the
# end (it gives up after 20 s; we wait 25) while the loop runs.  Returns
# (the client's wait status, its decoded JSON line or {}, its whole output,
# what our server recorded).
sub node_to_us {
    my ($opt, @args) = @_;
    my ($ctx, $port, $s) = our_server(%$opt);
    my ($status, $out) = run_to_end($TMP, [ $NODE, js_script('ws_client.js'), "ws://127.0.0.1:$port/", '--timeout', 20, @args ], 25);
    # The client exits once its close completed; our on_close may follow.
    run_until(sub { @{ $s->{close} } }, 5) if @{ $s->{connect} };
    my ($json) = json_lines($out);
    return ($status, $json || {}, $out, $s);
}

# The Node client's report: exit 0, every echo correct, its ping answered
# by our automatic pong, our ping answered by ws (our on_pong saw the
# payload, and the client saw our "pong:" report).
my $NODE_MESSAGES = 12;    # the length of ws_client.js's script
sub client_ok {
    my ($status, $json, $out, $s, $name) = @_;
    is($status, 0, "$name: ws_client.js exited 0") or diag($out);
    ok($json->{ok}, "$name: ws_client.js reports success") or diag($out);
    is($json->{ws_version}, $WS_VERSION, "$name: the client runs ws $WS_VERSION");
    my @messages = @{ $json->{messages} || [] };
    is(scalar @messages, $NODE_MESSAGES, "$name: all $NODE_MESSAGES messages of its script checked");
    is_deeply([ map { $_->{name} } grep { !$_->{ok} } @messages ], [], "$name: every echo correct");
    is($s->{messages}, $NODE_MESSAGES, "$name: our server echoed $NODE_MESSAGES messages");
    is($json->{pong}, 'node-ping', "$name: Node's ping got our automatic pong, with its payload");
    is_deeply($json->{pings}, [ 'server-ping' ], "$name: Node got our send_ping with its payload");
    is_deeply($s->{pongs}, [ 'server-ping' ], "$name: our on_pong got the payload back from ws");
    is_deeply($s->{errors}, [], "$name: our server: no errors");
    is(scalar @{ $s->{connect} }, 1, "$name: one connection");
}

# What the Node client says about permessage-deflate: negotiated (with
# our answer in the 101) and used both ways if $deflate, else neither.
sub client_deflate_ok {
    my ($json, $out, $deflate) = @_;
    if ($deflate) {
        like($json->{response_extensions} // '', qr/^permessage-deflate\b/,
            'the 101 carried Sec-WebSocket-Extensions: permessage-deflate') or diag($out);
        is($json->{extensions}, 'permessage-deflate', 'ws negotiated permessage-deflate');
        diag("answer: $json->{response_extensions}") if $ENV{TEST_VERBOSE} && $json->{response_extensions};
    }
    else {
        is($json->{response_extensions}, undef, 'no Sec-WebSocket-Extensions in the 101') or diag($out);
        is($json->{extensions}, '', 'ws negotiated no extension');
    }
    wire_ok($json, $deflate, 'our server');
}

subtest 'Node client -> our server with compression => 1 and subprotocols, Node closes' => sub {
    my ($status, $json, $out, $s) = node_to_us(
        { compression => 1, protocol => [ 'chat.v3', 'chat.v2', 'chat.v1' ] },
        '--protocol', 'chat.v1,chat.v2', '--close', utf8_bytes("4003:node client bye $SMILEY"));
    client_ok($status, $json, $out, $s, 'deflate');

    # Our server's preference wins: chat.v2 comes before chat.v1 in our list.
    is($s->{connect}[0]{'Sec-WebSocket-Protocol'}, 'chat.v1,chat.v2', 'we saw the offer of chat.v1, chat.v2');
    is_deeply($s->{protocol}, [ 'chat.v2' ], 'get_protocol on our side: chat.v2');
    is($json->{protocol}, 'chat.v2', "ws's protocol: chat.v2");

    # permessage-deflate negotiated (by default our answer asks both sides
    # to drop their context), and used both ways.
    like($s->{connect}[0]{'Sec-WebSocket-Extensions'} // '', qr/^permessage-deflate\b/, 'Node offered permessage-deflate');
    client_deflate_ok($json, $out, 1);
    like($json->{response_extensions} // '', qr/server_no_context_takeover/, '... with server_no_context_takeover');

    # Node closed with 4003: our on_close reports it; Node reports our
    # answer: the code echoed, without a reason (as in the other direction).
    is_deeply($s->{close}, [ [ 4003, utf8_bytes("node client bye $SMILEY") ] ],
        'our on_close: the code and reason Node sent');
    is($json->{close_code}, 4003, 'Node: our answer echoed the code');
    is($json->{close_reason}, '', '... without a reason');
};

subtest 'Node client -> our server with compression => 1, context_takeover => 1' => sub {
    my ($status, $json, $out, $s) = node_to_us({ compression => 1, context_takeover => 1 });
    client_ok($status, $json, $out, $s, 'context takeover');
    # Nobody was asked to drop the context: ws keeps its compressor (ws's
    # second copy of the 2000 bytes refers to the first), and so do we.
    client_deflate_ok($json, $out, 1);
    unlike($json->{response_extensions} // '', qr/no_context_takeover/, '... without *_no_context_takeover');
    is_deeply($s->{close}, [ [ 1000, '' ] ], 'our on_close: 1000');
};

subtest 'Node client -> our server without compression, our server closes' => sub {
    # The reason reaches our on_message as UTF-8 bytes, and goes to close()
    # as such.
    my $bye = "perl server bye $SMILEY";
    my ($status, $json, $out, $s) = node_to_us({}, '--server-close', utf8_bytes("4004:$bye"));
    client_ok($status, $json, $out, $s, 'plain');
    ok(!exists $s->{connect}[0]{'Sec-WebSocket-Protocol'}, 'no subprotocol offered');
    is_deeply($s->{protocol}, [ undef ], 'get_protocol on our side: undef');
    is($json->{protocol}, '', "ws's protocol: none");

    # Node offered permessage-deflate; we declined: everything uncompressed.
    like($s->{connect}[0]{'Sec-WebSocket-Extensions'} // '', qr/^permessage-deflate\b/, 'Node offered permessage-deflate');
    client_deflate_ok($json, $out, 0);

    # We closed with 4004: Node reports it; our on_close reports Node's
    # answer (the same code and reason echoed).
    is($json->{close_code}, 4004, "Node's close event: our code");
    is($json->{close_reason}, $bye, '... and our reason');
    is_deeply($s->{close}, [ [ 4004, utf8_bytes($bye) ] ], 'our on_close: the code and reason Node echoed');
};

subtest 'Node client without permessage-deflate -> our server with compression => 1' => sub {
    my ($status, $json, $out, $s) = node_to_us({ compression => 1 }, '--no-deflate');
    client_ok($status, $json, $out, $s, 'no offer');
    ok(!exists $s->{connect}[0]{'Sec-WebSocket-Extensions'}, 'Node made no offer');
    client_deflate_ok($json, $out, 0);
    # ws_client.js closes with 1000 and no reason by default.
    is_deeply($s->{close}, [ [ 1000, '' ] ], 'our on_close: 1000');
    is($json->{close_code}, 1000, 'Node: 1000 echoed');
};

subtest 'Node client offering only subprotocols we do not speak' => sub {
    my ($status, $json, $out, $s) = node_to_us({ protocol => [ 'chat.v2' ] }, '--protocol', 'chat.v9');
    # listen(protocol => ...) refuses such a client with 400; ws reports it.
    isnt($status, 0, 'ws_client.js failed');
    like($json->{error} // '', qr/\bUnexpected server response: 400\b/, 'ws saw our 400 Bad Request') or diag($out);
    is_deeply($s->{connect}, [], 'no connection on our side');
};

ok(stop_all_daemons(), 'every peer process ended');

done_testing;
