# Proves: every public method of the module's packages has its POD entry.
# POD: EV::Websockets, "EV::Websockets::Context" and
# "EV::Websockets::Connection".
#
# Every public method of the three packages is documented (Test::Pod::Coverage):
# a method added to the XS or the .pm without a =head or =item naming it in
# lib/EV/Websockets.pm fails here.  Private names need no entry: those with a
# leading underscore (_set_debug, _selftest_panic, _parse_proxy) and the ones
# Pod::Coverage treats as private anyway (DESTROY, CLONE_SKIP).
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

BEGIN {
    my $have = eval { require Test::Pod::Coverage; Test::Pod::Coverage->VERSION(1.08); Test::Pod::Coverage->import; 1 };
    need_peer('Test::Pod::Coverage', $have,
        'Test::Pod::Coverage 1.08 is not installed (Debian: libtest-pod-coverage-perl)');
}

# Looking at symbol tables runs no event loop; the guard is here by house rule.
my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# Pod::Coverage requires each package by name before looking at it; the two
# sub-packages have no file of their own (they live in EV/Websockets.pm and
# its XS), so tell require they are loaded already.
$INC{"EV/Websockets/$_.pm"} //= $INC{'EV/Websockets.pm'} for qw(Context Connection);

my %methods = (
    'EV::Websockets::Context'    => [qw(new connect listen adopt connections)],
    'EV::Websockets::Connection' => [qw(send send_binary send_fragment send_ping send_pong send_queue_size
        close pause_recv resume_recv stash get_protocol peer_address state is_connected is_connecting)],
);

# EV::Websockets itself has only private functions: Test::Pod::Coverage
# passes it as having no public symbols.
for my $package ('EV::Websockets', sort keys %methods) {
    pod_coverage_ok($package, { pod_from => 'lib/EV/Websockets.pm' }, "$package: every public method is documented");
}

# The coverage above is only as good as what Pod::Coverage sees: make sure
# it sees the API (XS methods included), so that a pass is not vacuous.
for my $package (sort keys %methods) {
    my $pc = Pod::Coverage->new(package => $package, pod_from => 'lib/EV/Websockets.pm');
    my %seen = map { $_ => 1 } $pc->covered, $pc->uncovered;
    is_deeply([ grep { !$seen{$_} } @{ $methods{$package} } ], [], "$package: Pod::Coverage sees every API method");
}

done_testing;
