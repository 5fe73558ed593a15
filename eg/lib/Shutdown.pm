package Shutdown;

# Ctrl-C (SIGINT) or SIGTERM for the servers in eg/: $ctx->shutdown, then
# leave the loop.
#
#   use FindBin;
#   use lib "$FindBin::Bin/lib";
#   use Shutdown;
#
#   my $ctx = EV::Websockets::Context->new;
#   my $shutdown = Shutdown->on_signals($ctx, 'server shutting down',
#       grace   => 2,                     # seconds to wait at most (default 2)
#       on_stop => sub { my @open = @_; ... },    # optional, see below
#       quiet   => 1,                     # optional: print nothing
#   );
#   $ctx->listen(...);
#   EV::run;
#   undef $ctx;
#
# The first signal:
# 1. calls on_stop with the open connections: the place to stop taking new
#    clients elsewhere (an accepting watcher of another library) or to say
#    goodbye to everybody before the close;
# 2. prints "shutting down, closing N connection(s)" (unless quiet);
# 3. calls $ctx->shutdown with 1001 ("going away", RFC 6455 7.4.1), the
#    reason given and `grace` as its timeout: the listening sockets close,
#    every open connection is closed, and its cb leaves the loop
#    (EV::break) once the last connection is gone, or after `grace`
#    seconds, when the ones that have not answered are dropped.
# A second signal leaves at once: somebody is in a hurry.  stopping() tells
# whether a signal came (the context croaks on adopt from then on).
#
# The object holds its context weakly, so that `undef $ctx` after EV::run
# still destroys the context however many callbacks refer to $shutdown;
# the signal watchers' closures hold the object weakly too.

use strict;
use warnings;

use EV;
use Scalar::Util qw(weaken);

sub on_signals {
    my ($class, $ctx, $reason, %opt) = @_;
    my $self = bless {
        ctx      => $ctx,
        reason   => $reason,
        grace    => $opt{grace} // 2,
        on_stop  => $opt{on_stop},
        quiet    => $opt{quiet},
        stopping => 0,
    }, $class;
    weaken($self->{ctx});    # the program owns the context, not us

    weaken(my $weak = $self);
    $self->{signals} = [ map { EV::signal($_, sub { $weak->_signal if $weak }) } qw(INT TERM) ];
    return $self;
}

# True once a signal came.
sub stopping { return $_[0]{stopping} }

sub _signal {
    my ($self) = @_;
    return EV::break if $self->{stopping}++;    # second signal: leave now
    my $ctx = $self->{ctx} or return EV::break;
    my @open = $ctx->connections;
    $self->{on_stop}->(@open) if $self->{on_stop};
    print "shutting down, closing ", scalar(@open), " connection(s)\n" unless $self->{quiet};
    $ctx->shutdown(
        code    => 1001,
        reason  => $self->{reason},
        timeout => $self->{grace},
        cb      => sub { EV::break },
    );
}

1;
