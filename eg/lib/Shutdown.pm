package Shutdown;

# Graceful shutdown on Ctrl-C (SIGINT) or SIGTERM for the servers in eg/.
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
#   $ctx->listen(
#       ...,
#       on_handshake => sub { return !$shutdown->stopping },    # refuse late clients
#       on_close     => sub { ...; $shutdown->closed },         # last
#   );
#   EV::run;
#   undef $ctx;    # closes the listening socket
#
# The first signal:
# 1. calls on_stop with the open connections: the place to stop taking new
#    clients (an accepting watcher of another library) or to say goodbye to
#    everybody before the close;
# 2. prints "shutting down, closing N connection(s)" (unless quiet);
# 3. closes every open connection with 1001 ("going away", RFC 6455 7.4.1)
#    and the reason given.  close() sends the close frame after anything
#    still queued and waits for the peer's answer; then on_close fires;
# 4. leaves the loop (EV::break) as soon as the last connection is gone,
#    which $shutdown->closed in on_close notices, or after `grace` seconds,
#    whichever comes first.  With no connection open it leaves at once.
# A second signal leaves at once: somebody is in a hurry.
#
# The object holds its context weakly, so that `undef $ctx` after EV::run
# still destroys the context (and closes the listening socket) however many
# callbacks refer to $shutdown.  The signal watchers' closures hold the
# object weakly too: the callbacks that call $shutdown->closed keep it
# alive, and nothing of it keeps itself alive.  eg/graceful_shutdown.pl
# spells all of this out step by step, without this module.

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

# Call at the end of on_close: leaves the loop if we are stopping and that
# was the last connection (the one closing is no longer listed).
sub closed {
    my ($self) = @_;
    return unless $self->{stopping};
    EV::break unless $self->_open;
}

# The context's open connections (none once it is gone).
sub _open {
    my ($self) = @_;
    return $self->{ctx} ? $self->{ctx}->connections : ();
}

sub _signal {
    my ($self) = @_;
    return EV::break if $self->{stopping}++;    # second signal: leave now
    my @open = $self->_open;
    $self->{on_stop}->(@open) if $self->{on_stop};
    print "shutting down, closing ", scalar(@open), " connection(s)\n" unless $self->{quiet};
    return EV::break unless @open;
    $_->close(1001, $self->{reason}) for @open;    # a closing one ignores it
    # The bound on the wait: a peer that never answers must not keep us.
    $self->{give_up} = EV::timer($self->{grace}, 0, sub { EV::break });
}

1;
