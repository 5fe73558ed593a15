# Proves: a panic in the Rust core comes back as the fixed internal-error
# message and the module keeps working.
# POD: EV::Websockets, "Perl code at the boundary".
#
# A panic in the Rust core must not unwind into perl: every entry point is
# guarded and turns a panic into a plain return value.  A deliberate panic
# behind the guard (EV::Websockets::_selftest_panic) comes back as the
# guard's fixed message (what a croak or on_error would say), the process
# carries on, and the module still works afterwards.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use File::Temp qw(tempfile);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# The panic hook prints to the process's stderr: catch it in a file.
my ($fh, $stderr_file) = tempfile(UNLINK => 1);
open my $saved, '>&', \*STDERR or die "dup: $!";
open STDERR, '>&', $fh or die "redirect: $!";
my $result = EV::Websockets::_selftest_panic();
open STDERR, '>&', $saved or die "restore: $!";

like($result, qr/^internal error in EV::Websockets \(please report it\): ews_selftest_panic: a deliberate panic$/,
    'the panic came back as the guard\'s fixed message');
like(slurp($stderr_file), qr/a deliberate panic/, 'the panic message was printed');

my $ctx  = EV::Websockets::Context->new(proxy => '');
my $port = echo_server($ctx);
my $got;
my $conn = $ctx->connect(
    url        => "ws://127.0.0.1:$port/",
    on_connect => sub { $_[0]->send('after the panic') },
    on_message => sub { $got = $_[1]; $_[0]->close },
);
run_until(sub { defined $got }, 5);
is($got, 'after the panic', 'the module still works');

done_testing;
