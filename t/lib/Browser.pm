package Browser;

# Headless Chromium as a WebSocket client, for t/interop/chromium.t.
#
#     my $path = Browser::chromium() or plan skip_all => ...;
#     my $b = Browser->start($path, url => $page_url, dir => $tmp, args => [...]);
#     $b->wait_for(sub { grep { $_->{event} eq 'done' } $b->records }, 20);
#     my @left = $b->stop;       # () when no process of it is left
#
# The page reports with console.log('EVWS ' + JSON); Chromium started with
# --enable-logging=stderr writes each console call to stderr as
#     [pid:tid:date:INFO:CONSOLE:line] "EVWS {...}", source: file:///... (line)
# (older releases: INFO:CONSOLE(line)), one line per call.  records() gives
# the decoded JSON of every such line so far; it reads the log without
# blocking, and wait_for() polls it with an EV timer.
#
# Chromium forks helpers (zygotes, renderers, GPU and network processes).
# The browser runs in a process group of its own, so that stop() can signal
# all of them at once.  Its crash handlers (chrome_crashpad_handler) detach
# into sessions of their own; HOME and XDG_CONFIG_HOME point into the test's
# temporary directory, so nothing is written to the real home (~/.pki,
# ~/.config) and every process of this browser, wherever it went, has that
# directory in its command line: stop() finds those too.  (Disabling
# crashpad with --disable-crashpad-for-testing is no option: Chromium 156's
# network service then dies at once with "Crashing due to FD ownership
# violation".)  Linux only (/proc).

use strict;
use warnings;

use EV;
use JSON::PP ();
use POSIX ();
use Scalar::Util qw(weaken);
use TestWS qw(run_until find_program);

# The flags every run gets; start() appends its args and the URL.
our @FLAGS = qw(
    --headless --no-sandbox --disable-gpu --disable-background-networking
    --disable-dev-shm-usage --no-first-run --no-default-browser-check
    --enable-logging=stderr
    --no-proxy-server
);

# The chromium executable, or undef.
sub chromium {
    return find_program('chromium') // find_program('chromium-browser');
}

my @running;    # every browser not yet stopped, for the END block
END { $_->_kill_all('KILL') for @running }

# Start the browser at $path on $opt{url}, with extra flags $opt{args},
# under $opt{dir} (its profile, HOME and log go there).
sub start {
    my ($class, $path, %opt) = @_;
    my $dir = $opt{dir} // die 'dir is required';
    mkdir "$dir/$_" for qw(home profile);
    my $log = "$dir/chromium.log";
    my @cmd = ($path, @FLAGS, "--user-data-dir=$dir/profile", @{ $opt{args} || [] }, $opt{url});
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setpgid(0, 0);
        @ENV{qw(HOME XDG_CONFIG_HOME XDG_CACHE_HOME)} = ("$dir/home", "$dir/home/.config", "$dir/home/.cache");
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $log) or POSIX::_exit(126);
        open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    POSIX::setpgid($pid, $pid);    # also here: whichever runs first, the group exists before any signal
    my $self = bless {
        pid => $pid, dir => $dir, log => $log, cmd => "@cmd",
        offset => 0, partial => '', records => [],
    }, $class;
    weaken(my $weak = $self);
    $self->{watcher} = EV::child($pid, 0, sub { $weak->{status} = $_[0]->rstatus if $weak; $_[0]->stop });
    push @running, $self;
    return $self;
}

# Whether the browser process has exited (seen while the loop ran).
sub exited { defined $_[0]{status} }

# Read what the log gained since the last call; decode the EVWS lines.
sub _read_log {
    my ($self) = @_;
    open(my $fh, '<', $self->{log}) or return;
    seek($fh, $self->{offset}, 0);
    my $new = do { local $/; <$fh> };
    return unless defined $new && length $new;
    $self->{offset} += length $new;
    my @lines = split /\n/, $self->{partial} . $new, -1;
    $self->{partial} = pop @lines;    # an incomplete last line waits for the rest
    for my $line (@lines) {
        next unless $line =~ /INFO:CONSOLE.*?"EVWS (\{.*\})", source: /;
        my $rec = eval { JSON::PP->new->utf8->decode($1) } // { event => 'unparsable', line => $line };
        push @{ $self->{records} }, $rec;
    }
    return;
}

# Every record the page has logged so far.
sub records {
    my ($self) = @_;
    $self->_read_log;
    return @{ $self->{records} };
}

# Run the default loop, polling the log every 50 ms, until $cond->() is
# true, the browser has exited, or $secs seconds have passed.  Returns
# $cond->() at the end.
sub wait_for {
    my ($self, $cond, $secs) = @_;
    my $met;
    my $poll = EV::timer(0, 0.05, sub { $self->_read_log; $met = $cond->() });
    run_until(sub { $met || $self->exited }, $secs);
    $self->_read_log;
    return $cond->();
}

# The last $n lines of the log, for diagnostics.
sub log_tail {
    my ($self, $n) = @_;
    open(my $fh, '<', $self->{log}) or return '';
    my @lines = <$fh>;
    return join '', grep { !/dbus|DBus/ } @lines[ ($#lines - $n > 0 ? $#lines - $n : 0) .. $#lines ];
}

# Live (not zombie) processes that belong to this browser: those in its
# process group, and any other whose command line names its directory.
sub processes {
    my ($self) = @_;
    my @pids;
    opendir(my $dh, '/proc') or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        next if $pid == $$;
        open(my $st, '<', "/proc/$pid/stat") or next;
        my $stat = <$st> // next;
        # pid (comm) state ppid pgrp ...; comm may contain anything
        my ($state, undef, $pgrp) = (substr($stat, rindex($stat, ')') + 2) =~ /^(\S) (\d+) (\d+)/) or next;
        next if $state eq 'Z';
        my $ours = $pgrp == $self->{pid};
        if (!$ours && open(my $cl, '<', "/proc/$pid/cmdline")) {
            local $/;
            my $cmdline = <$cl> // '';
            $ours = index($cmdline, $self->{dir}) >= 0;
        }
        push @pids, $pid if $ours;
    }
    return @pids;
}

# Send $sig to the group and to any process of the browser outside it.
sub _kill_all {
    my ($self, $sig) = @_;
    kill $sig, -$self->{pid};
    kill $sig, $_ for $self->processes;
    return;
}

# Stop the browser: SIGTERM to all its processes, then, if any is still
# there after 3 s, SIGKILL (2 s more).  Waits until the browser process has
# been reaped and no process of it is left.  Returns the pids still left
# (none, normally).
sub stop {
    my ($self) = @_;
    for my $step ([ 'TERM', 3 ], [ 'KILL', 2 ]) {
        my ($sig, $secs) = @$step;
        $self->_kill_all($sig);
        my $gone;
        my $poll = EV::timer(0, 0.05, sub { $gone = $self->exited && !$self->processes });
        run_until(sub { $gone }, $secs);
        last if $gone;
    }
    @running = grep { $_ != $self } @running;
    return $self->processes;
}

1;
