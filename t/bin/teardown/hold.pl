# A child perl of t/lifecycle/teardown-orders.t.  It puts connections in the
# states global destruction has to cope with, waits until they are there,
# then leaves the way it is told, with everything still held:
#
#   perl -Mblib t/bin/teardown/hold.pl <how> <what>...
#
# <how>:
#   normal     the loop returns and the script ends (status 0)
#   die        a die at the top level (status 255; the message is the only
#              thing on stderr)
#   exit:<cb>  exit(7) inside one of this module's callbacks, <cb> being
#              handshake, connect, message, error or close (on a trigger
#              listener) or pong or drain (on a trigger client)
# <what>, any of:
#   sends           a client with megabytes queued for a server that stopped
#                   reading (pause_recv)
#   closing_client  a client that sent its close frame to a server that does
#                   not read it
#   closing_server  the same with the server closing
#   dns             a client waiting for a slow name lookup (needs the
#                   t/dns shim in LD_PRELOAD); it starts once everything
#                   else is ready, so that the 300 ms lookup is still
#                   pending when the script leaves
#   dns_ctx_gone    a context destroyed while its lookup was pending; the
#                   lookup of another context, started after it, has
#                   answered since
#   tls             a wss:// client whose TLS handshake waits on a TCP
#                   listener that never answers
#   listen          plain and TLS listening sockets
#   globals         a context and a pair of connections held only by
#                   package variables
#   cycles          a context and connections held only by cycles: closures
#                   that capture their own context, connections in their
#                   own stash, a callback that captures itself
#
# It prints "ready <what>=<state> ..." once everything is in place, and
# "end" when it ends normally.  A 10 s guard prints "timeout" and the states, and exits 99.
use strict;
use warnings;
use EV;
use EV::Websockets;
use IO::Socket::INET;
use POSIX ();
use FindBin;

$| = 1;
delete @ENV{qw(https_proxy http_proxy all_proxy HTTPS_PROXY HTTP_PROXY ALL_PROXY)};

my ($how, @what) = @ARGV;
my $CERTS = "$FindBin::Bin/../../certs";

my %ready;    # what => sub returning its state once it is in place
my %LATE = (dns => 1);    # set up once the others are ready
my $guard = EV::timer(10, 0, sub {
    print join(' ', 'timeout', map { "$_=" . ($ready{$_}->() // 'waiting') } sort keys %ready), "\n";
    POSIX::_exit(99);
});

# The shared context (trusting the test CA) and what is held on purpose.
our $CTX = EV::Websockets::Context->new(ssl_ca => "$CERTS/ca.pem");
our @HELD;

# A listener of $ctx on 127.0.0.1 (more options in %opt); returns its URL.
sub local_url {
    my ($ctx, %opt) = @_;
    return 'ws://127.0.0.1:' . $ctx->listen(port => 0, host => '127.0.0.1', %opt) . '/';
}

my %setup = (
    sends => sub {
        my $url = local_url($CTX, on_connect => sub { $_[0]->pause_recv });
        my $total = 32 * 2**20;
        my $c = $CTX->connect(url => $url, on_connect => sub { $_[0]->send_binary('x' x 2**20) for 1 .. 32 });
        push @HELD, $c;
        # some went out, the rest waits
        return sub { my $q = $c->send_queue_size; $q && $q < $total ? "queued" : undef };
    },
    closing_client => sub {
        my $url = local_url($CTX, on_connect => sub { $_[0]->pause_recv });
        my $c = $CTX->connect(url => $url, on_connect => sub { $_[0]->close(1000, 'bye') });
        push @HELD, $c;
        return sub { $c->state eq 'closing' ? 'closing' : undef };
    },
    closing_server => sub {
        my $server;
        my $url = local_url($CTX, on_message => sub { $server = $_[0]; $_[0]->close(4000, 'bye') });
        push @HELD, $CTX->connect(url => $url, on_connect => sub { $_[0]->send('close me'); $_[0]->pause_recv });
        return sub { $server && $server->state eq 'closing' ? 'closing' : undef };
    },
    dns => sub {
        my $c = $CTX->connect(url => 'ws://slow.ev-websockets.test:9/');
        push @HELD, $c;
        return sub { $c->state eq 'connecting' ? 'connecting' : undef };
    },
    dns_ctx_gone => sub {
        my $gone = EV::Websockets::Context->new;
        $gone->connect(url => 'ws://slow.ev-websockets.test:9/');
        undef $gone;
        my $live = EV::Websockets::Context->new;
        my $port = $live->listen(port => 0, host => '127.0.0.1');
        my $answered;
        my $c = $live->connect(url => "ws://slow.ev-websockets.test:$port/",
            on_connect => sub { $answered = 'resolved' }, on_error => sub { $answered = "error: $_[1]" });
        push @HELD, $live, $c;
        return sub { $answered };
    },
    tls => sub {
        my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0)
            or die "listen: $@";
        my ($accepted, $hello);
        my $c = $CTX->connect(url => 'wss://127.0.0.1:' . $silent->sockport . '/');
        # Accept the TCP connection, then wait for the ClientHello; never answer.
        my $aw = EV::io($silent, EV::READ, sub {
            $accepted = $silent->accept or return;
            $_[0]->stop;
            push @HELD, EV::io($accepted, EV::READ, sub { $hello = 1; $_[0]->stop });
        });
        push @HELD, $silent, $aw, $c, \$accepted;
        return sub { $hello && $c->state eq 'connecting' ? 'connecting' : undef };
    },
    listen => sub {
        $CTX->listen(port => 0, host => '127.0.0.1');
        $CTX->listen(port => 0, host => '127.0.0.1', ssl_cert => "$CERTS/server.pem", ssl_key => "$CERTS/server-key.pem");
        return sub { 'listening' };
    },
    globals => sub {
        $main::GCTX = EV::Websockets::Context->new;
        my $url = local_url($main::GCTX, on_connect => sub { push @main::GCONNS, $_[0] });
        $main::GCLIENT = $main::GCTX->connect(url => $url);
        return sub { $main::GCLIENT->is_connected && @main::GCONNS ? 'connected' : undef };
    },
    cycles => sub {
        my $app = { name => 'cycles' };
        $app->{self} = $app;
        $app->{ctx}  = EV::Websockets::Context->new;
        my $pong;
        $pong = sub { $pong };    # a callback that captures itself
        my $url = local_url($app->{ctx},
            on_connect => sub {
                $app->{server} = $_[0];
                $_[0]->stash->{app}  = $app;
                $_[0]->stash->{conn} = $_[0];
            },
            on_message => sub { $app->{got} = $_[1] },
            on_pong    => $pong,
        );
        $app->{client} = $app->{ctx}->connect(url => $url, on_pong => $pong,
            on_connect => sub { $app->{client}->stash->{self} = $_[0]; $_[0]->send('x') });
        return sub { $app->{got} ? 'connected' : undef };
    },
);

# Callbacks that exit(7): the listener's and the client's of the trigger.
my %exiting = (
    handshake => [ { on_handshake => sub { exit 7 } }, {} ],
    connect   => [ { on_connect => sub { exit 7 } }, {} ],
    message   => [ { on_message => sub { exit 7 } }, { on_connect => sub { $_[0]->send('go') } } ],
    error     => [ { on_error => sub { exit 7 } }, { on_connect => sub { $_[0]->send('x' x 11) } } ],
    close     => [ { on_close => sub { exit 7 } }, { on_connect => sub { $_[0]->close(1000) } } ],
    pong      => [ {}, { on_connect => sub { $_[0]->send_ping('go') }, on_pong  => sub { exit 7 } } ],
    drain     => [ {}, { on_connect => sub { $_[0]->send('go') },      on_drain => sub { exit 7 } } ],
);

$how =~ /^(?:normal|die|exit:(\w+))$/ && (!defined $1 || $exiting{$1}) or die "unknown way out '$how'\n";

$setup{$_} or die "unknown setup '$_'\n" for @what;
$ready{$_} = $setup{$_}->() for grep { !$LATE{$_} } @what;

my $poll;
$poll = EV::timer(0, 0.005, sub {
    my %state = map { $_ => $ready{$_}->() } keys %ready;
    return if grep { !defined } values %state;
    undef $poll;
    for my $late (grep { $LATE{$_} } @what) {
        $ready{$late} = $setup{$late}->();
        $state{$late} = $ready{$late}->() // 'not ready';
    }
    print join(' ', 'ready', map { "$_=$state{$_}" } sort keys %state), "\n";
    if ($how =~ /^exit:(\w+)/) {
        my ($server, $client) = @{ $exiting{$1} };
        my $url = local_url($CTX, max_message_size => 10, %$server);
        push @HELD, $CTX->connect(url => $url, %$client);
    }
    else {
        EV::break;
    }
});
EV::run;
if ($how eq 'die') {
    ($!, $?) = (0, 0);    # so that die exits with 255
    die "dying on purpose\n";
}
print "end\n";
