# Proves: while a context is destroyed, DESTROYs of stashed objects find every
# socket closed and can restart nothing.
# POD: EV::Websockets, "Destroying a context" and "Perl code at the boundary".
#
# Destroying a context while Perl objects kept in its connections' stashes
# act from their DESTROY: a chat server's session objects send a goodbye
# on, or close, other connections of the same context.  Every socket and watcher is gone before any Perl value is
# released, so those calls croak "Connection is not open" (or the context
# croaks "Context has been destroyed"), nothing restarts a watcher, and
# the loop runs on.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# A session kept in a connection's stash: its DESTROY calls $method on the
# connection it holds and records the outcome.
package Session {
    sub new { my ($class, %self) = @_; return bless {%self}, $class }
    sub DESTROY {
        my ($self) = @_;
        return if ${^GLOBAL_PHASE} eq 'DESTRUCT';
        local $@;
        my $method = $self->{method};
        my $ok = eval { $self->{target}->$method(@{ $self->{args} || [] }); 1 };
        push @{ $self->{log} }, $ok ? "$method returned" : "$method croaked: " . ($@ =~ s/ at .*//sr);
    }
}

# A context with a listener and $n connected clients; returns the context,
# the server side's connections (in accept order) and the clients.
sub open_context {
    my ($n) = @_;
    my $ctx = EV::Websockets::Context->new(proxy => '');
    my @server;
    my $port = $ctx->listen(port => 0, host => '127.0.0.1', on_connect => sub { push @server, $_[0] });
    my @clients = map { $ctx->connect(url => "ws://127.0.0.1:$port/") } 1 .. $n;
    run_until(sub { @server == $n && !grep { !$_->is_connected } @clients }, 3) or die 'no connections';
    return ($ctx, \@server, \@clients);
}

# The loop still runs: a timer fires.
sub loop_runs {
    my $fired;
    my $t = EV::timer(0.01, 0, sub { $fired = 1 });
    return run_until(sub { $fired }, 2);
}

my %calls = (
    send  => ['bye'],
    close => [1001, 'server going away'],
    send_ping   => [],
    pause_recv  => [],
    resume_recv => [],
);

for my $method (sort keys %calls) {
    for my $direction ('to older', 'to newer') {
        my ($ctx, $server, $clients) = open_context(4);
        my @log;
        # each server connection's session holds the next one, so that the
        # only references to each (but the first) are in a session
        my @order = $direction eq 'to older' ? reverse(@$server) : @$server;
        for my $i (0 .. $#order - 1) {
            $order[$i]->stash->{session} =
                Session->new(target => $order[$i + 1], method => $method, args => $calls{$method}, log => \@log);
        }
        @order = ();
        @$server = ();
        @$clients = ();
        undef $ctx;
        is(scalar @log, 3, "$method, $direction: every session's DESTROY ran");
        my @bad = grep { !/^$method (?:returned|croaked: Connection is not open)$/ } @log;
        is_deeply(\@bad, [], '... and each call returned or croaked "Connection is not open"');
        ok(loop_runs(), '... and the loop runs on');
    }
}

subtest 'a DESTROY that uses the context being destroyed' => sub {
    my ($ctx, $server, $clients) = open_context(2);
    my @log;
    $server->[0]->stash->{a} = Session->new(target => $ctx, method => 'connect',
        args => [ url => 'ws://127.0.0.1:1/' ], log => \@log);
    $server->[0]->stash->{b} = Session->new(target => $ctx, method => 'listen',
        args => [ port => 0, host => '127.0.0.1' ], log => \@log);
    $server->[0]->stash->{c} = Session->new(target => $ctx, method => 'connections', log => \@log);
    @$server = ();
    $ctx->DESTROY;    # the sessions hold the context: destroy it explicitly
    is_deeply([ sort @log ], [
        'connect croaked: Context has been destroyed',
        'connections returned',
        'listen croaked: Context has been destroyed',
    ], 'methods on the context croak "Context has been destroyed" (connections lists none)');
    is(scalar(() = $ctx->connections), 0, 'no connection is left in it');
    ok(loop_runs(), 'the loop runs on');
};

done_testing;
