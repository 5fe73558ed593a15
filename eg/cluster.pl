#!/usr/bin/env perl
# A broadcast chat served by several processes on one port, sharing its
# topic through Redis.
#
#   perl -Mblib eg/cluster.pl [--port 9020] [--workers N] [--redis URL]
#
# Forks N workers (default: one per core), each with a context of its own
# bridged to Redis (pubsub, default redis://127.0.0.1:6379) and listening
# on the same port with reuse_port => 1, so that the kernel spreads the
# clients over them.  Every client is subscribed to the topic "chat"; a
# message from any client is published as "<worker pid> text" and reaches
# every client of every worker once.  A newcomer is greeted with
# "* worker <pid> welcomes you".  When all workers are bridged the parent
# prints "listening on ws://127.0.0.1:PORT/ (N workers)".  Ctrl-C (SIGINT)
# or SIGTERM stops every worker gracefully ($ctx->shutdown: each client is
# closed with 1001) and then the parent.  Try it with two clients:
#
#   redis-server --port 6379 --save '' &
#   perl -Mblib eg/cluster.pl --workers 2
#   perl -Mblib eg/chat_server.pl --client ws://127.0.0.1:9020/   # twice

use strict;
use warnings;

use EV;
use EV::Websockets;
use FindBin;
use Getopt::Long;
use IO::Socket::INET;
use POSIX ();
use lib "$FindBin::Bin/lib";
use Shutdown;    # eg/lib/Shutdown.pm

$| = 1;

my ($port, $workers, $redis) = (9020, cores(), 'redis://127.0.0.1:6379');
GetOptions('port=i' => \$port, 'workers=i' => \$workers, 'redis=s' => \$redis)
    && !@ARGV && $workers >= 1
    or die "usage: $0 [--port N] [--workers N] [--redis redis://host:port]\n";

sub cores {
    open my $fh, '<', '/proc/cpuinfo' or return 2;
    my $n = grep { /^processor\s*:/ } <$fh>;
    return $n || 2;
}

# --port 0: a free port, picked here so that every worker shares it.
if ($port == 0) {
    my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "cannot find a free port: $!\n";
    $port = $probe->sockport;
}

# Each worker writes a line on $ready once it listens and is bridged.
pipe(my $ready_r, my $ready_w) or die "pipe: $!\n";
my %pids;
for (1 .. $workers) {
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        close $ready_r;
        EV::default_loop->loop_fork;
        POSIX::_exit(worker($ready_w));
    }
    $pids{$pid} = 1;
}
close $ready_w;

my $up = 0;
my $ready = EV::io($ready_r, EV::READ, sub {
    if (sysread($ready_r, my $buf, 512)) {
        $up += $buf =~ tr/\n//;
        print "listening on ws://127.0.0.1:$port/ ($workers workers)\n" if $up == $workers;
    } else {
        $_[0]->stop;    # every worker closed its end
    }
});
my $stopping;
my @signals = map {
    EV::signal($_, sub { kill 'TERM', keys %pids unless $stopping++ })
} qw(INT TERM);
my $status = 0;
my @children = map {
    my $pid = $_;
    EV::child($pid, 0, sub {
        $status ||= $_[0]->rstatus >> 8;
        delete $pids{$pid};
        # one that died unasked takes the rest down with it
        kill 'TERM', keys %pids unless $stopping++;
        EV::break unless %pids;
    });
} keys %pids;
EV::run;
print "all workers stopped\n";
exit $status;

# ------------------------------------------------------------------ worker

sub worker {
    my ($ready_w) = @_;
    my $bridged;
    my $ctx = EV::Websockets::Context->new(pubsub => {
        redis      => $redis,
        prefix     => 'cluster:',
        on_connect => sub {
            return if $bridged++;
            syswrite $ready_w, "$$\n";
            close $ready_w;
        },
        on_error => sub { warn "worker $$: redis: $_[1]\n" },
    });
    my $shutdown = Shutdown->on_signals($ctx, 'server shutting down', quiet => 1);
    # a parent that died without telling us (SIGKILL) is a SIGTERM too
    my $parent = getppid;
    my $orphan = EV::timer(1, 1, sub { kill 'TERM', $$ if getppid != $parent });
    $ctx->listen(
        port       => $port,
        host       => '127.0.0.1',
        reuse_port => 1,
        on_connect => sub {
            my ($conn) = @_;
            $conn->subscribe('chat');
            $conn->send("* worker $$ welcomes you");
        },
        on_message => sub {
            my ($conn, $text) = @_;
            $ctx->publish(chat => "<$$> $text");
        },
    );
    EV::run;
    undef $ctx;
    return 0;
}
