# Proves: nothing passed in
# (url, protocol, headers, on_handshake's hash, proxy credentials) can add a
# line to an HTTP head.
# POD: EV::Websockets, "Header injection", "connect", "listen",
# "Exceptions (croak)".
#
# Nothing passed in can add a line to an HTTP head: connect's url,
# protocol and headers, listen's and adopt's protocol and headers, the hash
# on_handshake returns, proxy credentials from the environment.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

$SIG{PIPE} = 'IGNORE';

sub croak_of {
    my ($code) = @_;
    return eval { $code->(); 1 } ? '' : $@;
}

# A raw listener on 127.0.0.1 that records what each client sends until
# the end of its head (or EOF).  Returns ($port, \@heads, \$accepted).
sub recorder {
    my $listen = IO::Socket::INET->new(
        Listen => 8, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1,
    ) or die "listen: $!";
    my (@heads, %clients);
    my $accepted = 0;
    my $w = EV::io($listen, EV::READ, sub {
        my $sock = $listen->accept or return;
        $accepted++;
        my $i = @heads;
        push @heads, '';
        $clients{$sock} = [ $sock, EV::io($sock, EV::READ, sub {
            my $n = sysread($sock, $heads[$i], 4096, length $heads[$i]);
            delete $clients{$sock} if !$n || $heads[$i] =~ /\r\n\r\n/;
        }) ];
    });
    return ($listen->sockport, \@heads, \$accepted, [ $listen, $w, \%clients ]);
}

# A head split into its first line and its header lines.
sub header_lines {
    my ($head) = @_;
    my ($first, @lines) = split /\r\n/, $head;
    return ($first, @lines);
}
my $field_line = qr/\A[!#\$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n\0]*\z/;

subtest 'connect: bad protocol, url and headers croak before anything is sent' => sub {
    my ($port, $heads, $accepted, $keep) = recorder();
    my $ctx = EV::Websockets::Context->new;
    my $url = "ws://127.0.0.1:$port/";
    my @cases = (
        [ 'protocol with CRLF', [ url => $url, protocol => "chat\r\nX-Evil: 1" ],
            qr/^protocol: 'chat\\r\\nX-Evil: 1' is not a valid subprotocol name at /],
        [ 'protocol list with a bad name', [ url => $url, protocol => 'chat, v 2' ],
            qr/^protocol: 'v 2' is not a valid subprotocol name at /],
        [ 'url with space and CRLF', [ url => "ws://127.0.0.1:$port/a b\r\nX: y" ],
            qr/^connect: invalid url: contains a space or control character at /],
        [ 'url with a bare LF (the url crate would drop it)', [ url => "ws://127.0.0.1:$port/a\nX: y" ],
            qr/url: contains a space or control character at /],
        [ 'url with a tab in the host', [ url => "ws://127.0.0.1\t:$port/" ],
            qr/url: contains a space or control character at /],
        [ 'header value with CRLF', [ url => $url, headers => { 'X-Note' => "a\r\nX-Evil: 1" } ],
            qr/^headers: value of 'X-Note' contains CR, LF or NUL at /],
        [ 'Host replacement with CRLF', [ url => $url, headers => { Host => "h\r\nX-Evil: 1" } ],
            qr/^headers: value of 'Host' contains CR, LF or NUL at /],
        [ 'Origin replacement with LF', [ url => $url, headers => { origin => "o\nX-Evil: 1" } ],
            qr/^headers: value of 'origin' contains CR, LF or NUL at /],
        [ 'header name with CRLF', [ url => $url, headers => { "X-A\r\nX-Evil" => '1' } ],
            qr/^headers: invalid header name 'X-A\\r\\nX-Evil' at /],
        [ 'header name that is not a token', [ url => $url, headers => { 'X(A)' => '1' } ],
            qr/^headers: invalid header name 'X\(A\)' at /],
        [ 'header value with another control character', [ url => $url, headers => { 'X-A' => "a\x1bb" } ],
            qr/^headers: value of 'X-A' contains a control character at /],
        [ 'Sec-WebSocket-Accept as a header', [ url => $url, headers => { 'Sec-WebSocket-Accept' => 'x' } ],
            qr/^headers: 'Sec-WebSocket-Accept' is set by the handshake at /],
    );
    for my $case (@cases) {
        my ($what, $args, $want) = @$case;
        like(croak_of(sub { $ctx->connect(@$args) }), $want, $what);
    }
    # A good connection afterwards proves the recorder works; it must be the
    # only one that arrived.
    my $conn = $ctx->connect(url => $url, on_error => sub { });
    ok(run_until(sub { $$accepted && @$heads && $heads->[-1] =~ /\r\n\r\n/ }), 'a valid connect reaches the recorder');
    is($$accepted, 1, '... and it is the only connection: no croaking connect was attempted');
};

subtest 'connect: what goes on the wire is one line per header' => sub {
    my ($port, $heads, $accepted, $keep) = recorder();
    my $ctx  = EV::Websockets::Context->new;
    my $conn = $ctx->connect(
        url      => "ws://127.0.0.1:$port/p%0d%0aX-Evil:%201?q=%0a",
        protocol => "chat,\tv2",
        headers  => { 'X-Tab' => "a\tb", Host => 'other.example:1', 'X-Obs' => "caf\xc3\xa9" },
        on_error => sub { },
    );
    ok(run_until(sub { @$heads && $heads->[0] =~ /\r\n\r\n/ }), 'the request arrived');
    my ($first, @lines) = header_lines($heads->[0] // '');
    is($first, 'GET /p%0d%0aX-Evil:%201?q=%0a HTTP/1.1', 'percent-encoded CRLF stays encoded in the request line');
    is(scalar(grep { !/$field_line/ } @lines), 0, 'every header line is "token: value"')
        or diag explain \@lines;
    is(scalar(grep { /^X-Evil/i } @lines), 0, 'no X-Evil line');
    is(scalar(grep { /^Host:/i } @lines), 1, 'one Host line');
    ok((grep { $_ eq 'Host: other.example:1' } @lines), '... the replacement');
    ok((grep { $_ eq "Sec-WebSocket-Protocol: chat,\tv2" } @lines), 'the protocol list as given');
    ok((grep { $_ eq "X-Tab: a\tb" } @lines), 'a tab inside a value is fine');
};

subtest 'redirect to a Location with encoded CRLF' => sub {
    my ($port, $heads, $accepted, $keep) = recorder();
    my $redirector = http_answerer(sub {
        "HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:$port/r%0d%0aX-Evil:%201\r\nContent-Length: 0\r\n\r\n";
    });
    my $ctx  = EV::Websockets::Context->new;
    my $conn = $ctx->connect(url => "ws://127.0.0.1:$redirector/", on_error => sub { });
    ok(run_until(sub { @$heads && $heads->[0] =~ /\r\n\r\n/ }), 'the redirected request arrived');
    my ($first, @lines) = header_lines($heads->[0] // '');
    is($first, 'GET /r%0d%0aX-Evil:%201 HTTP/1.1', 'the request line keeps the encoding');
    is(scalar(grep { /^X-Evil/i || !/$field_line/ } @lines), 0, 'no injected line');
};

subtest 'proxy credentials from the environment' => sub {
    for my $case (
        [ http    => 'http://user:pa%0d%0ass@127.0.0.1:PORT',
            'proxy failed: the password in the proxy URL contains CR, LF or NUL' ],
        [ http    => 'http://us%0aer:pass@127.0.0.1:PORT',
            'proxy failed: the user name in the proxy URL contains CR, LF or NUL' ],
        [ socks5h => 'socks5h://us%00er:pass@127.0.0.1:PORT',
            'proxy failed: the user name in the proxy URL contains CR, LF or NUL' ],
    ) {
        my ($kind, $template, $want) = @$case;
        my ($port, $heads, $accepted, $keep) = recorder();
        (my $proxy = $template) =~ s/PORT/$port/;
        my $ctx = with_proxy_env({ all_proxy => $proxy }, sub { EV::Websockets::Context->new });
        my (@errors, $connected);
        my $conn = $ctx->connect(
            url        => 'ws://example.invalid/',
            on_connect => sub { $connected++ },
            # The error comes from a prepare watcher: break, or the loop
            # would wait for the next event before run_until looks again.
            on_error   => sub { push @errors, $_[1]; EV::break },
        );
        ok(run_until(sub { @errors }, 3), "$kind proxy with a control character in its credentials");
        run_for(0.1);    # a late connection to the proxy would show up here
        is_deeply(\@errors, [$want], '... fails with one on_error naming it');
        is($connected, undef, '... never connected');
        is($conn->state, 'closed', '... closed');
        is($$accepted, 0, '... and nothing was sent to the proxy');
    }
};

subtest 'listen and adopt: bad protocol names and headers croak' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $vhost = 'Failed to create vhost for listening: ';
    for my $case (
        [ 'protocol with CRLF', [ protocol => "chat\r\nX-Evil: 1" ],
            q{protocol: 'chat\r\nX-Evil: 1' is not a valid subprotocol name} ],
        [ 'a bad name in the list', [ protocol => [ 'chat', 'a b' ] ],
            q{protocol: 'a b' is not a valid subprotocol name} ],
        [ 'a comma list as one name', [ protocol => 'chat, v2' ],
            q{protocol: 'chat, v2' is not a valid subprotocol name} ],
        [ 'header value with CRLF', [ headers => { 'X-Note' => "a\r\nSec-WebSocket-Accept: forged" } ],
            q{headers: value of 'X-Note' contains CR, LF or NUL} ],
        [ 'header name with LF', [ headers => { "X\nY" => 1 } ],
            q{headers: invalid header name 'X\nY'} ],
    ) {
        my ($what, $args, $want) = @$case;
        like(croak_of(sub { $ctx->listen(port => 0, host => '127.0.0.1', @$args) }),
            qr/^\Q$vhost$want\E at /, "listen: $what");
        socketpair(my $sa, my $sb, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
        like(croak_of(sub { $ctx->adopt(fh => $sa, @$args) }), qr/^\Q$want\E at /, "adopt: $what");
    }
};

subtest 'on_handshake returning bad headers: 500, a warning, nothing forged' => sub {
    my %ev;
    my %answer = (
        '/value'    => { 'X-Note' => "a\r\nSec-WebSocket-Accept: forged" },
        '/name'     => { "X-Note\r\nSec-WebSocket-Accept" => 'forged' },
        '/reserved' => { 'Sec-WebSocket-Accept' => 'forged' },
        '/control'  => { 'X-Note' => "a\x01forged" },
        '/ok'       => { 'X-Note' => "fine\tvalue" },
    );
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx, host => '127.0.0.1', recording(\%ev,
        on_handshake => sub { $answer{ $_[0]{Path} } },
    ));
    for my $case (
        [ '/value',    "value of 'X-Note' contains CR, LF or NUL" ],
        [ '/name',     "invalid header name 'X-Note\\r\\nSec-WebSocket-Accept'" ],
        [ '/reserved', "'Sec-WebSocket-Accept' is set by the handshake" ],
        [ '/control',  "value of 'X-Note' contains a control character" ],
    ) {
        my ($path, $why) = @$case;
        my @warnings;
        local $SIG{__WARN__} = sub { push @warnings, $_[0] };
        my $peer = RawPeer->client(port => $port, path => $path);
        ok(run_until(sub { $peer->{eof} }, 3), "$path: the server closed");
        is($peer->{status_line}, 'HTTP/1.1 500 Internal Server Error', '... after a 500');
        unlike($peer->{head} // '', qr/forged/, '... without the returned header');
        ok(!$peer->{open}, '... no upgrade');
        is(scalar @warnings, 1, '... one warning');
        like($warnings[0] // '', qr/^\QEV::Websockets: on_handshake returned an invalid header: $why\E at /,
            "... naming it: $why");
    }
    is($ev{order}, undef, 'no server callback fired for them');

    my $peer = RawPeer->client(port => $port, path => '/ok');
    ok(run_until(sub { $peer->{open} || $peer->{eof} }, 3), '/ok: answered');
    is($peer->{status}, 101, '... with 101');
    like($peer->{head}, qr/\r\nX-Note: fine\tvalue\r\n/, '... carrying the returned header');
    is(scalar(() = $peer->{head} =~ /Sec-WebSocket-Accept/g), 1, '... and one Sec-WebSocket-Accept');
    ok($peer->{accept_ok}, '... the right one');
    $peer->close_tcp;
};

done_testing;
