package PeerSetup;

# What the third-party peers of the interoperability tests (t/lib/PyPeer.pm,
# t/lib/NodePeer.pm) have in common: they are installed on first use into
# $CACHE/<name>, by commands bounded in time, under a lock file so that
# concurrent test processes install once and wait for each other.  $CACHE
# is $EV_WS_PEER_CACHE, else ev-websockets under $XDG_CACHE_HOME or
# ~/.cache: outside the source tree (whose MANIFEST checks walk every file
# and trip over a virtualenv's links), and shared by every checkout and
# unpacked tarball of the module.
#
#     use PeerSetup qw($ROOT $CACHE run_bounded install_once installer_env in_path);
#
#     my ($path, $why) = install_once(
#         name    => 'thing',                  # lock $CACHE/thing.lock, log $CACHE/thing-setup.log
#         timeout => 120,                      # how long make may take (bounds the lock wait)
#         check   => sub { ... },              # path of a working install, or undef
#         make    => sub { my ($log) = @_; ... },  # install; undef, or the reason it failed
#         discard => sub { ... },              # optional: remove an install that does not work
#     );
#
# Load this (through PyPeer or NodePeer) before TestWS: TestWS deletes the
# proxy variables, and installers may need them to reach their registry.

use strict;
use warnings;

use Cwd qw(abs_path);
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX ();
use Exporter 'import';

our @EXPORT_OK = qw($ROOT $CACHE run_bounded install_once installer_env in_path);

# t/lib/PeerSetup.pm -> the repository root.
our $ROOT  = abs_path(dirname(abs_path(__FILE__)) . '/../..');
our $CACHE = $ENV{EV_WS_PEER_CACHE}
    // (($ENV{XDG_CACHE_HOME} || ($ENV{HOME} // '/tmp') . '/.cache') . '/ev-websockets');

# The proxy variables as they were when this module was loaded (before
# TestWS removed them).
my %PROXY_ENV = map { exists $ENV{$_} ? ($_ => $ENV{$_}) : () }
    qw(https_proxy http_proxy all_proxy no_proxy HTTPS_PROXY HTTP_PROXY ALL_PROXY NO_PROXY);

# The environment for an installer (pip, npm): the current one with the
# proxy variables restored.  For `local %ENV = installer_env(...)`; %extra
# adds variables.
sub installer_env {
    my (%extra) = @_;
    return (%ENV, %PROXY_ENV, %extra);
}

# Run @cmd with stdin from /dev/null and stdout and stderr appended to $log,
# in its own process group, for at most $secs seconds (then the whole group
# is killed).  Returns undef on success, else a description of the failure
# that includes the end of the log.
sub run_bounded {
    my ($secs, $log, @cmd) = @_;
    my $pid = fork // return "fork: $!";
    if (!$pid) {
        setpgrp(0, 0);
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log) or POSIX::_exit(126);
        open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    my $status;
    my $timed_out = !eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm $secs;
        waitpid($pid, 0);
        $status = $?;
        alarm 0;
        1;
    };
    alarm 0;
    if ($timed_out) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    return undef if !$timed_out && $status == 0;
    my $what = $timed_out ? "timed out after $secs s"
             : $status >> 8 == 127 ? 'could not be run'
             : 'failed (wait status ' . $status . ')';
    return "'@cmd' $what" . _tail($log);
}

# The last 10 lines of $log, after a newline; '' if there are none.
sub _tail {
    my ($log) = @_;
    open(my $fh, '<', $log) or return '';
    my @lines = <$fh>;
    my $tail = join '', @lines > 10 ? @lines[-10 .. -1] : @lines;
    $tail =~ s/\s+\z//;
    return length $tail ? "\n$tail" : '';
}

# The result of install_once for each name, for the life of the process.
my %done;

# A working install of peer $opt{name}: $opt{check}->() if that gives one;
# else, holding $CACHE/<name>.lock, check again (another process may have
# installed it meanwhile), then $opt{make}->($log) with a fresh
# $CACHE/<name>-setup.log, and check once more.  Returns the path check
# gave, or (undef, $reason) (in scalar context just the path or undef).
# The result is kept for the process.
sub install_once {
    my (%opt) = @_;
    my $name = $opt{name};
    my $r = $done{$name} ||= [ _install(%opt) ];
    return wantarray ? @$r : $r->[0];
}

sub _install {
    my (%opt) = @_;
    my $name = $opt{name};
    my $found = $opt{check}->();
    return $found if defined $found;

    eval { make_path($CACHE); 1 } or return (undef, "cannot create $CACHE: $@");
    my $lockfile = "$CACHE/$name.lock";
    open(my $lock, '>>', $lockfile) or return (undef, "$lockfile: $!");
    my $locked = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm($opt{timeout} + 10);
        my $ok = flock($lock, LOCK_EX);
        alarm 0;
        $ok;
    };
    alarm 0;
    return (undef, "could not lock $lockfile") unless $locked;

    $found = $opt{check}->();
    return $found if defined $found;

    my $log = "$CACHE/$name-setup.log";
    unlink $log;
    if (defined(my $err = $opt{make}->($log))) {
        return (undef, $err);
    }
    $found = $opt{check}->();
    return $found if defined $found;
    $opt{discard}->() if $opt{discard};
    return (undef, "$name was installed but does not work (log: $log)" . _tail($log));
}

# The path of an executable $name in $PATH, or undef.
sub in_path {
    my ($name) = @_;
    for my $dir (split /:/, $ENV{PATH} // '') {
        return "$dir/$name" if length $dir && -f "$dir/$name" && -x _;
    }
    return undef;
}

1;
