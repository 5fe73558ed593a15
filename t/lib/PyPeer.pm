package PyPeer;

# A Python interpreter with the `websockets` library, for interoperability
# tests against a second, independent WebSocket implementation.
#
#     use lib 't/lib';
#     use PyPeer;     # before TestWS, which removes the proxy variables
#     my ($python, $why) = python_with_websockets();
#
# The interpreter lives in a virtualenv at <repo>/.cache/python, made on
# first use with /usr/bin/python3 -m venv and pip install websockets==$VERSION
# (pip needs PyPI).  A venv that already imports that version is reused.
# The scripts the tests run are in t/py; py_script($name) gives the path
# of one.

use strict;
use warnings;

use Cwd qw(abs_path);
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use POSIX ();
use Exporter 'import';

our @EXPORT    = qw(python_with_websockets);
our @EXPORT_OK = qw(py_script $WEBSOCKETS_VERSION);

# The websockets release the tests are written against (the newest on PyPI
# when they were written).  Changing it rebuilds the venv on the next run.
our $WEBSOCKETS_VERSION = '17.4';

# Upper bounds, in seconds, for making the venv and for pip.
our $VENV_TIMEOUT = 60;
our $PIP_TIMEOUT  = 120;

# t/lib/PyPeer.pm -> the repository root.
my $ROOT  = abs_path(dirname(abs_path(__FILE__)) . '/../..');
my $CACHE = "$ROOT/.cache";
my $VENV  = "$CACHE/python";

# pip may need a proxy to reach PyPI; TestWS deletes the proxy variables
# when it is loaded, so keep a copy of them as they were when this module
# was loaded.
my %PROXY_ENV = map { exists $ENV{$_} ? ($_ => $ENV{$_}) : () }
    qw(https_proxy http_proxy all_proxy no_proxy HTTPS_PROXY HTTP_PROXY ALL_PROXY NO_PROXY);

# The path of t/py/$name.
sub py_script {
    my ($name) = @_;
    return "$ROOT/t/py/$name";
}

# Run @cmd with stdin from /dev/null and stdout and stderr appended to $log,
# in its own process group, for at most $secs seconds (then the whole group
# is killed).  Returns undef on success, else a description of the failure
# that includes the end of the log.
sub _run {
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
    my $tail = '';
    if (open(my $fh, '<', $log)) {
        my @lines = <$fh>;
        $tail = join '', @lines > 10 ? @lines[-10 .. -1] : @lines;
        $tail =~ s/\s+\z//;
        $tail = "\n$tail" if length $tail;
    }
    return "'@cmd' $what$tail";
}

# Does $python import websockets at exactly $WEBSOCKETS_VERSION?
sub _usable {
    my ($python) = @_;
    return 0 unless -x $python;
    my $err = _run(20, '/dev/null', $python, '-c',
        "import sys, websockets; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')");
    return !defined $err;
}

my ($cached, $cached_why);

# The path of a Python interpreter that can `import websockets` (at
# $WEBSOCKETS_VERSION), making the venv if needed; or (undef, $reason) when
# that is impossible.  The result is cached for the process.  Concurrent
# test processes wait for each other on a lock file.
sub python_with_websockets {
    return $cached if $cached;
    return (undef, $cached_why) if $cached_why;
    ($cached, $cached_why) = _find_or_make();
    return $cached ? $cached : (undef, $cached_why);
}

sub _find_or_make {
    my $python = "$VENV/bin/python";
    return $python if _usable($python);

    my $python3 = -x '/usr/bin/python3' ? '/usr/bin/python3' : _in_path('python3');
    return (undef, 'no python3 found (/usr/bin/python3 or in PATH)') unless $python3;

    eval { make_path($CACHE); 1 } or return (undef, "cannot create $CACHE: $@");
    open(my $lock, '>>', "$CACHE/python.lock") or return (undef, "$CACHE/python.lock: $!");
    my $locked = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm($VENV_TIMEOUT + $PIP_TIMEOUT + 10);
        my $ok = flock($lock, LOCK_EX);
        alarm 0;
        $ok;
    };
    alarm 0;
    return (undef, "could not lock $CACHE/python.lock") unless $locked;

    # Another process may have made it while this one waited.
    return $python if _usable($python);

    my $log = "$CACHE/python-setup.log";
    unlink $log;
    remove_tree($VENV);
    if (my $err = _run(20, $log, $python3, '-c', 'import venv, ensurepip')) {
        return (undef, "$python3 lacks the venv or ensurepip module (Debian: apt-get install python3-venv): $err");
    }
    if (my $err = _run($VENV_TIMEOUT, $log, $python3, '-m', 'venv', $VENV)) {
        remove_tree($VENV);
        return (undef, "cannot create a virtualenv: $err");
    }
    my $pip_err = do {
        local %ENV = (%ENV, %PROXY_ENV, PIP_DISABLE_PIP_VERSION_CHECK => 1, PIP_NO_INPUT => 1);
        _run($PIP_TIMEOUT, $log, $python, '-m', 'pip', 'install', '-q', "websockets==$WEBSOCKETS_VERSION");
    };
    if ($pip_err) {
        remove_tree($VENV);
        return (undef, "cannot install websockets==$WEBSOCKETS_VERSION: $pip_err");
    }
    return $python if _usable($python);
    remove_tree($VENV);
    return (undef, "websockets==$WEBSOCKETS_VERSION was installed in $VENV but does not import");
}

sub _in_path {
    my ($name) = @_;
    for my $dir (split /:/, $ENV{PATH} // '') {
        return "$dir/$name" if length $dir && -f "$dir/$name" && -x _;
    }
    return undef;
}

1;
