package NodePeer;

# Node.js with the `ws` library, for interoperability tests against another
# independent WebSocket implementation.
#
#     use lib 't/lib';
#     use NodePeer qw(node_with_ws js_script);   # before TestWS, which removes the proxy variables
#     my ($node, $why) = node_with_ws();
#     spawn_daemon([ $node, js_script('ws_echo_server.js'), ... ], $log);
#
# ws is installed on first use with `npm install --prefix <cache>/node
# ws@$WS_VERSION` (npm needs the registry); an install that already loads
# that version is reused.  node_with_ws() sets $ENV{NODE_PATH} to its
# node_modules, so that the scripts in t/js, run by this process or its
# children, find it with require('ws').  Installing (bounded in time,
# under a lock file) is PeerSetup's.

use strict;
use warnings;

use File::Path qw(remove_tree);
use PeerSetup qw($ROOT $CACHE run_bounded install_once installer_env in_path);
use Exporter 'import';

our @EXPORT    = qw(node_with_ws);
our @EXPORT_OK = qw(js_script $WS_VERSION);

# The ws release the tests are written against (the newest on npm when
# they were written).  Changing it reinstalls on the next run.
our $WS_VERSION = '8.23.0';

# Upper bound, in seconds, for npm install.
our $NPM_TIMEOUT = 120;

my $PREFIX  = "$CACHE/node";
my $MODULES = "$PREFIX/node_modules";

# The path of t/js/$name.
sub js_script {
    my ($name) = @_;
    return "$ROOT/t/js/$name";
}

sub _program {
    my ($name) = @_;
    return -x "/usr/bin/$name" ? "/usr/bin/$name" : in_path($name);
}

# Node, if require('ws') from t/js (with NODE_PATH set) loads exactly
# $WS_VERSION out of $MODULES, else undef.  Resolving from t/js shows that
# no other copy of ws (a node_modules up the tree, a distribution's global
# one) comes first.  What was found goes to $log (default /dev/null).
sub _usable {
    my ($log) = @_;
    my $node = _program('node') // return undef;
    return undef unless -d "$MODULES/ws";
    my $err = run_bounded(20, $log // '/dev/null', $node, '-e', <<"JS", js_script('.'));
const path = require('path');
const dir = process.argv[1];
const main = require.resolve('ws', { paths: [dir] });
const pkg = require(path.join(path.dirname(main), 'package.json'));
const ok = pkg.version === '$WS_VERSION' && main.startsWith('$MODULES/');
console.log(`require('ws') from \${dir} loads ws \${pkg.version} from \${main}`);
process.exit(ok ? 0 : 1);
JS
    return defined $err ? undef : $node;
}

# The path of node, with ws $WS_VERSION installed where the scripts in t/js
# find it; or (undef, $reason) when that is impossible.  The result is
# cached for the process.  Concurrent test processes wait for each other
# on a lock file.
sub node_with_ws {
    my @r = do {
        local $ENV{NODE_PATH} = _node_path();
        install_once(
            name    => 'node',
            timeout => $NPM_TIMEOUT,
            check   => \&_usable,
            make    => \&_make,
            discard => sub { remove_tree($PREFIX) },
        );
    };
    $ENV{NODE_PATH} = _node_path() if defined $r[0];
    return wantarray ? @r : $r[0];
}

# $MODULES in front of whatever NODE_PATH held.
sub _node_path {
    my @dirs = grep { length && $_ ne $MODULES } split /:/, $ENV{NODE_PATH} // '';
    return join ':', $MODULES, @dirs;
}

# npm install ws into $PREFIX, logging to $log.  Returns undef, or why that
# failed.
sub _make {
    my ($log) = @_;
    my $node = _program('node');
    return 'no node found (/usr/bin/node or in PATH; Debian: apt-get install nodejs npm)' unless $node;
    my $npm = _program('npm');
    return 'no npm found (/usr/bin/npm or in PATH; Debian: apt-get install npm)' unless $npm;

    remove_tree($PREFIX);
    my $err = do {
        local %ENV = installer_env(npm_config_update_notifier => 'false');
        run_bounded($NPM_TIMEOUT, $log, $npm, 'install', '--prefix', $PREFIX,
            '--cache', "$CACHE/npm-cache", '--no-audit', '--no-fund', '--ignore-scripts',
            '--no-save', "ws\@$WS_VERSION");
    };
    if ($err) {
        remove_tree($PREFIX);
        return "cannot install ws\@$WS_VERSION: $err";
    }
    _usable($log);    # says in the log where ws was found
    return undef;
}

1;
