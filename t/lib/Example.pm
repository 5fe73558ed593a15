package Example;

# An example script (eg/*.pl) run in a child perl for smoke tests, its
# standard output and error captured in memory by an EV watcher.
#
#   my $ex = Example->start('eg/graceful_shutdown.pl', '--port', 0);
#   my $port = $ex->port or diag $ex->output;    # from "listening on ...:N/"
#   ok($ex->wait_for(qr/client connected/), '...');
#   $ex->signal('TERM');
#   is($ex->wait_exit, 0, 'exits 0');
#
# Options of start, after the arguments: stdin => 1 gives the child a pipe
# as standard input (write with ->write_stdin, end with ->close_stdin);
# otherwise it reads /dev/null.  The child runs `perl -Mblib <script>` from
# the current directory with the test's environment.  The default EV loop
# must run (run_until, wait_for...) for output and exit to be noticed.
# Every child still running at the end of the test is killed.

use strict;
use warnings;

use EV;
use POSIX ();
use Scalar::Util qw(weaken);
use TestWS qw(run_until);

my @started;
END { kill 'KILL', $_->{pid} for grep { $_ && $_->{pid} && !defined $_->{status} } @started }

sub start {
    my ($class, $script, @args) = @_;
    my %opt = (@args >= 2 && $args[-2] eq 'stdin') ? splice(@args, -2) : ();
    pipe(my $out_r, my $out_w) or die "pipe: $!";
    my ($in_r, $in_w);
    pipe($in_r, $in_w) or die "pipe: $!" if $opt{stdin};
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $out_r;
        if ($in_r) { close $in_w; open(STDIN, '<&', $in_r) or POSIX::_exit(126) }
        else       { open(STDIN, '<', '/dev/null') or POSIX::_exit(126) }
        open(STDOUT, '>&', $out_w) or POSIX::_exit(126);
        open(STDERR, '>&', $out_w) or POSIX::_exit(126);
        exec $^X, '-Mblib', $script, @args or POSIX::_exit(127);
    }
    close $out_w;
    close $in_r if $in_r;
    if ($in_w) { my $old = select $in_w; $| = 1; select $old }
    my $self = bless {
        pid => $pid, script => $script, out => '', eof => 0, status => undef, stdin => $in_w,
    }, $class;
    weaken(my $weak = $self);
    $self->{reader} = EV::io($out_r, EV::READ, sub {
        my $n = sysread $out_r, my $buf, 65536;
        if ($n) { $weak->{out} .= $buf if $weak; return }
        return if !defined $n && $!{EINTR};
        $_[0]->stop;
        $weak->{eof} = 1 if $weak;
    });
    $self->{fh}    = $out_r;
    $self->{child} = EV::child($pid, 0, sub { $weak->{status} = $_[0]->rstatus if $weak; $_[0]->stop });
    push @started, $self;
    weaken($started[-1]);
    return $self;
}

# Everything the child printed so far.
sub output { return $_[0]{out} }

# Wait (at most $secs seconds, default 5) until the output matches $re or
# the child has exited.  Returns the list of captures of the match (or 1
# if there are none), or the empty list if it did not match.
sub wait_for {
    my ($self, $re, $secs) = @_;
    run_until(sub { $self->{out} =~ $re || $self->exited }, $secs // 5);
    my @m = $self->{out} =~ $re;
    return @m;
}

# How many times the output matches $re so far.
sub count {
    my ($self, $re) = @_;
    my @all = $self->{out} =~ /$re/g;
    return scalar @all;
}

# The port of the first "listening on <scheme>://<host>:<port>/" line
# (waits for it, at most $secs seconds, default 5); undef if none came.
sub port {
    my ($self, $secs) = @_;
    return $self->{port} //= ($self->wait_for(qr{listening on \w+://[^/\s]*:(\d+)/}, $secs))[0];
}

sub signal {
    my ($self, $sig) = @_;
    kill $sig, $self->{pid} unless defined $self->{status};
}

sub write_stdin {
    my ($self, $bytes) = @_;
    syswrite $self->{stdin}, $bytes;
}

sub close_stdin { close delete $_[0]{stdin} }

# The child has exited and all its output has been read.
sub exited { return defined $_[0]{status} && $_[0]{eof} }

# Wait (at most $secs seconds, default 5) for the child to exit.  Returns
# its exit code (the signal number plus 128 if a signal killed it), or
# undef if it is still running.
sub wait_exit {
    my ($self, $secs) = @_;
    run_until(sub { $self->exited }, $secs // 5);
    return undef unless defined $self->{status};
    my $st = $self->{status};
    return $st & 127 ? 128 + ($st & 127) : $st >> 8;
}

# Make sure the child is gone: SIGTERM, then SIGKILL if it is still there
# after $secs seconds (default 3).  Returns what wait_exit returns.
sub stop {
    my ($self, $secs) = @_;
    return $self->wait_exit(0) if defined $self->{status};
    $self->signal('TERM');
    my $code = $self->wait_exit($secs // 3);
    return $code if defined $code;
    $self->signal('KILL');
    return $self->wait_exit(2);
}

# The output shows no exception in a callback and no warning from the
# module, and no Perl warning.
sub clean {
    my ($self) = @_;
    return $self->{out} !~ /exception in|EV::Websockets: |at \S+ line \d+\.?$/m;
}

# A child whose object goes away is not needed any more.
sub DESTROY {
    my ($self) = @_;
    kill 'KILL', $self->{pid} if $self->{pid} && !defined $self->{status};
}

1;
