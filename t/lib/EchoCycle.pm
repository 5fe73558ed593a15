package EchoCycle;

# One client echo cycle, shared by the leak test (t/lifecycle/no-leaks.t) and the
# soak test (xt/soak.t): connect, send one message once connected, close
# (1000) when it comes back, and report how the cycle ended.
#
#   echo_cycle($ctx, "ws://127.0.0.1:$port/", sub { my ($ok) = @_; ... },
#       message => 'hello', %connect_options);
#
# $done->($ok) is called exactly once: from on_close ($ok true when the
# echo matched and the close code is 1000) or from on_error ($ok false).
# The callbacks capture nothing but the cycle's own flag, $done and the
# message, so a cycle leaves nothing behind once the connection is gone.
# Returns the connection; the caller may drop it at once (the connection
# does not close when its Perl object goes away).

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(echo_cycle);

sub echo_cycle {
    my ($ctx, $url, $done, %opt) = @_;
    my $message = delete $opt{message} // 'echo me';
    my $echoed  = 0;
    return $ctx->connect(
        url        => $url,
        %opt,
        on_connect => sub { $_[0]->send($message) },
        on_message => sub { $echoed = $_[1] eq $message; $_[0]->close(1000) },
        on_close   => sub { $done->($echoed && $_[1] == 1000) },
        on_error   => sub { $done->(0) },
    );
}

1;
