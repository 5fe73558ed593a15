# Proves: eg/cluster.pl serves one port from two worker processes sharing
# their topic through Redis: a message sent to either worker reaches the
# clients of both, once; SIGTERM stops the workers gracefully (clients
# closed with 1001) and the example exits 0.
# POD: README.pod, "EXAMPLES"; EV::Websockets, "Topics across processes
# (Redis)".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use EV;
use EV::Websockets;
use TestWS qw(run_until);
use RedisServer;
use Example;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $redis = RedisServer->start;
my $ex = Example->start('eg/cluster.pl', '--port', 0, '--workers', 2, '--redis', $redis->url);
my $port = $ex->port or diag $ex->output;
ok $port, 'both workers listen and are bridged';

# Clients until both workers have some (the kernel spreads them; bounded).
my $ctx = EV::Websockets::Context->new;
my (@clients, %by_worker);
while (keys %by_worker < 2 && @clients < 40) {
    my $c = { got => [] };
    $c->{conn} = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_message => sub { push @{ $c->{got} }, $_[1] },
        on_close   => sub { $c->{close} = $_[1] },
    );
    run_until(sub { @{ $c->{got} } }, 5);
    my ($pid) = ($c->{got}[0] // '') =~ /^\* worker (\d+) welcomes you$/ or last;
    $c->{worker} = $pid;
    push @{ $by_worker{$pid} }, $c;
    push @clients, $c;
}
is scalar(keys %by_worker), 2, 'clients on both workers (' . @clients . ' clients)';

my ($one) = values %by_worker;
$one->[0]{conn}->send('hello all');
ok run_until(sub { !grep { @{ $_->{got} } < 2 } @clients }, 10), 'every client got the message';
my $from = $one->[0]{worker};
is_deeply [ map { [ @{ $_->{got} }[1 .. $#{ $_->{got} }] ] } @clients ],
    [ map { ["<$from> hello all"] } @clients ], 'once each, named after the worker it came through';

$ex->signal('TERM');
ok run_until(sub { !grep { !defined $_->{close} } @clients }, 10), 'the clients are closed';
is_deeply [ grep { $_ != 1001 } map { $_->{close} } @clients ], [], 'with 1001';
is $ex->wait_exit, 0, 'exits 0';
like $ex->output, qr/^all workers stopped$/m, 'after its workers';
unlike $ex->output, qr/warn|redis:/i, 'without a warning';
done_testing;
