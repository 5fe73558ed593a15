# Proves: the usual TLS mistakes each give an on_error that says what is
# wrong and how to fix it (a self-signed certificate as its own CA, an
# untrusted issuer, a name mismatch, expired and not yet valid
# certificates, ws:// and wss:// mixed up, a missing or untrusted client
# certificate); a TLS listener closes on a plain-HTTP client with a TLS
# alert and no callback; the certificates eg/make_certs.pl makes work end
# to end, with mutual TLS.
# POD: EV::Websockets, "Making certificates", "on_error messages", "TLS".
#
# Certificates are made into a temporary directory: by eg/make_certs.pl,
# and with openssl for the broken ones (openssl ca sets any validity
# dates).
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $dir = tempdir(CLEANUP => 1);

sub make_certs {
    my ($into, @opt) = @_;
    my $out = qx{$^X eg/make_certs.pl --dir $into @opt 2>&1};
    is($?, 0, "eg/make_certs.pl @opt: exits 0") or diag $out;
    return $out;
}

sub openssl {
    my $out = qx{openssl @_ 2>&1};
    $? == 0 or die "openssl @_: $out";
}

sub write_file {
    my ($file, $text) = @_;
    open(my $fh, '>', $file) or die "$file: $!";
    print $fh $text;
    close $fh or die "$file: $!";
}

# A server certificate $name.pem (key $name-key.pem) in $dir, signed by
# the recipe's CA, for the names in san, valid from start to end (openssl
# ca dates, YYYYMMDDHHMMSSZ).
my $serial = 100;
sub broken_cert {
    my ($name, %c) = @_;
    my $db = "$dir/db-$name";
    mkdir $db or die "$db: $!";
    write_file("$db/index.txt", '');
    write_file("$db/serial", sprintf "%04X\n", $serial++);
    write_file("$db/ca.cnf", <<"CNF");
[ca]
default_ca = test
[test]
database      = $db/index.txt
new_certs_dir = $db
serial        = $db/serial
default_md    = sha256
policy        = anything
[anything]
commonName = supplied
CNF
    write_file("$db/ext", <<"EXT");
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $c{san}
EXT
    openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $dir/$name-key.pem");
    openssl("req -new -key $dir/$name-key.pem -subj /CN=$name -out $db/csr");
    openssl("ca -batch -notext -config $db/ca.cnf -cert $dir/ca.pem -keyfile $dir/ca-key.pem"
            . " -in $db/csr -out $dir/$name.pem -extfile $db/ext -startdate $c{start} -enddate $c{end}");
    return ("$dir/$name.pem", "$dir/$name-key.pem");
}

like(make_certs($dir, '--client'), qr/made a CA.*made a server certificate.*made a client certificate/s,
    'the recipe makes a CA, a server and a client certificate');
-r "$dir/$_" or fail("$_ made") for qw(ca.pem ca-key.pem server.pem server-key.pem client.pem client-key.pem);

my $server = EV::Websockets::Context->new;
my %sev;
sub tls_listener {
    my ($cert, $key, %extra) = @_;
    return echo_server($server, host => '127.0.0.1', ssl_cert => $cert, ssl_key => $key,
        on_connect => sub { $sev{connect}++ }, on_error => sub { $sev{error}++ }, %extra);
}
my $recipe = tls_listener("$dir/server.pem", "$dir/server-key.pem");

# One connection from a context with %$ctx_opt to $url: its only error.
sub error_of {
    my ($ctx_opt, $url, %opt) = @_;
    my $r = ctx_roundtrip(EV::Websockets::Context->new(%$ctx_opt), $url, %opt);
    is($r->{connected}, 0, "$url: never connected");
    is(scalar @{ $r->{errors} }, 1, '... one on_error') or diag explain $r->{errors};
    return $r->{errors}[0] // '';
}

my $SEE = '(see "Making certificates" in EV::Websockets)';

subtest 'the recipe: wss:// with ssl_ca, and mutual TLS' => sub {
    my $r = ctx_roundtrip(EV::Websockets::Context->new(ssl_ca => "$dir/ca.pem"), "wss://127.0.0.1:$recipe/");
    is($r->{reply}, 'hello', 'echo over wss:// trusting the recipe CA (127.0.0.1)');
    is_deeply($r->{errors}, [], '... no error');
    SKIP: {
        my $v6 = eval { tls_listener("$dir/server.pem", "$dir/server-key.pem", host => '::1') };
        skip 'no IPv6 loopback', 1 unless $v6;
        $r = ctx_roundtrip(EV::Websockets::Context->new(ssl_ca => "$dir/ca.pem"), "wss://[::1]:$v6/");
        is($r->{reply}, 'hello', 'and to [::1]');
    }
    my $mutual = tls_listener("$dir/server.pem", "$dir/server-key.pem", ssl_ca => "$dir/ca.pem");
    my %client = (ssl_ca => "$dir/ca.pem", ssl_cert => "$dir/client.pem", ssl_key => "$dir/client-key.pem");
    $r = ctx_roundtrip(EV::Websockets::Context->new(%client), "wss://127.0.0.1:$mutual/");
    is($r->{reply}, 'hello', 'mutual TLS with the recipe client certificate');

    is(error_of({ ssl_ca => "$dir/ca.pem" }, "wss://127.0.0.1:$mutual/"),
        'TLS handshake failed: the server requires a client certificate: give the context ssl_cert and ssl_key',
        'no client certificate for a listener with ssl_ca');

    my $other = "$dir/other";
    make_certs($other, '--client');
    like(error_of({ ssl_ca => "$dir/ca.pem", ssl_cert => "$other/client.pem", ssl_key => "$other/client-key.pem" },
            "wss://127.0.0.1:$mutual/"),
        qr/^TLS handshake failed: the server does not trust our client certificate: sign it with a CA in the server's ssl_ca$/,
        'a client certificate from another CA');

    like(make_certs($dir), qr/^using the CA in \Q$dir\E\/ca\.pem$/m, 'run again: the CA is kept');
    my $renewed = tls_listener("$dir/server.pem", "$dir/server-key.pem");
    $r = ctx_roundtrip(EV::Websockets::Context->new(ssl_ca => "$dir/ca.pem"), "wss://127.0.0.1:$renewed/");
    is($r->{reply}, 'hello', '... and its new server certificate is trusted through it');
};

subtest 'a self-signed certificate as its own CA' => sub {
    openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost"
            . " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout $dir/self-key.pem -out $dir/self.pem");
    my $port = tls_listener("$dir/self.pem", "$dir/self-key.pem");
    is(error_of({ ssl_ca => "$dir/self.pem" }, "wss://127.0.0.1:$port/"),
        "TLS handshake failed: the server's certificate is a CA certificate, not a server certificate:"
        . " make a CA and sign a server certificate with it $SEE",
        'the server certificate is a CA: make a CA and sign one with it');
};

subtest 'an untrusted issuer' => sub {
    my $want = qr/^TLS handshake failed: the server's certificate is not signed by a CA in ssl_ca \(or the system's trust store\): give the CA certificate that signed it as ssl_ca /;
    like(error_of({}, "wss://127.0.0.1:$recipe/"), $want, 'the system roots do not know the recipe CA');
    like(error_of({ ssl_ca => "$dir/other/ca.pem" }, "wss://127.0.0.1:$recipe/"), $want, 'ssl_ca holds another CA');
};

subtest 'a name the certificate is not for' => sub {
    my $port = tls_listener(broken_cert('elsewhere', san => 'DNS:elsewhere.example, IP:10.9.8.7',
        start => '20200101000000Z', end => '20990101000000Z'));
    is(error_of({ ssl_ca => "$dir/ca.pem" }, "wss://127.0.0.1:$port/"),
        "TLS handshake failed: the server's certificate is for elsewhere.example, 10.9.8.7, not 127.0.0.1:"
        . " connect to a name it is for, or make a certificate for this one $SEE",
        'the names it is for, and the one asked for');
};

subtest 'expired and not yet valid' => sub {
    my $old = tls_listener(broken_cert('expired', san => 'IP:127.0.0.1', start => '20000101000000Z', end => '20010101000000Z'));
    is(error_of({ ssl_ca => "$dir/ca.pem" }, "wss://127.0.0.1:$old/"),
        "TLS handshake failed: the server's certificate expired on 2001-01-01 00:00:00 UTC: renew it (or check this machine's clock)",
        'expired: when, and what to do');
    my $new = tls_listener(broken_cert('future', san => 'IP:127.0.0.1', start => '20990101000000Z', end => '21000101000000Z'));
    is(error_of({ ssl_ca => "$dir/ca.pem" }, "wss://127.0.0.1:$new/"),
        "TLS handshake failed: the server's certificate is not valid before 2099-01-01 00:00:00 UTC: check this machine's clock",
        'not yet valid: from when');
};

subtest 'ws:// and wss:// mixed up' => sub {
    my $plain = echo_server($server, host => '127.0.0.1');
    is(error_of({ ssl_ca => "$dir/ca.pem" }, "wss://127.0.0.1:$plain/"),
        'TLS handshake failed: the server does not speak TLS: use ws://', 'wss:// to a plain listener');
    %sev = ();
    is(error_of({}, "ws://127.0.0.1:$recipe/"), 'handshake failed: the server speaks TLS: use wss://',
        'ws:// to a TLS listener');
    ok(!$sev{connect} && !$sev{error}, 'the TLS listener fired no callback for it');
};

subtest 'a TLS listener answers plain HTTP with an alert and closes' => sub {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $recipe) or die "connect: $!";
    print $sock "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    my ($got, $eof) = ('', 0);
    my $w = EV::io($sock, EV::READ, sub {
        my $n = sysread $sock, my $buf, 4096;
        $n ? ($got .= $buf) : ($eof = 1);
    });
    ok(run_until(sub { $eof }, 5), 'the listener closes the connection');
    like($got, qr/\A\x15\x03[\x01-\x04]/, '... after a TLS alert record');
    is(scalar $server->connections, 0, 'no server connection is left');
};

done_testing;
