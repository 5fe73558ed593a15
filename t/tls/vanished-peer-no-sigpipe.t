# Proves: a wss:// peer that vanishes mid-send costs only its connection: no
# SIGPIPE ends the process.
# POD: EV::Websockets, "TLS" and "on_close".
#
# Regression: writing TLS records to a peer that has gone raised SIGPIPE
# (rustls writes with writev, which has no MSG_NOSIGNAL), and perl's
# default SIGPIPE action ended the whole process.  A wss:// peer that
# vanishes while our server is sending it megabytes must only cost that
# connection.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use POSIX ();
use lib 't/lib';
use TestWS;

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });
local $SIG{PIPE} = 'DEFAULT';    # what a perl program has unless it changes it

my $certs = 't/certs';
my $ctx   = EV::Websockets::Context->new(proxy => '');
my (%closed, $sent);
my $port = $ctx->listen(
    port       => 0,
    host       => '127.0.0.1',
    ssl_cert   => "$certs/server.pem",
    ssl_key    => "$certs/server-key.pem",
    on_connect => sub {
        # Far more than the socket buffers hold: writes go on after the
        # peer is gone.
        $_[0]->send_binary('x' x (1024 * 1024)) for 1 .. 16;
        $sent = 1;
    },
    on_close => sub { $closed{ $_[1] }++ },
    on_error => sub { },
);

# The peer: a wss:// client in a child process that exits as soon as the
# handshake is done, reading nothing (the kernel then resets the socket).
my $pid = fork // die "fork: $!";
if (!$pid) {
    my $loop   = EV::Loop->new;
    my $client = EV::Websockets::Context->new(loop => $loop, proxy => '', ssl_ca => "$certs/ca.pem");
    $client->connect(url => "wss://127.0.0.1:$port/", on_connect => sub { POSIX::_exit(0) });
    my $limit = $loop->timer(5, 0, sub { POSIX::_exit(1) });
    $loop->run;
    POSIX::_exit(2);
}
my $child_status;
my $reaper = EV::child($pid, 0, sub { $child_status = $_[0]->rstatus });

ok(run_until(sub { defined $child_status && keys %closed }, 10), 'the connection to the vanished peer ended');
is($child_status, 0, 'the peer connected and left');
ok($sent, 'the server was sending when the peer left');
is_deeply([ keys %closed ], [1006], 'on_close says the connection was lost');

# Still alive, and still serving TLS.
my $got;
my $again = EV::Websockets::Context->new(proxy => '', ssl_ca => "$certs/ca.pem");
$again->connect(
    url        => "wss://127.0.0.1:$port/",
    on_connect => sub { $_[0]->close(1000) },
    on_close   => sub { $got = $_[1] },
);
ok(run_until(sub { defined $got }, 5), 'the server still accepts wss:// clients');

done_testing;
