# Proves: a proxy URL from the environment splits into host and port.
# POD: EV::Websockets, "new" (proxy => $host, proxy_port => $port).
#
# EV::Websockets::Context::_parse_proxy: the pure-Perl split of a proxy URL
# from the environment into (host, port): scheme and userinfo stripped,
# IPv6 brackets removed, port "1080" by default.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

ok(defined &EV::Websockets::Context::_parse_proxy, '_parse_proxy exists')
    or BAIL_OUT('EV::Websockets::Context::_parse_proxy is missing');

# [ input, expected list ]
my @cases = (
    # The forms the POD names (proxy => $host, proxy_port => $port).
    [ 'http://proxy.example:8080/',   [ 'proxy.example', '8080' ] ],
    [ 'user:pass@proxy.example:8080', [ 'proxy.example', '8080' ] ],
    [ '[2001:db8::1]:8080',           [ '2001:db8::1',   '8080' ] ],
    [ '[::1]',                        [ '::1',           '1080' ] ],
    [ 'proxy.example',                [ 'proxy.example', '1080' ] ],
    # No proxy at all.
    [ undef, [] ],
    [ '',    [] ],
    # Scheme, userinfo and brackets together; a scheme without a port.
    [ 'socks5h://u:p@[::1]:1081', [ '::1',           '1081' ] ],
    [ 'http://proxy.example',     [ 'proxy.example', '1080' ] ],
    # More of the same rules.
    [ 'http://proxy.example:8080',          [ 'proxy.example', '8080' ] ],
    [ 'proxy.example:3128',                 [ 'proxy.example', '3128' ] ],
    [ 'http://user:pass@proxy.example:8080/', [ 'proxy.example', '8080' ] ],
    [ 'socks5://127.0.0.1:1080',            [ '127.0.0.1',     '1080' ] ],
    [ 'socks5h://127.0.0.1',                [ '127.0.0.1',     '1080' ] ],
    [ 'https://proxy.example/some/path',    [ 'proxy.example', '1080' ] ],
    [ 'http://[2001:db8::1]:3128/',         [ '2001:db8::1',   '3128' ] ],
    [ 'http://user@proxy.example:81',       [ 'proxy.example', '81' ] ],
);

for my $case (@cases) {
    my ($in, $want) = @$case;
    my $name = defined $in ? qq{"$in"} : 'undef';
    my @got = EV::Websockets::Context::_parse_proxy($in);
    is_deeply(\@got, $want, "$name -> (" . join(', ', map { qq{"$_"} } @$want) . ')')
        or diag explain \@got;
}

# The port comes back as the string of digits, not a number.
my (undef, $port) = EV::Websockets::Context::_parse_proxy('proxy.example:08080');
is($port, '08080', 'the port is the digits as written');

done_testing;
