# A child perl of t/lifecycle/teardown-orders.t: $ctx->DESTROY called through a
# weak reference, while the only strong reference to the context is held
# by what its own callbacks capture.  Freeing the callbacks (part of the
# destruction) frees the context object in the middle of DESTROY.
#
#   perl -Mblib t/bin/teardown/destroy-via-weak-ref.pl <listener|connection>
#
# Prints "<case> ok" and exits 0 when it survives.
use strict;
use warnings;
use EV;
use EV::Websockets;
use Scalar::Util qw(weaken);

$| = 1;
delete @ENV{qw(https_proxy http_proxy all_proxy HTTPS_PROXY HTTP_PROXY ALL_PROXY)};
my $guard = EV::timer(5, 0, sub { print "timeout\n"; exit 99 });

my ($case) = @ARGV;
my $peer = EV::Websockets::Context->new;    # the other end, for 'connection'
my $peer_port = $peer->listen(port => 0, host => '127.0.0.1');

my $weak;
{
    my $app = {};
    my $ctx = $app->{ctx} = EV::Websockets::Context->new;
    if ($case eq 'listener') {
        # two listeners, so that DESTROY goes on after freeing the first
        $ctx->listen(port => 0, host => '127.0.0.1', on_message => sub { $app }) for 1, 2;
    }
    elsif ($case eq 'connection') {
        my $up = 0;
        $ctx->connect(url => "ws://127.0.0.1:$peer_port/", on_connect => sub { $up++ }, on_close => sub { $app })
            for 1, 2;
        my $check = EV::prepare(sub { EV::break if $up == 2 });
        EV::run;
    }
    else {
        die "unknown case '$case'\n";
    }
    weaken($weak = $ctx);
}
die "the context is gone too early\n" unless $weak;
$weak->DESTROY;
print "$case ok\n";
