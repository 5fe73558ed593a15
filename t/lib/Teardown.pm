package Teardown;

# Helpers for t/lifecycle/teardown-orders.t: sentinel objects that report when
# they are freed, child perls run with their stdout and stderr captured
# apart, and the slow getaddrinfo shim of t/dns.

use strict;
use warnings;

use EV;
use Config;
use POSIX ();
use Scalar::Util qw(weaken);
use Exporter 'import';
use TestWS qw(run_until slurp);

our @EXPORT_OK = qw(sentinel run_children build_shim);

# ---- sentinels ----------------------------------------------------------

# sentinel(\%freed, $name): an object that sets $freed{$name} when it is
# freed.  Whatever holds it (a closure, a hash) has been freed too once the
# flag is set.
sub sentinel {
    my ($freed, $name) = @_;
    return bless { freed => $freed, name => $name }, 'Teardown::Sentinel';
}

sub Teardown::Sentinel::DESTROY {
    my ($self) = @_;
    $self->{freed}{ $self->{name} }++ if $self->{freed};
}

# ---- child perls ----------------------------------------------------------

# Children still running when the test ends are killed (by the test, not
# by a forked copy of it).
my %running;
my $owner = $$;
END { kill 'KILL', keys %running if %running && $$ == $owner }

# Start `$^X -Mblib @$args` with $env (a hash ref) added to the
# environment, stdin from /dev/null, stdout and stderr into files of their
# own in $dir.  Returns a hash ref: pid, out and err (the file names), and
# status (the wait status, set by an EV::child watcher while the default
# loop runs).
sub spawn_perl {
    my ($dir, $n, $args, $env) = @_;
    my ($out, $err) = ("$dir/child-$n.out", "$dir/child-$n.err");
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        @ENV{ keys %$env } = values %$env;
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $out) or POSIX::_exit(126);
        open(STDERR, '>', $err) or POSIX::_exit(126);
        exec { $^X } $^X, '-Mblib', @$args or POSIX::_exit(127);
    }
    $running{$pid} = 1;
    my $child = { pid => $pid, out => $out, err => $err };
    weaken(my $weak = $child);
    $child->{watcher} = EV::child($pid, 0, sub {
        delete $running{$pid};
        $weak->{status} = $_[0]->rstatus if $weak;
        $_[0]->stop;
    });
    return $child;
}

# Run one child perl per element of @$jobs (each a hash ref: args, env),
# at most $parallel at a time, each for at most $secs seconds (then it is
# killed: its status shows SIGKILL).  Fills in each job: status, stdout,
# stderr.  $dir holds the output files.
sub run_children {
    my ($dir, $jobs, %opt) = @_;
    my $parallel = $opt{parallel} || 4;
    my $secs     = $opt{secs}     || 10;
    my @queue = @$jobs;
    my (@live, $n);
    while (@queue || @live) {
        while (@queue && @live < $parallel) {
            my $job = shift @queue;
            $job->{child} = spawn_perl($dir, ++$n, $job->{args}, $job->{env} || {});
            $job->{deadline} = EV::time + $secs;
            push @live, $job;
        }
        run_until(sub { grep { defined $_->{child}{status} || EV::time > $_->{deadline} } @live }, $secs);
        for my $job (@live) {
            next if defined $job->{child}{status} || EV::time <= $job->{deadline};
            kill 'KILL', $job->{child}{pid};
            run_until(sub { defined $job->{child}{status} }, 2);
        }
        for my $job (grep { defined $_->{child}{status} } @live) {
            $job->{status} = $job->{child}{status};
            $job->{stdout} = slurp($job->{child}{out});
            $job->{stderr} = slurp($job->{child}{err});
        }
        @live = grep { !defined $_->{child}{status} } @live;
    }
    return $jobs;
}

# ---- the slow resolver ----------------------------------------------------

# Build t/dns/slow_getaddrinfo.c (getaddrinfo of "slow.ev-websockets.test"
# takes 300 ms) into $dir.  Returns the library's path, or undef when no C
# compiler could build it.
sub build_shim {
    my ($dir) = @_;
    my $shim = "$dir/slow_getaddrinfo.so";
    my $cc   = $Config{cc} || 'cc';
    return system("$cc -shared -fPIC -o $shim t/dns/slow_getaddrinfo.c -ldl >/dev/null 2>&1") == 0
        ? $shim : undef;
}

1;
