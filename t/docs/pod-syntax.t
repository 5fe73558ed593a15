# Proves: the POD of the module, README.pod and HACKING.pod is well-formed.
# POD: every section of EV::Websockets, README.pod and HACKING.pod.
#
# The POD of the module, README.pod and HACKING.pod is well-formed (Test::Pod: no
# syntax errors, no unknown commands or formatting codes, balanced =over
# and =back).  Whether it is complete is t/docs/pod-coverage.t's business.
use strict;
use warnings;
use Test::More;
use EV;
use lib 't/lib';
use TestWS;

BEGIN {
    my $have = eval { require Test::Pod; Test::Pod->VERSION(1.22); Test::Pod->import; 1 };
    need_peer('Test::Pod', $have, 'Test::Pod 1.22 is not installed (Debian: libtest-pod-perl)');
}

# Parsing POD runs no event loop; the guard is here by house rule.
my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# Every .pm/.pod under lib/ (the module and its sub-packages share
# lib/EV/Websockets.pm), the README shown on the project page, and the
# developers' guide.
my @files = (all_pod_files('lib'), 'README.pod', 'HACKING.pod');
ok(scalar(grep { m{EV/Websockets\.pm$} } @files), 'lib/EV/Websockets.pm is among the files checked');
pod_file_ok($_) for @files;

done_testing;
