# Proves: the module loads, its two packages have their methods, and contexts
# are made with and without a loop.
# POD: EV::Websockets, "SYNOPSIS", "new" and "EV::Websockets::Connection".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

ok(defined $EV::Websockets::VERSION, '$EV::Websockets::VERSION is defined');
like($EV::Websockets::VERSION, qr/^\d+\.\d+/, '... and looks like a version number');

for my $method (qw(new connect listen connections DESTROY)) {
    ok(EV::Websockets::Context->can($method), "EV::Websockets::Context can $method");
}
for my $method (qw(send send_binary close state is_connected is_connecting stash DESTROY)) {
    ok(EV::Websockets::Connection->can($method), "EV::Websockets::Connection can $method");
}
ok(defined &EV::Websockets::_set_debug, 'EV::Websockets::_set_debug exists');

{
    my $ctx = EV::Websockets::Context->new;
    isa_ok($ctx, 'EV::Websockets::Context', 'new() with no arguments');
}

{
    my $ctx = EV::Websockets::Context->new(loop => EV::default_loop);
    isa_ok($ctx, 'EV::Websockets::Context', 'new(loop => EV::default_loop)');
}

{
    my $loop = EV::Loop->new;
    my $ctx  = EV::Websockets::Context->new(loop => $loop);
    isa_ok($ctx, 'EV::Websockets::Context', 'new(loop => EV::Loop->new)');
    undef $ctx;
    pass('context on a private loop destroyed before its loop');
}

for my $case (['a string', 'junk'], ['a hash ref', {}], ['an object of another class', bless({}, 'Foo')]) {
    my ($what, $loop) = @$case;
    my $ok = eval { EV::Websockets::Context->new(loop => $loop); 1 };
    ok(!$ok, "new(loop => $what) croaks");
    like($@, qr/EV::Loop/, '... with a message naming EV::Loop');
}

# Contexts can be created and thrown away repeatedly.
{
    my $n = 0;
    for (1 .. 20) {
        my $ctx = EV::Websockets::Context->new;
        $n++ if $ctx;
    }
    is($n, 20, 'twenty contexts created and destroyed in a row');
}

done_testing;
