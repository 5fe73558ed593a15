package PyPeer;

# A Python interpreter with the `websockets` library, for interoperability
# tests against a second, independent WebSocket implementation.
#
#     use lib 't/lib';
#     use PyPeer;     # before TestWS, which removes the proxy variables
#     my ($python, $why) = python_with_websockets();
#
# The interpreter lives in a virtualenv at <cache>/python, made on
# first use with /usr/bin/python3 -m venv and pip install websockets==$VERSION
# (pip needs PyPI).  A venv that already imports that version is reused.
# The scripts the tests run are in t/py; py_script($name) gives the path
# of one.  Installing (bounded in time, under a lock file) is PeerSetup's.

use strict;
use warnings;

use File::Path qw(remove_tree);
use PeerSetup qw($ROOT $CACHE run_bounded install_once installer_env in_path);
use Exporter 'import';

our @EXPORT    = qw(python_with_websockets);
our @EXPORT_OK = qw(py_script $WEBSOCKETS_VERSION);

# The websockets release the tests are written against (the newest on PyPI
# when they were written).  Changing it rebuilds the venv on the next run.
our $WEBSOCKETS_VERSION = '17.4';

# Upper bounds, in seconds, for making the venv and for pip.
our $VENV_TIMEOUT = 60;
our $PIP_TIMEOUT  = 120;

my $VENV = "$CACHE/python";

# The path of t/py/$name.
sub py_script {
    my ($name) = @_;
    return "$ROOT/t/py/$name";
}

# The venv's interpreter if it imports websockets at exactly
# $WEBSOCKETS_VERSION, else undef.
sub _usable {
    my $python = "$VENV/bin/python";
    return undef unless -x $python;
    my $err = run_bounded(20, '/dev/null', $python, '-c',
        "import sys, websockets; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')");
    return defined $err ? undef : $python;
}

# The path of a Python interpreter that can `import websockets` (at
# $WEBSOCKETS_VERSION), making the venv if needed; or (undef, $reason) when
# that is impossible.  The result is cached for the process.  Concurrent
# test processes wait for each other on a lock file.
sub python_with_websockets {
    return install_once(
        name    => 'python',
        timeout => $VENV_TIMEOUT + $PIP_TIMEOUT,
        check   => \&_usable,
        make    => \&_make,
        discard => sub { remove_tree($VENV) },
    );
}

# Make the venv and pip install websockets into it, logging to $log.
# Returns undef, or why that failed.
sub _make {
    my ($log) = @_;
    my $python3 = -x '/usr/bin/python3' ? '/usr/bin/python3' : in_path('python3');
    return 'no python3 found (/usr/bin/python3 or in PATH)' unless $python3;

    remove_tree($VENV);
    if (my $err = run_bounded(20, $log, $python3, '-c', 'import venv, ensurepip')) {
        return "$python3 lacks the venv or ensurepip module (Debian: apt-get install python3-venv): $err";
    }
    if (my $err = run_bounded($VENV_TIMEOUT, $log, $python3, '-m', 'venv', $VENV)) {
        remove_tree($VENV);
        return "cannot create a virtualenv: $err";
    }
    my $pip_err = do {
        local %ENV = installer_env(PIP_DISABLE_PIP_VERSION_CHECK => 1, PIP_NO_INPUT => 1);
        run_bounded($PIP_TIMEOUT, $log, "$VENV/bin/python", '-m', 'pip', 'install', '-q',
            "websockets==$WEBSOCKETS_VERSION");
    };
    if ($pip_err) {
        remove_tree($VENV);
        return "cannot install websockets==$WEBSOCKETS_VERSION: $pip_err";
    }
    return undef;
}

1;
