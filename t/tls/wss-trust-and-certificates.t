# Proves: wss:// clients and TLS listeners: trust, name checks, client
# certificates, protocol mix-ups, large messages, loading errors.
# POD: EV::Websockets, "new" (ssl_*), "connect" (ssl_verify), "listen"
# (ssl_cert), "TLS".
#
# TLS: wss:// clients and TLS listeners, trust (ssl_ca, ssl_verify), name
# checks, client certificates (mTLS), protocol mix-ups, large and many
# messages over TLS, certificate and key loading errors (certificates in
# t/certs).
use strict;
use warnings;
use Test::More;
use POSIX ();
use EV;
use EV::Websockets;
use Socket qw(getaddrinfo getnameinfo SOCK_STREAM NI_NUMERICHOST NIx_NOSERV);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $CERTS = 't/certs';
-r "$CERTS/$_" or BAIL_OUT("missing $CERTS/$_ (see $CERTS/regenerate.sh)")
    for qw(ca.pem server.pem server-key.pem client.pem client-key.pem wrong-name.pem
        wrong-name-key.pem other-ca.pem other-server.pem other-server-key.pem);
sub cert { return "$CERTS/$_[0]" }

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# Does 'localhost' resolve to 127.0.0.1 (the TLS listeners bind 127.0.0.1)?
my $localhost_v4 = do {
    my ($err, @addrs) = getaddrinfo('localhost', 0, { socktype => SOCK_STREAM });
    !$err && grep {
        my ($e, $ip) = getnameinfo($_->{addr}, NI_NUMERICHOST, NIx_NOSERV);
        !$e && $ip eq '127.0.0.1';
    } @addrs;
};
my $NAME = $localhost_v4 ? 'localhost' : '127.0.0.1';

my $have_v6 = eval { require IO::Socket::IP; IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1) } ? 1 : 0;

# The echo server's on_message, for listeners that also record their
# events (recording() would otherwise replace echo_server's own).
sub echo_back {
    my ($conn, $data, $is_binary) = @_;
    $is_binary ? $conn->send_binary($data) : $conn->send($data);
}

# An echo listener serving TLS with the given certificate and key.
sub tls_listener {
    my ($ctx, $cert, $key, %extra) = @_;
    return echo_server($ctx, host => '127.0.0.1', ssl_cert => cert($cert), ssl_key => cert($key), %extra);
}

# A client context that trusts the test CA (plus any other options).
sub trusting_ctx { return EV::Websockets::Context->new(ssl_ca => cert('ca.pem'), @_) }

# Connect from $ctx to $url (%opt goes to connect), send each of
# @{ $send } ([ data, is_binary ]) at once on connect, and wait for as many
# messages back or a failure; then close.  Returns a hash ref: connected,
# replies ([ data, is_binary ] each), errors ([ text, state inside ] each),
# closed, and whatever $on_done->() returned when the last reply arrived
# (in {at_done}).
sub exchange {
    my ($ctx, $url, %opt) = @_;
    my $send    = delete $opt{send} || [ [ 'hello', 0 ] ];
    my $secs    = delete $opt{timeout} // 5;
    my $on_done = delete $opt{on_done};
    my %r = (replies => [], errors => []);
    my $conn = $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub {
            my ($c) = @_;
            $r{connected}++;
            $_->[1] ? $c->send_binary($_->[0]) : $c->send($_->[0]) for @$send;
        },
        on_message => sub {
            push @{ $r{replies} }, [ $_[1], $_[2] ];
            if (@{ $r{replies} } == @$send) {
                $r{done}    = 1;
                $r{at_done} = $on_done->() if $on_done;
            }
        },
        on_error => sub { push @{ $r{errors} }, [ $_[1], $_[0]->state ] },
        on_close => sub { $r{closed}++ },
    );
    run_until(sub { $r{done} || @{ $r{errors} } || $r{closed} }, $secs);
    if ($r{connected} && !$r{closed}) {
        $conn->close;
        run_until(sub { $r{closed} }, 2);
    }
    return \%r;
}

# The checks for a working echo: connected, the reply, no error.
sub echo_ok {
    my ($r, $name, $expect) = @_;
    $expect //= 'hello';
    ok($r->{connected}, "$name: connected");
    is($r->{replies}[0][0], $expect, "$name: echo received");
    is_deeply([ map { $_->[0] } @{ $r->{errors} } ], [], "$name: no error");
}

# Connect from $ctx to $url (%opt goes to connect) where the connection
# must fail.  Returns a hash ref: errors ([ text, state inside ] each),
# connected, closed, state (afterwards).
sub failure {
    my ($ctx, $url, %opt) = @_;
    my %r = (errors => []);
    my $conn = $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub { $r{connected}++ },
        on_message => sub { $r{message}++ },
        on_error   => sub { push @{ $r{errors} }, [ $_[1], $_[0]->state ] },
        on_close   => sub { $r{closed}++ },
    );
    run_until(sub { @{ $r{errors} } || $r{closed} }, 5);
    run_for(0.1);    # a second or late callback would show up here
    $r{state} = $conn->state;
    return \%r;
}

# The checks for a failure before the handshake completed: on_error only,
# once, in state "closed", its text matching each of @re.
sub failed_ok {
    my ($r, $name, @re) = @_;
    is(scalar @{ $r->{errors} }, 1, "$name: on_error fired once");
    my ($err, $state) = @{ $r->{errors}[0] || [] };
    like($err // '', $_, "$name: the error matches $_") for @re;
    is($state, 'closed', "$name: state is \"closed\" inside on_error");
    ok(!$r->{connected}, "$name: on_connect never fired");
    ok(!$r->{closed}, "$name: on_close never fired");
    is($r->{state}, 'closed', "$name: state is \"closed\" afterwards");
    return $err;
}

my $TLS_FAILED = qr/^TLS handshake failed: \S/;
my $UNTRUSTED  = qr/^TLS handshake failed: the server's certificate is not signed by a CA in ssl_ca /;

my $server = EV::Websockets::Context->new;
my %sev;
my $port = tls_listener($server, 'server.pem', 'server-key.pem', recording(\%sev, on_message => \&echo_back));
like($port, qr/^[1-9]\d*\z/, 'a TLS listener on 127.0.0.1 returns its port');

subtest 'wss echo, the server name checked against the test CA' => sub {
    my $ctx = trusting_ctx();
    SKIP: {
        skip "'localhost' does not resolve to 127.0.0.1", 3 unless $localhost_v4;
        echo_ok(exchange($ctx, "wss://localhost:$port/"), 'via localhost (DNS SAN)');
    }
    echo_ok(exchange($ctx, "wss://127.0.0.1:$port/"), 'via 127.0.0.1 (IP SAN)');
    echo_ok(exchange($ctx, "WSS://$NAME:$port/", ssl_verify => 1), 'upper-case scheme, ssl_verify => 1');
    echo_ok(exchange(trusting_ctx(ssl_init => 0), "wss://$NAME:$port/"), 'a context with ssl_init => 0');
    ok(scalar(@{ $sev{connect} || [] }) >= 3, 'the server saw the connections');
    is_deeply($sev{error} || [], [], 'the server reported no error');
};

SKIP: {
    skip 'no IPv6 loopback', 3 unless $have_v6;
    my $v6port = tls_listener($server, 'server.pem', 'server-key.pem', host => '::1');
    echo_ok(exchange(trusting_ctx(), "wss://[::1]:$v6port/"), 'via [::1] (IP SAN)');
}

subtest 'a large text and binary message over TLS' => sub {
    my $one  = join('', map { sprintf "%07d\n", $_ } 0 .. (1 << 17) - 1);    # 1 MiB text
    my $five = pack('N*', 0 .. (5 << 18) - 1);                               # 5 MiB binary
    is(length $one,  1 << 20, '1 MiB payload prepared');
    is(length $five, 5 << 20, '5 MiB payload prepared');
    my $r = exchange(trusting_ctx(), "wss://$NAME:$port/", send => [ [ $one, 0 ], [ $five, 1 ] ], timeout => 8);
    ok($r->{connected}, 'connected');
    is(scalar @{ $r->{replies} }, 2, 'two echoes');
    my ($t, $bin) = @{ $r->{replies} };
    # eq rather than is(): a mismatch must not dump megabytes of diagnostics
    ok($t && $t->[0] eq $one && !$t->[1], '1 MiB text arrived whole, as text');
    is(length($t->[0] // ''), 1 << 20, '... its length');
    ok($bin && $bin->[0] eq $five && $bin->[1], '5 MiB binary arrived whole, as binary');
    is(length($bin->[0] // ''), 5 << 20, '... its length');
    is_deeply([ map { $_->[0] } @{ $r->{errors} } ], [], 'no error');
};

subtest 'many small messages sent at once arrive in order' => sub {
    my @msgs = map { sprintf('%03d:', $_) . ('x' x 96) } 0 .. 499;
    is(length $msgs[0], 100, '100-byte messages');
    my $r = exchange(trusting_ctx(), "wss://$NAME:$port/", send => [ map { [ $_, 0 ] } @msgs ]);
    is(scalar @{ $r->{replies} }, 500, '500 echoes');
    my @got = map { $_->[0] } @{ $r->{replies} };
    ok(join("\n", @got) eq join("\n", @msgs), 'all of them, whole and in order');
    is_deeply([ map { $_->[0] } @{ $r->{errors} } ], [], 'no error');
};

subtest 'an untrusted server' => sub {
    my $other = tls_listener($server, 'other-server.pem', 'other-server-key.pem');
    my $r = failure(trusting_ctx(), "wss://$NAME:$other/");
    failed_ok($r, 'certificate from another CA', $TLS_FAILED, $UNTRUSTED);

    $r = failure(EV::Websockets::Context->new, "wss://$NAME:$port/");
    failed_ok($r, 'test CA without ssl_ca (system roots)', $TLS_FAILED, $UNTRUSTED);

    $r = failure(EV::Websockets::Context->new(ssl_ca => cert('other-ca.pem')), "wss://$NAME:$port/");
    failed_ok($r, 'ssl_ca replaces the roots: trusting only the other CA', $TLS_FAILED,
        $UNTRUSTED);

    echo_ok(exchange(trusting_ctx(), "wss://$NAME:$other/", ssl_verify => 0),
        'another CA, ssl_verify => 0');
    echo_ok(exchange(EV::Websockets::Context->new, "wss://$NAME:$port/", ssl_verify => 0),
        'no ssl_ca, ssl_verify => 0');
    echo_ok(exchange(trusting_ctx(), "wss://$NAME:$port/"), 'the trusted server still works');
};

subtest 'a certificate for another name' => sub {
    my $wrong = tls_listener($server, 'wrong-name.pem', 'wrong-name-key.pem');
    my $r = failure(trusting_ctx(), "wss://$NAME:$wrong/");
    failed_ok($r, "name mismatch ($NAME)", $TLS_FAILED, qr/^TLS handshake failed: the server's certificate is for wrong\.example, not /);
    $r = failure(trusting_ctx(), "wss://127.0.0.1:$wrong/");
    failed_ok($r, 'name mismatch (127.0.0.1)', $TLS_FAILED, qr/^TLS handshake failed: the server's certificate is for wrong\.example, not /);
    echo_ok(exchange(trusting_ctx(), "wss://$NAME:$wrong/", ssl_verify => 0), 'wrong name, ssl_verify => 0');
};

subtest 'client certificates (mTLS)' => sub {
    my $sctx = EV::Websockets::Context->new;
    my %ev;
    my $mport = tls_listener($sctx, 'server.pem', 'server-key.pem', ssl_ca => cert('ca.pem'), recording(\%ev, on_message => \&echo_back));

    my $client = trusting_ctx(ssl_cert => cert('client.pem'), ssl_key => cert('client-key.pem'));
    my $r = exchange($client, "wss://$NAME:$mport/", on_done => sub { scalar $sctx->connections });
    echo_ok($r, 'with a client certificate');
    is($r->{at_done}, 1, 'the server has the connection');
    is(scalar @{ $ev{connect} || [] }, 1, 'server on_connect fired once');
    ok(run_until(sub { $ev{close} }, 2), 'server on_close fired after the client closed');

    %ev = ();
    $r = failure(trusting_ctx(), "wss://$NAME:$mport/");
    failed_ok($r, 'without a client certificate', $TLS_FAILED, qr/the server requires a client certificate/);
    ok(!$ev{connect}, 'no server connection for it');
    is(scalar $sctx->connections, 0, '... and none listed');

    $r = exchange(trusting_ctx(ssl_cert => cert('client.pem'), ssl_key => cert('client-key.pem')),
        "wss://127.0.0.1:$mport/");
    echo_ok($r, 'with a client certificate, again (via 127.0.0.1)');
    echo_ok(exchange($client, "wss://$NAME:$port/"), 'a client certificate is harmless where none is asked for');
};

subtest 'protocol mix-ups fail cleanly' => sub {
    my $pctx  = EV::Websockets::Context->new;
    my %pev;
    my $plain = echo_server($pctx, host => '127.0.0.1', recording(\%pev, on_message => \&echo_back));
    my $r = failure(trusting_ctx(), "wss://127.0.0.1:$plain/");
    failed_ok($r, 'wss:// to a plain listener', qr/^TLS handshake failed: the server does not speak TLS: use ws:\/\/\z/);
    ok(!$pev{connect}, 'the plain listener made no connection of it');
    echo_ok(exchange(EV::Websockets::Context->new, "ws://127.0.0.1:$plain/"), 'the plain listener still serves ws://');

    my $tctx = EV::Websockets::Context->new;
    my %tev;
    my $tls = tls_listener($tctx, 'server.pem', 'server-key.pem', recording(\%tev, on_message => \&echo_back));
    $r = failure(EV::Websockets::Context->new, "ws://127.0.0.1:$tls/");
    failed_ok($r, 'ws:// to a TLS listener', qr/^handshake failed: the server speaks TLS: use wss:\/\/\z/);
    ok(!$tev{connect} && !$tev{error} && !$tev{close}, 'no server callback fired for it');
    is(scalar $tctx->connections, 0, '... and no server connection is listed');
    echo_ok(exchange(trusting_ctx(), "wss://$NAME:$tls/"), 'the TLS listener still serves wss://');
};

subtest 'contexts with TLS options, created and destroyed repeatedly' => sub {
    my $failed = 0;
    for my $i (1 .. 50) {
        my $ctx = eval {
            EV::Websockets::Context->new(
                ssl_ca   => cert('ca.pem'),
                ssl_cert => cert('client.pem'),
                ssl_key  => cert('client-key.pem'),
                ssl_init => 0,
            );
        } or do { $failed++; diag("iteration $i: $@") if $failed == 1; next };
        eval { tls_listener($ctx, 'server.pem', 'server-key.pem', ssl_ca => cert('ca.pem')); 1 }
            or do { $failed++; diag("iteration $i listen: $@") if $failed == 1 };
        $ctx->DESTROY if $i % 2;    # the others go by reference count
    }
    is($failed, 0, '50 contexts, each with a TLS listener, created and destroyed');
    echo_ok(exchange(trusting_ctx(), "wss://$NAME:$port/"), 'TLS still works afterwards');
};

subtest 'forked children create and destroy TLS contexts and connect' => sub {
    # Each child builds TLS contexts, connects to the parent's TLS listener
    # with a loop of its own, and exits; the parent serves meanwhile and
    # keeps working afterwards.
    my @kids;
    for my $n (1 .. 3) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $loop = EV::Loop->new;
            my $ok   = 0;
            for (1 .. 10) {
                my $ctx = EV::Websockets::Context->new(loop => $loop, ssl_ca => cert('ca.pem'));
                $ctx->connect(
                    url        => "wss://$NAME:$port/",
                    on_connect => sub { $_[0]->send("child $n") },
                    on_message => sub { $ok++; $_[0]->close; $loop->break },
                    on_error   => sub { $loop->break },
                );
                my $limit = $loop->timer(5, 0, sub { $loop->break });
                $loop->run;
            }
            POSIX::_exit($ok == 10 ? 0 : 1);
        }
        push @kids, $pid;
    }
    my %status;
    my @watchers = map { my $pid = $_; EV::child($pid, 0, sub { $status{$pid} = $_[0]->rstatus }) } @kids;
    ok(run_until(sub { keys %status == @kids }, 8), 'the children finished');
    is_deeply([ map { $status{$_} } @kids ], [ 0, 0, 0 ], 'each made 10 TLS connections and exited cleanly');
    echo_ok(exchange(trusting_ctx(), "wss://$NAME:$port/"), 'the parent still serves TLS');
};

subtest 'Context->new: bad certificate and key files croak' => sub {
    my $missing = cert('no-such-file.pem');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_ca => $missing) }),
        qr/^Failed to create context: .*\Q$missing\E.* at /s, 'a missing ssl_ca file, named');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_cert => $missing, ssl_key => cert('client-key.pem')) }),
        qr/^Failed to create context: .*\Q$missing\E.* at /s, 'a missing ssl_cert file, named');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_cert => cert('client.pem'), ssl_key => $missing) }),
        qr/^Failed to create context: .*\Q$missing\E.* at /s, 'a missing ssl_key file, named');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_ca => cert('client-key.pem')) }),
        qr/^Failed to create context: .*client-key\.pem.* at /s, 'an ssl_ca file without a certificate, named');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_cert => cert('client.pem')) }),
        qr/^Failed to create context: \S.* at /s, 'ssl_cert without ssl_key');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_cert => cert('client.pem'), ssl_key => cert('other-server-key.pem')) }),
        qr/^Failed to create context: .*(?:client\.pem|other-server-key\.pem).* at /s,
        'a key (same type) that does not match the certificate, named');
    like(croak_of(sub { EV::Websockets::Context->new(ssl_cert => cert('client.pem'), ssl_key => cert('server-key.pem')) }),
        qr/^Failed to create context: .*(?:client\.pem|server-key\.pem).* at /s,
        'a key (other type) that does not match the certificate, named');
    is(croak_of(sub { EV::Websockets::Context->new(ssl_cert => cert('client.pem'), ssl_key => cert('client-key.pem'), ssl_ca => cert('ca.pem')) }),
        '', 'the matching pair loads');
};

subtest 'listen: bad certificate and key files croak' => sub {
    my $ctx     = EV::Websockets::Context->new;
    my $missing = cert('no-such-file.pem');
    my $FAILED  = qr/^Failed to create vhost for listening: \S/;
    for my $case (
        [ 'a missing ssl_cert file', ssl_cert => $missing, ssl_key => cert('server-key.pem') ],
        [ 'a missing ssl_key file', ssl_cert => cert('server.pem'), ssl_key => $missing ],
        [ 'a missing ssl_ca file', ssl_cert => cert('server.pem'), ssl_key => cert('server-key.pem'), ssl_ca => $missing ],
    ) {
        my ($name, @opt) = @$case;
        my $err = croak_of(sub { $ctx->listen(port => 0, host => '127.0.0.1', @opt) });
        like($err, $FAILED, $name);
        like($err, qr/no-such-file\.pem|No such file/i, '... naming the file or the reason');
    }
    like(croak_of(sub { $ctx->listen(port => 0, host => '127.0.0.1', ssl_cert => cert('server.pem'), ssl_key => cert('wrong-name-key.pem')) }),
        $FAILED, 'a key (same type) that does not match the certificate');
    like(croak_of(sub { $ctx->listen(port => 0, host => '127.0.0.1', ssl_cert => cert('server.pem'), ssl_key => cert('client-key.pem')) }),
        $FAILED, 'a key (other type) that does not match the certificate');
    like(croak_of(sub { $ctx->listen(port => 0, host => '127.0.0.1', ssl_cert => cert('server-key.pem'), ssl_key => cert('server-key.pem')) }),
        $FAILED, 'an ssl_cert file without a certificate');
    is(scalar $ctx->connections, 0, 'nothing left behind');
    my $ok = croak_of(sub { tls_listener($ctx, 'wrong-name.pem', 'wrong-name-key.pem') });
    is($ok, '', 'a PKCS#1 RSA key loads');
    $ok = croak_of(sub { tls_listener($ctx, 'other-server.pem', 'other-server-key.pem') });
    is($ok, '', 'an EC (SEC1) key loads');
};

done_testing;
