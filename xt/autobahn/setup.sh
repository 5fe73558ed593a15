#!/usr/bin/env bash
# Install Autobahn|Testsuite (Python 2 only) into DIR, default autobahn in
# the test peers' cache (t/lib/PeerSetup.pm: $EV_WS_PEER_CACHE, else
# ev-websockets under $XDG_CACHE_HOME or ~/.cache), and print the path of
# its wstest.  Reuses an
# existing install.  Needs pyenv's Python 2.7.18 and PyPI.
#
#   xt/autobahn/setup.sh [DIR]
set -euo pipefail

VERSION=25.10.1
CACHE="${EV_WS_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ev-websockets}"
DIR="${1:-$CACHE/autobahn}"
WSTEST="$DIR/ab/bin/wstest"
STAMP="$DIR/ab/.installed-$VERSION"

if [[ -x "$WSTEST" && -e "$STAMP" ]]; then
    echo "$WSTEST"
    exit 0
fi

python2="$(pyenv root 2>/dev/null)/versions/2.7.18/bin/python2.7"
[[ -x "$python2" ]] || { echo "setup.sh: no Python 2.7.18 from pyenv ($python2)" >&2; exit 1; }

rm -rf "$DIR"
mkdir -p "$DIR"
{
    python3 -m venv "$DIR/tools"
    "$DIR/tools/bin/pip" install -q 'virtualenv<20.22'
    "$DIR/tools/bin/virtualenv" -q -p "$python2" "$DIR/ab"
    "$DIR/ab/bin/pip" install -q "autobahntestsuite==$VERSION"
} >"$DIR/setup.log" 2>&1 || { echo "setup.sh: install failed, see $DIR/setup.log" >&2; tail -5 "$DIR/setup.log" >&2; exit 1; }

# fuzzingserver listens on all interfaces by default: loopback only.
fuzzing="$("$DIR/ab/bin/python" -c 'import autobahntestsuite, os; print(os.path.dirname(autobahntestsuite.__file__))')/fuzzing.py"
sed -i 's/^   listenWS(factory, sslContext)/   listenWS(factory, sslContext, interface = "127.0.0.1")/' "$fuzzing"
grep -q 'interface = "127.0.0.1"' "$fuzzing" || { echo "setup.sh: could not bind fuzzingserver to 127.0.0.1" >&2; exit 1; }

touch "$STAMP"
echo "$WSTEST"
