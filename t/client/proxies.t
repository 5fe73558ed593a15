# Proves: HTTP CONNECT and SOCKS5 proxies, from the options and the
# environment, really carry the traffic; no_proxy and proxy => "" bypass them.
# POD: EV::Websockets, "new" (proxy => $host, proxy_port => $port),
# "on_error messages".
#
# HTTP CONNECT through real tinyproxy instances (plain, with BasicAuth,
# and one refusing the port), SOCKS5 through real microsocks instances
# (with and without username/password), the environment variables
# (https_proxy, http_proxy, all_proxy, no_proxy, NO_PROXY) and
# proxy => "", and the exact CONNECT request checked on a fake proxy.  The
# proxies run on 127.0.0.1, started from this test; their logs show that
# traffic really went through them.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use Scalar::Util qw(weaken);
use Socket qw(getaddrinfo getnameinfo SOCK_STREAM NI_NUMERICHOST NIx_NOSERV);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $CERTS = 't/certs';
-r "$CERTS/$_" or BAIL_OUT("missing $CERTS/$_ (see $CERTS/regenerate.sh)") for qw(ca.pem server.pem server-key.pem);

my $TMP = tempdir('ev-ws-proxy-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Every daemon started here; whatever is still running goes at exit.

my $TINYPROXY = find_program('tinyproxy');
my $MICROSOCKS = find_program('microsocks');

# Start a tinyproxy on 127.0.0.1 with @extra config lines.  Returns a hash
# ref (port, log, daemon) once it accepts connections, or a string saying
# why it did not start.
sub start_tinyproxy {
    my ($name, @extra) = @_;
    my $port = closed_port();
    my $log  = "$TMP/$name.log";
    my $conf = "$TMP/$name.conf";
    open(my $fh, '>', $conf) or die "$conf: $!";
    print $fh map { "$_\n" } "Port $port", 'Listen 127.0.0.1', 'Allow 127.0.0.1',
        qq{LogFile "$log"}, 'LogLevel Info', 'Timeout 30', 'MaxClients 50', @extra;
    close $fh;
    my $d = spawn_daemon([ $TINYPROXY, '-d', '-c', $conf ], "$TMP/$name.out");
    return { port => $port, log => $log, daemon => $d } if wait_for_port($port, 5, $d);
    stop_daemon($d);
    return "tinyproxy ($name) did not start: " . slurp("$TMP/$name.out") . slurp($log);
}

# Start a microsocks on 127.0.0.1 with extra arguments @args; as above.
# Its log (stdout) has a line "client[N] 127.0.0.1: connected to HOST:PORT"
# for every target it connected to.
sub start_microsocks {
    my ($name, @args) = @_;
    my $port = closed_port();
    my $log  = "$TMP/$name.log";
    my $d = spawn_daemon([ $MICROSOCKS, '-i', '127.0.0.1', '-p', $port, @args ], $log);
    return { port => $port, log => $log, daemon => $d } if wait_for_port($port, 5, $d);
    stop_daemon($d);
    return "microsocks ($name) did not start: " . slurp($log);
}

# How many CONNECT requests for $target ("host:port") a tinyproxy logged.
sub tiny_connects {
    my ($tp, $target) = @_;
    return scalar(() = slurp($tp->{log}) =~ /: CONNECT \Q$target\E HTTP\/1\.[01]$/mg);
}

# How many connections to $target ("host:port") a microsocks logged.
sub socks_connects {
    my ($ms, $target) = @_;
    return scalar(() = slurp($ms->{log}) =~ /: connected to \Q$target\E$/mg);
}

# A fake HTTP proxy on 127.0.0.1 (on $opt{port}, default any): it records
# the head of each request (in heads), answers $opt{answer}, and shuts its
# side down.  Returns undef if the port cannot be bound.
sub fake_proxy {
    my (%opt) = @_;
    my $listener = IO::Socket::INET->new(
        Listen => 5, LocalAddr => '127.0.0.1', LocalPort => $opt{port} // 0, Proto => 'tcp', ReuseAddr => 1,
    ) or return undef;
    $listener->blocking(0);
    my $fp = { port => $listener->sockport, heads => [], answer => $opt{answer}, listener => $listener };
    weaken(my $wfp = $fp);
    $fp->{lw} = EV::io($listener, EV::READ, sub {
        my $sock = $listener->accept or return;
        $sock->blocking(0);
        my ($buf, $answered, $id) = ('', 0, fileno $sock);
        $wfp->{rw}{$id} = EV::io($sock, EV::READ, sub {
            my $n = sysread($sock, $buf, 4096, length $buf);
            return if !defined $n && ($!{EAGAIN} || $!{EINTR});
            if (!$answered && (my $end = index($buf, "\r\n\r\n")) >= 0) {
                push @{ $wfp->{heads} }, substr($buf, 0, $end + 4);
                syswrite($sock, $wfp->{answer});
                shutdown($sock, 1);
                $answered = 1;
            }
            if (!$n) {
                delete $wfp->{rw}{$id};
                close $sock;
            }
        });
    });
    return $fp;
}

# The request line and the headers (names lowercased) of a request head.
sub parse_head {
    my ($head) = @_;
    my ($first, @lines) = split /\r\n/, $head // '';
    my %h;
    for (@lines) { push @{ $h{ lc $1 } }, $2 if /^([^:]+):[ \t]*(.*?)[ \t]*\z/ }
    return ($first, \%h);
}

# Checks for a working echo through ctx_roundtrip.
sub echo_ok {
    my ($r, $name) = @_;
    is($r->{reply}, 'hello', "$name: echo received") or diag explain $r;
    is_deeply($r->{errors}, [], "$name: no error");
    is_deeply($r->{closes}, [ [ 1000, '' ] ], "$name: clean close");
}

# Checks for a connection that failed before opening: on_error once (in
# state "closed") matching $re, no on_connect, no on_close.
sub failed_ok {
    my ($r, $re, $name) = @_;
    is(scalar @{ $r->{errors} }, 1, "$name: on_error fired once") or diag explain $r;
    like($r->{errors}[0] // '', $re, "$name: error text");
    is($r->{error_states}[0], 'closed', "$name: state is \"closed\" inside on_error");
    is($r->{connected}, 0, "$name: on_connect never fired");
    is_deeply($r->{closes}, [], "$name: on_close never fired");
    is($r->{state}, 'closed', "$name: state is \"closed\" afterwards");
}

sub new_ctx { return EV::Websockets::Context->new(@_) }

# A context created with exactly the proxy variables %$env set.
sub env_ctx {
    my ($env, @args) = @_;
    return with_proxy_env($env, sub { new_ctx(@args) });
}

my $UNREACHABLE = qr/^(?:proxy failed|connect failed): /;

# Does 'localhost' resolve to 127.0.0.1 first (the listeners bind 127.0.0.1)?
my $localhost_v4 = do {
    my ($err, @addrs) = getaddrinfo('localhost', 0, { socktype => SOCK_STREAM });
    my ($e, $ip) = @addrs ? getnameinfo($addrs[0]{addr}, NI_NUMERICHOST, NIx_NOSERV) : (1);
    !$err && !$e && $ip eq '127.0.0.1';
};

# ---- The proxies first (before any listener exists), then the servers ----

my ($tp, $tp_auth, $tp_deny, $ms, $ms_auth);
if ($TINYPROXY) {
    $tp      = start_tinyproxy('tinyproxy');
    $tp_auth = start_tinyproxy('tinyproxy-auth', 'BasicAuth user pass');
    # Only CONNECT to this (closed) port is allowed: every other port is
    # refused with 403.
    $tp_deny = start_tinyproxy('tinyproxy-deny', 'ConnectPort ' . closed_port());
}
if ($MICROSOCKS) {
    $ms      = start_microsocks('microsocks');
    $ms_auth = start_microsocks('microsocks-auth', '-u', 'user', '-P', 'pass');
}

my $server = new_ctx(proxy => '');
my $port = echo_server($server, host => '127.0.0.1');
my $tls_port = echo_server($server, host => '127.0.0.1',
    ssl_cert => "$CERTS/server.pem", ssl_key => "$CERTS/server-key.pem");
my $url  = "ws://127.0.0.1:$port/";
my $dead = closed_port();          # nothing listens here
my $dead_proxy = "http://127.0.0.1:$dead";

# Why a part is skipped, or undef.  In CI (.ci/run installs both proxies)
# a missing one is a failure, never a skip.
sub why_not {
    my ($p, $bin, $name) = @_;
    BAIL_OUT("$name is not installed, and CI must run the proxy tests") if !$bin && $ENV{CI};
    return "$name is not installed" unless $bin;
    return $p unless ref $p;
    return undef;
}

# ---- Direct connections first: the environment when the context is made ----

subtest 'no proxy: direct' => sub {
    echo_ok(ctx_roundtrip(env_ctx({}), $url), 'no proxy variables');
    # The environment is read when the context is created, not at connect.
    my $ctx = new_ctx();
    my $r = with_proxy_env({ http_proxy => $dead_proxy, https_proxy => $dead_proxy, all_proxy => $dead_proxy },
        sub { ctx_roundtrip($ctx, $url) });
    echo_ok($r, 'proxy variables set after the context was created');
    echo_ok(ctx_roundtrip(env_ctx({ http_proxy => $dead_proxy }, proxy => ''), $url),
        'proxy => "" with http_proxy at a dead port');
    echo_ok(ctx_roundtrip(env_ctx({ https_proxy => $dead_proxy, http_proxy => $dead_proxy, all_proxy => $dead_proxy },
        proxy => ''), $url), 'proxy => "" with all three at a dead port');
    # "First defined": an empty https_proxy is chosen and means no proxy.
    echo_ok(ctx_roundtrip(env_ctx({ https_proxy => '', http_proxy => $dead_proxy }), $url),
        'https_proxy "" (defined) wins over http_proxy at a dead port: direct');
};

subtest 'unreachable proxy' => sub {
    failed_ok(ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $dead), $url),
        $UNREACHABLE, 'proxy/proxy_port at a dead port');
    failed_ok(ctx_roundtrip(env_ctx({ http_proxy => $dead_proxy }), $url), $UNREACHABLE, 'http_proxy at a dead port');
    failed_ok(ctx_roundtrip(env_ctx({ http_proxy => $dead_proxy }, proxy => undef), $url), $UNREACHABLE,
        'proxy => undef still reads http_proxy');
    failed_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://127.0.0.1:$dead" }), $url), $UNREACHABLE,
        'all_proxy socks5:// at a dead port');
};

# ---- The exact CONNECT request, on a fake proxy ----

subtest 'CONNECT request and a non-2xx answer (fake proxy)' => sub {
    my $fp = fake_proxy(answer => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        or return fail("cannot listen: $@");
    my $target = "127.0.0.1:$dead";
    my $r = ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $fp->{port}), "ws://$target/some/path?q=1");
    failed_ok($r, qr/^proxy failed: HTTP 503 Service Unavailable\z/, 'answer 503');
    is($r->{errors}[0], 'proxy failed: HTTP 503 Service Unavailable', '... exactly "proxy failed: HTTP <code> <reason>"');
    is(scalar @{ $fp->{heads} }, 1, 'the proxy got one request');
    my ($first, $h) = parse_head($fp->{heads}[0]);
    is($first, "CONNECT $target HTTP/1.1", 'request line: CONNECT host:port HTTP/1.1');
    is_deeply($h->{host}, [$target], 'Host: host:port');
    ok(!$h->{'proxy-authorization'}, 'no Proxy-Authorization without userinfo');

    # The port is always explicit; names go to the proxy unresolved.
    @{ $fp->{heads} } = ();
    my @cases = (
        [ 'ws://proxy-test.invalid/',       'proxy-test.invalid:80' ],
        [ 'wss://proxy-test.invalid/',      'proxy-test.invalid:443' ],
        [ "ws://proxy-test.invalid:$dead/", "proxy-test.invalid:$dead" ],
        [ "ws://[::1]:$dead/",              "[::1]:$dead" ],
    );
    my $ctx = new_ctx(proxy => '127.0.0.1', proxy_port => $fp->{port});
    for my $case (@cases) {
        my ($u, $t) = @$case;
        @{ $fp->{heads} } = ();
        my $r = ctx_roundtrip($ctx, $u);
        failed_ok($r, qr/^proxy failed: HTTP 503 /, $u);
        my ($first, $h) = parse_head($fp->{heads}[0]);
        is($first, "CONNECT $t HTTP/1.1", "$u: CONNECT $t");
        is_deeply($h->{host}, [$t], "$u: Host: $t");
    }

    # Userinfo in the environment's proxy URL: Basic credentials.
    @{ $fp->{heads} } = ();
    $r = ctx_roundtrip(env_ctx({ http_proxy => "http://user:pass\@127.0.0.1:$fp->{port}" }), $url);
    failed_ok($r, qr/^proxy failed: HTTP 503 /, 'http_proxy with user:pass@');
    ($first, $h) = parse_head($fp->{heads}[0]);
    is($first, "CONNECT 127.0.0.1:$port HTTP/1.1", '... CONNECT to the echo server');
    is_deeply($h->{'proxy-authorization'}, [ 'Basic ' . encode_base64('user:pass', '') ],
        '... Proxy-Authorization: Basic base64(user:pass)');

    # Other refusals keep their status and reason.
    my $fp407 = fake_proxy(answer => "HTTP/1.0 407 Proxy Authentication Required\r\n"
        . "Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n");
    failed_ok(ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $fp407->{port}), $url),
        qr/^proxy failed: HTTP 407 Proxy Authentication Required\z/, 'answer 407 (HTTP/1.0)');
};

subtest 'proxy_port defaults to 1080' => sub {
    my $fp = fake_proxy(port => 1080, answer => "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    plan skip_all => "cannot listen on 127.0.0.1:1080: $@" unless $fp;
    failed_ok(ctx_roundtrip(new_ctx(proxy => '127.0.0.1'), $url), qr/^proxy failed: HTTP 502 Bad Gateway\z/,
        'proxy without proxy_port');
    failed_ok(ctx_roundtrip(env_ctx({ http_proxy => 'http://127.0.0.1' }), $url),
        qr/^proxy failed: HTTP 502 Bad Gateway\z/, 'http_proxy without a port');
    is(scalar @{ $fp->{heads} }, 2, 'both went to port 1080');
    is((parse_head($fp->{heads}[0]))[0], "CONNECT 127.0.0.1:$port HTTP/1.1", '... with the right CONNECT');
};

# ---- tinyproxy (HTTP CONNECT) ----

subtest 'tinyproxy: proxy and proxy_port' => sub {
    my $why = why_not($tp, $TINYPROXY, 'tinyproxy');
    plan skip_all => $why if $why;
    my $target = "127.0.0.1:$port";
    my $before = tiny_connects($tp, $target);
    echo_ok(ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $tp->{port}), $url), 'ws:// via proxy option');
    is(tiny_connects($tp, $target), $before + 1, 'tinyproxy logged the CONNECT');

    # An explicit proxy wins over the environment.
    $before = tiny_connects($tp, $target);
    my $ctx = env_ctx({ https_proxy => $dead_proxy, http_proxy => $dead_proxy, all_proxy => $dead_proxy },
        proxy => '127.0.0.1', proxy_port => $tp->{port});
    echo_ok(ctx_roundtrip($ctx, $url), 'proxy option with dead proxies in the environment');
    is(tiny_connects($tp, $target), $before + 1, '... went through tinyproxy');

    # A longer exchange through the tunnel.
    my (@got, $open, $closed);
    my $conn = $ctx->connect(
        url        => $url,
        on_connect => sub { $open = 1; $_[0]->send("m$_") for 1 .. 20; $_[0]->send_binary("\0" x 100_000) },
        on_message => sub { push @got, length $_[1] > 10 ? length $_[1] : $_[1]; $_[0]->close if @got == 21 },
        on_close   => sub { $closed = 1 },
        on_error   => sub { diag "error: $_[1]"; $closed = 1 },
    );
    ok(run_until(sub { $closed }, 5), 'many messages: done');
    is_deeply(\@got, [ (map { "m$_" } 1 .. 20), 100_000 ], '... all echoed in order');
};

subtest 'tinyproxy: environment' => sub {
    my $why = why_not($tp, $TINYPROXY, 'tinyproxy');
    plan skip_all => $why if $why;
    my $via    = "http://127.0.0.1:$tp->{port}";
    my $target = "127.0.0.1:$port";

    my @cases = (
        [ 'http_proxy http://host:port', { http_proxy => $via } ],
        [ 'http_proxy host:port',        { http_proxy => "127.0.0.1:$tp->{port}" } ],
        [ 'http_proxy with a trailing /', { http_proxy => "$via/" } ],
        [ 'https_proxy (also for ws://)', { https_proxy => $via } ],
        [ 'all_proxy http://',            { all_proxy => $via } ],
        [ 'https_proxy before http_proxy', { https_proxy => $via, http_proxy => $dead_proxy } ],
        [ 'https_proxy before all_proxy',  { https_proxy => $via, all_proxy => $dead_proxy } ],
        [ 'http_proxy before all_proxy',   { http_proxy => $via, all_proxy => $dead_proxy } ],
        [ 'no_proxy naming another host',  { http_proxy => $via, no_proxy => 'example.com' } ],
    );
    for my $case (@cases) {
        my ($name, $env) = @$case;
        my $before = tiny_connects($tp, $target);
        my $ctx = env_ctx($env);
        # Connect with the environment cleared: it was read at creation.
        echo_ok(ctx_roundtrip($ctx, $url), $name);
        is(tiny_connects($tp, $target), $before + 1, "$name: through tinyproxy");
    }

    # proxy => "" ignores a working proxy in the environment too.
    my $before = tiny_connects($tp, $target);
    echo_ok(ctx_roundtrip(env_ctx({ https_proxy => $via, http_proxy => $via, all_proxy => $via }, proxy => ''), $url),
        'proxy => "" with tinyproxy in the environment');
    is(tiny_connects($tp, $target), $before, '... did not go through tinyproxy');
};

subtest 'tinyproxy: wss:// through the tunnel' => sub {
    my $why = why_not($tp, $TINYPROXY, 'tinyproxy');
    plan skip_all => $why if $why;
    my $name   = $localhost_v4 ? 'localhost' : '127.0.0.1';
    my $target = "$name:$tls_port";
    my $before = tiny_connects($tp, $target);
    my $r = ctx_roundtrip(new_ctx(ssl_ca => "$CERTS/ca.pem", proxy => '127.0.0.1', proxy_port => $tp->{port}),
        "wss://$target/");
    echo_ok($r, "wss://$target/ via proxy option");
    is(tiny_connects($tp, $target), $before + 1, 'tinyproxy logged the CONNECT');

    $before = tiny_connects($tp, $target);
    $r = ctx_roundtrip(env_ctx({ https_proxy => "http://127.0.0.1:$tp->{port}" }, ssl_ca => "$CERTS/ca.pem"),
        "wss://$target/");
    echo_ok($r, "wss://$target/ via https_proxy");
    is(tiny_connects($tp, $target), $before + 1, 'tinyproxy logged the CONNECT');

    # The certificate is still checked inside the tunnel.
    $r = ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $tp->{port}), "wss://$target/");
    failed_ok($r, qr/^TLS handshake failed: /, 'an untrusted certificate inside the tunnel');
};

subtest 'tinyproxy: BasicAuth' => sub {
    my $why = why_not($tp_auth, $TINYPROXY, 'tinyproxy');
    plan skip_all => $why if $why;
    my $target = "127.0.0.1:$port";
    my $before = tiny_connects($tp_auth, $target);
    echo_ok(ctx_roundtrip(env_ctx({ http_proxy => "http://user:pass\@127.0.0.1:$tp_auth->{port}" }), $url),
        'http_proxy with user:pass@');
    echo_ok(ctx_roundtrip(env_ctx({ https_proxy => "user:pass\@127.0.0.1:$tp_auth->{port}" }), $url),
        'https_proxy user:pass@host:port (no scheme)');
    is(tiny_connects($tp_auth, $target), $before + 2, 'tinyproxy logged both');

    failed_ok(ctx_roundtrip(env_ctx({ http_proxy => "http://127.0.0.1:$tp_auth->{port}" }), $url),
        qr/^proxy failed: HTTP 407\b/, 'without credentials (environment)');
    failed_ok(ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $tp_auth->{port}), $url),
        qr/^proxy failed: HTTP 407\b/, 'without credentials (proxy option)');
    # tinyproxy 1.11 answers wrong credentials with 401.
    failed_ok(ctx_roundtrip(env_ctx({ http_proxy => "http://user:wrong\@127.0.0.1:$tp_auth->{port}" }), $url),
        qr/^proxy failed: HTTP 40[17]\b/, 'wrong password');
};

subtest 'tinyproxy: port not allowed' => sub {
    my $why = why_not($tp_deny, $TINYPROXY, 'tinyproxy');
    plan skip_all => $why if $why;
    my $r = ctx_roundtrip(new_ctx(proxy => '127.0.0.1', proxy_port => $tp_deny->{port}), $url);
    failed_ok($r, qr/^proxy failed: HTTP 403\b/, 'CONNECT to a port the proxy refuses');
    like(slurp($tp_deny->{log}), qr/Refused CONNECT method on port $port\b/, 'tinyproxy refused it');
};

# ---- microsocks (SOCKS5) ----

subtest 'microsocks: socks5:// and socks5h://' => sub {
    my $why = why_not($ms, $MICROSOCKS, 'microsocks');
    plan skip_all => $why if $why;
    my $before = socks_connects($ms, "127.0.0.1:$port");
    echo_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://127.0.0.1:$ms->{port}" }), $url), 'all_proxy socks5://');
    echo_ok(ctx_roundtrip(env_ctx({ http_proxy => "socks5://127.0.0.1:$ms->{port}" }), $url), 'http_proxy socks5://');
    echo_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5h://127.0.0.1:$ms->{port}" }), $url),
        'all_proxy socks5h:// with an IP literal');
    is(socks_connects($ms, "127.0.0.1:$port"), $before + 3, 'microsocks logged all three');

    SKIP: {
        skip 'localhost does not resolve to 127.0.0.1 first', 10 unless $localhost_v4;
        my $lurl = "ws://localhost:$port/";
        # socks5: the name is resolved here, the proxy gets the address.
        my ($by_ip, $by_name) = (socks_connects($ms, "127.0.0.1:$port"), socks_connects($ms, "localhost:$port"));
        echo_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://127.0.0.1:$ms->{port}" }), $lurl), "socks5:// $lurl");
        is(socks_connects($ms, "127.0.0.1:$port") - $by_ip, 1, 'socks5://: the proxy was given the address');
        is(socks_connects($ms, "localhost:$port") - $by_name, 0, '... not the name');
        # socks5h: the name goes to the proxy.
        ($by_ip, $by_name) = (socks_connects($ms, "127.0.0.1:$port"), socks_connects($ms, "localhost:$port"));
        echo_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5h://127.0.0.1:$ms->{port}" }), $lurl), "socks5h:// $lurl");
        is(socks_connects($ms, "localhost:$port") - $by_name, 1, 'socks5h://: the proxy was given the name');
        is(socks_connects($ms, "127.0.0.1:$port") - $by_ip, 0, '... not an address');
    }

    SKIP: {
        skip 'localhost does not resolve to 127.0.0.1 first', 4 unless $localhost_v4;
        my $r = ctx_roundtrip(env_ctx({ all_proxy => "socks5h://127.0.0.1:$ms->{port}" }, ssl_ca => "$CERTS/ca.pem"),
            "wss://localhost:$tls_port/");
        echo_ok($r, 'wss:// through socks5h://');
        ok(socks_connects($ms, "localhost:$tls_port") >= 1, '... via microsocks');
    }

    # The proxy cannot reach the target: a SOCKS5 failure reply.
    failed_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://127.0.0.1:$ms->{port}" }), "ws://127.0.0.1:$dead/"),
        qr/^proxy failed: SOCKS5/, 'target refused behind the proxy');
};

subtest 'microsocks: username/password' => sub {
    my $why = why_not($ms_auth, $MICROSOCKS, 'microsocks');
    plan skip_all => $why if $why;
    my $before = socks_connects($ms_auth, "127.0.0.1:$port");
    echo_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://user:pass\@127.0.0.1:$ms_auth->{port}" }), $url),
        'socks5://user:pass@');
    echo_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5h://user:pass\@127.0.0.1:$ms_auth->{port}" }), $url),
        'socks5h://user:pass@');
    is(socks_connects($ms_auth, "127.0.0.1:$port"), $before + 2, 'microsocks logged both');

    failed_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://user:wrong\@127.0.0.1:$ms_auth->{port}" }), $url),
        qr/^proxy failed: SOCKS5/, 'wrong password');
    failed_ok(ctx_roundtrip(env_ctx({ all_proxy => "socks5://127.0.0.1:$ms_auth->{port}" }), $url),
        qr/^proxy failed: SOCKS5/, 'no credentials');
    is(socks_connects($ms_auth, "127.0.0.1:$port"), $before + 2, 'neither got through');
};

# ---- no_proxy / NO_PROXY ----

subtest 'no_proxy and NO_PROXY' => sub {
    # The variables are set while the context is created and while it
    # connects.
    my $via_env = sub {
        my ($env, $u) = @_;
        return with_proxy_env($env, sub { ctx_roundtrip(new_ctx(), $u // $url) });
    };
    for my $case (
        [ 'no_proxy 127.0.0.1',             { no_proxy => '127.0.0.1' } ],
        [ 'NO_PROXY 127.0.0.1',             { NO_PROXY => '127.0.0.1' } ],
        [ 'no_proxy *',                     { no_proxy => '*' } ],
        [ 'NO_PROXY *',                     { NO_PROXY => '*' } ],
        [ 'no_proxy list',                  { no_proxy => 'example.com,127.0.0.1,.example.org' } ],
        [ 'no_proxy with https_proxy too',  { no_proxy => '127.0.0.1', https_proxy => $dead_proxy } ],
        [ 'no_proxy with socks all_proxy',  { no_proxy => '127.0.0.1', all_proxy => "socks5://127.0.0.1:$dead" } ],
    ) {
        my ($name, $env) = @$case;
        echo_ok($via_env->({ http_proxy => $dead_proxy, %$env }), "$name: direct despite a dead proxy");
    }
    failed_ok($via_env->({ http_proxy => $dead_proxy, no_proxy => 'example.com' }), $UNREACHABLE,
        'no_proxy example.com does not cover 127.0.0.1');
    failed_ok($via_env->({ http_proxy => $dead_proxy, no_proxy => '127.0.0.2,27.0.0.1' }), $UNREACHABLE,
        'no_proxy 127.0.0.2,27.0.0.1 does not cover 127.0.0.1');

    SKIP: {
        skip 'localhost does not resolve to 127.0.0.1 first', 6 unless $localhost_v4;
        my $lurl = "ws://localhost:$port/";
        echo_ok($via_env->({ http_proxy => $dead_proxy, no_proxy => 'localhost' }, $lurl), 'no_proxy localhost');
        echo_ok($via_env->({ http_proxy => $dead_proxy, no_proxy => 'example.com,localhost' }, $lurl),
            'no_proxy example.com,localhost');
    }

    # Which names a suffix covers, seen on a fake proxy: a name the list
    # covers would be resolved and connected to directly (and fail on
    # .invalid), one it does not cover reaches the proxy.
    my $fp = fake_proxy(answer => "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        or return fail("cannot listen: $@");
    my $fpurl = "http://127.0.0.1:$fp->{port}";
    for my $case (
        [ 'example.invalid',  'notexample.invalid' ],
        [ '.example.invalid', 'example.invalid.other.invalid' ],
        [ 'a.example.invalid', 'example.invalid' ],
    ) {
        my ($list, $host) = @$case;
        @{ $fp->{heads} } = ();
        my $r = $via_env->({ http_proxy => $fpurl, no_proxy => $list }, "ws://$host:$dead/");
        failed_ok($r, qr/^proxy failed: HTTP 502 /, "no_proxy $list, host $host: through the proxy");
        is((parse_head($fp->{heads}[0]))[0], "CONNECT $host:$dead HTTP/1.1", '... CONNECT for it');
    }
    for my $case (
        [ 'example.invalid',  'example.invalid' ],
        [ 'example.invalid',  'sub.example.invalid' ],
        [ '.example.invalid', 'sub.example.invalid' ],
        [ '*',                'sub.example.invalid' ],
    ) {
        my ($list, $host) = @$case;
        @{ $fp->{heads} } = ();
        my $r = $via_env->({ http_proxy => $fpurl, no_proxy => $list }, "ws://$host:$dead/");
        is(scalar @{ $fp->{heads} }, 0, "no_proxy $list, host $host: not through the proxy");
        is(scalar @{ $r->{errors} }, 1, '... a direct attempt that fails') or diag explain $r;
        unlike($r->{errors}[0] // '', qr/^proxy failed/, '... not a proxy failure');
    }
};

ok(stop_all_daemons(), 'every proxy process stopped');

done_testing;
