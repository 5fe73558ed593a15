# Proves: a host name with an IPv6 and an IPv4 address is dialled the Happy
# Eyeballs way: IPv6 first; an IPv6 address that never answers does not
# hold up a live IPv4 one until connect_timeout; when both fail, the
# failure is named, within connect_timeout.
# POD: EV::Websockets, "connect" (connect_timeout, "Addresses"), "on_error
# messages".
#
# The name is dual.test, mapped to ::1 and 127.0.0.1 by nss_wrapper
# (libnss-wrapper) in a child perl, which connects and prints what
# happened; the servers run here.  An address "that never answers" is a
# listener with a backlog of 0 whose one queued connection is never
# accepted: the kernel drops further SYNs, so a connect to it hangs.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use Socket qw(PF_INET PF_INET6 SOCK_STREAM pack_sockaddr_in pack_sockaddr_in6 inet_pton AF_INET AF_INET6);
use lib 't/lib';
use TestWS;
use Example;

my $guard = EV::timer(25, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my ($wrapper) = grep { -e } map {"$_/libnss_wrapper.so"} qw(/usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib);
TestWS::need_peer('libnss-wrapper', $wrapper, 'no libnss_wrapper.so (apt-get install libnss-wrapper)');
IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1)
    or plan skip_all => 'no IPv6 loopback';

my $dir = tempdir(CLEANUP => 1);
open(my $hosts, '>', "$dir/hosts") or die "$dir/hosts: $!";
print $hosts "::1 dual.test\n127.0.0.1 dual.test\n";
close $hosts;

# The client: connect to ws://dual.test:PORT/ with connect_timeout, print
# "connected <peer address>" or "error <text>", and how long it took.
my $client = "$dir/client.pl";
open(my $fh, '>', $client) or die "$client: $!";
print $fh <<'CLIENT';
use strict;
use warnings;
use EV;
use EV::Websockets;
use Time::HiRes qw(time);
my ($port, $timeout) = @ARGV;
my $ctx   = EV::Websockets::Context->new;
my $start = time;
my $conn  = $ctx->connect(
    url             => "ws://dual.test:$port/",
    connect_timeout => $timeout,
    on_connect      => sub { print "connected ", $_[0]->peer_address, "\n"; $_[0]->close; EV::break },
    on_error        => sub { print "error $_[1]\n"; EV::break },
);
EV::run;
printf "took %.3f s\n", time - $start;
CLIENT
close $fh;

# Run the client against $port; returns its outcome line and the time line.
sub dial {
    my ($port, $timeout) = @_;
    local $ENV{LD_PRELOAD}         = $wrapper;
    local $ENV{NSS_WRAPPER_HOSTS}  = "$dir/hosts";
    my $ex = Example->start($client, $port, $timeout);
    is($ex->wait_exit, 0, 'the client exits 0') or diag $ex->output;
    my ($outcome) = $ex->output =~ /^((?:connected|error) .*)$/m;
    my ($took)    = $ex->output =~ /^took (.*)$/m;
    return ($outcome // $ex->output, $took // '?');
}

# A listener on $ip:$port where connects hang; it is kept,
# with the connection that fills its queue, in @hanging.
my @hanging;
sub hanging_listener {
    my ($ip, $port) = @_;
    my $v6 = $ip =~ /:/;
    socket(my $s, $v6 ? PF_INET6 : PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    my $addr = $v6 ? pack_sockaddr_in6($port, inet_pton(AF_INET6, $ip)) : pack_sockaddr_in($port, inet_pton(AF_INET, $ip));
    bind($s, $addr) or return;
    listen($s, 0) or die "listen: $!";
    my $fill = IO::Socket::IP->new(PeerHost => $ip, PeerPort => $port) or die "fill: $@";
    push @hanging, $s, $fill;
    return 1;
}

# A port free on both 127.0.0.1 and ::1.
sub free_port {
    for (1 .. 20) {
        my $v4 = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or next;
        my $v6 = IO::Socket::IP->new(LocalHost => '::1', LocalPort => $v4->sockport, Listen => 1) or next;
        return $v4->sockport;
    }
    die 'no port free on both families';
}

my $server = EV::Websockets::Context->new;
my %peer;    # peer address seen by each listener
sub ws_listener {
    my ($host, $port) = @_;
    return $server->listen(host => $host, port => $port, on_connect => sub { $peer{$host} = $_[0]->peer_address });
}

subtest 'IPv6 first' => sub {
    my $port = free_port();
    ws_listener('::1', $port);
    ws_listener('127.0.0.1', $port);
    my ($outcome) = dial($port, 10);
    is($outcome, 'connected ::1', 'both live: the IPv6 address takes it');
};

subtest 'an IPv6 address that never answers' => sub {
    my $port = free_port();
    hanging_listener('::1', $port) or return fail("cannot bind [::1]:$port");
    ws_listener('127.0.0.1', $port);
    # A dial that waited for ::1 would end in "connect timeout" after 60 s
    # (and the test's guard would fire first).
    my ($outcome, $took) = dial($port, 60);
    is($outcome, 'connected 127.0.0.1', 'the live IPv4 address takes it, long before connect_timeout');
    is($peer{'127.0.0.1'}, '127.0.0.1', 'the IPv4 listener has the connection');
    diag "connected after $took";
};

subtest 'both addresses fail' => sub {
    my $port = free_port();
    my ($outcome) = dial($port, 10);
    is($outcome, 'error connect failed: Connection refused', 'both refuse: the failure is named');

    $port = free_port();
    hanging_listener($_, $port) or return fail("cannot bind $_:$port") for '::1', '127.0.0.1';
    my $took;
    ($outcome, $took) = dial($port, 1);
    is($outcome, 'error connect timeout', 'both hang: connect_timeout bounds them');
    diag "failed after $took";
};

done_testing;
