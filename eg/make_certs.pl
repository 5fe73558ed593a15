#!/usr/bin/env perl
# Make the certificates a wss:// server needs, with openssl: a CA of your
# own, and a server certificate it signed; optionally a client certificate
# for mutual TLS.
#
#   perl eg/make_certs.pl [--dir DIR] [--name HOST]... [--days N] [--client]
#
# Writes into DIR (default ./certs, created if need be):
#
#   ca.pem, ca-key.pem            the CA: give ca.pem to clients as ssl_ca;
#                                 keep ca-key.pem private.  An existing
#                                 pair in DIR is reused, so certificates
#                                 made again stay trusted by the same CA.
#   server.pem, server-key.pem    the server certificate and its key, for
#                                 listen(ssl_cert => ..., ssl_key => ...);
#                                 valid for localhost, 127.0.0.1 and ::1,
#                                 plus each --name (a host name or an IP
#                                 address; clients must connect by one).
#   client.pem, client-key.pem    with --client: a client certificate for
#                                 Context->new(ssl_cert => ..., ssl_key => ...);
#                                 a listener with ssl_ca => ca.pem requires it.
#
# Keys are EC P-256 (PKCS#8 PEM), written readable by their owner only.
# Certificates are valid for --days days (default 365).  Then:
#
#   $ctx->listen(port => 9011, ssl_cert => 'certs/server.pem', ssl_key => 'certs/server-key.pem', ...);
#   EV::Websockets::Context->new(ssl_ca => 'certs/ca.pem')->connect(url => 'wss://localhost:9011/', ...);
#
# A self-signed certificate (openssl req -x509) will not do in place of
# this pair: used as both server certificate and ssl_ca, it fails with
# "the server's certificate is a CA certificate, not a server certificate".

use strict;
use warnings;

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Getopt::Long;

my %opt = (dir => 'certs', days => 365, name => []);
GetOptions(\%opt, 'dir=s', 'name=s@', 'days=i', 'client') && !@ARGV && $opt{days} > 0
    or die "usage: $0 [--dir DIR] [--name HOST]... [--days N] [--client]\n";

my $dir = $opt{dir};
make_path($dir);
my $tmp = tempdir(CLEANUP => 1);

# Run openssl; its chatter on stderr is shown only if it fails.
sub openssl {
    my @args = @_;
    my $log = "$tmp/openssl.log";
    open(my $saved, '>&', \*STDERR) or die "dup STDERR: $!\n";
    open(STDERR, '>', $log) or die "$log: $!\n";
    my $status = system('openssl', @args);
    open(STDERR, '>&', $saved) or die "restore STDERR: $!\n";
    return if $status == 0;
    if (open(my $fh, "<", $log)) { print STDERR <$fh> }
    die $status == -1 ? "cannot run openssl: $!\n" : "openssl $args[0] failed\n";
}

sub write_file {
    my ($file, $text) = @_;
    open(my $fh, '>', $file) or die "$file: $!\n";
    print $fh $text;
    close $fh or die "$file: $!\n";
}

# A new private key in $file, readable by its owner only.
sub new_key {
    my ($file) = @_;
    my $old = umask 077;
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', $file);
    umask $old;
}

# A certificate for $key with the extensions in @ext, signed by the CA
# (or by $key itself when $ca is undef).
sub certificate {
    my (%c) = @_;
    my $csr = "$tmp/$c{name}.csr";
    my $ext = "$tmp/$c{name}.ext";
    write_file($ext, join '', map {"$_\n"} @{ $c{ext} });
    openssl('req', '-new', '-sha256', '-key', $c{key}, '-subj', $c{subject}, '-out', $csr);
    my @signer = $c{ca} ? ('-CA', "$dir/ca.pem", '-CAkey', "$dir/ca-key.pem") : ('-signkey', $c{key});
    openssl('x509', '-req', '-sha256', '-days', $opt{days}, '-set_serial', serial(),
        '-in', $csr, @signer, '-extfile', $ext, '-out', $c{out});
}

# Random 63-bit serial numbers: two certificates of one CA never share one.
sub serial { return sprintf '0x%04x%04x%04x%04x', int(rand 0x8000), map { int rand 0x10000 } 1 .. 3 }

sub san_entry {
    my ($name) = @_;
    return $name =~ /^[\d.]+\z/ || $name =~ /:/ ? "IP:$name" : "DNS:$name";
}

if (-e "$dir/ca.pem" && -e "$dir/ca-key.pem") {
    print "using the CA in $dir/ca.pem\n";
} else {
    new_key("$dir/ca-key.pem");
    certificate(
        name    => 'ca',
        key     => "$dir/ca-key.pem",
        # A name of its own: a client that trusts another CA of the same
        # name would take it for the issuer and see a bad signature.
        subject => sprintf('/CN=EV::Websockets example CA %08x', int rand 0xffffffff),
        out     => "$dir/ca.pem",
        ext     => [
            'basicConstraints = critical, CA:TRUE, pathlen:0',
            'keyUsage = critical, keyCertSign, cRLSign',
            'subjectKeyIdentifier = hash',
        ],
    );
    print "made a CA: $dir/ca.pem (key $dir/ca-key.pem)\n";
}

my %seen;
my @names = grep { !$seen{$_}++ } ('localhost', '127.0.0.1', '::1', @{ $opt{name} });
new_key("$dir/server-key.pem");
certificate(
    name    => 'server',
    key     => "$dir/server-key.pem",
    subject => "/CN=" . ($opt{name}[0] // $names[0]),
    ca      => 1,
    out     => "$dir/server.pem",
    ext     => [
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = serverAuth',
        'subjectAltName = ' . join(', ', map { san_entry($_) } @names),
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
    ],
);
print "made a server certificate for @names: $dir/server.pem (key $dir/server-key.pem)\n";

if ($opt{client}) {
    new_key("$dir/client-key.pem");
    certificate(
        name    => 'client',
        key     => "$dir/client-key.pem",
        subject => '/CN=EV::Websockets example client',
        ca      => 1,
        out     => "$dir/client.pem",
        ext     => [
            'basicConstraints = critical, CA:FALSE',
            'keyUsage = critical, digitalSignature',
            'extendedKeyUsage = clientAuth',
            'subjectKeyIdentifier = hash',
            'authorityKeyIdentifier = keyid',
        ],
    );
    print "made a client certificate: $dir/client.pem (key $dir/client-key.pem)\n";
}
exit 0;
