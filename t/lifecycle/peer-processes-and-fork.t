# Proves: a send from on_drain to a reader in another process does not starve
# the loop; a forked child's exit leaves the parent alone.
# POD: EV::Websockets, "fork" and "on_drain".
#
# Regressions with a peer in another process: a send from on_drain to a
# fast reader must not starve the event loop, and a forked child's normal
# exit must leave the parent's connections alone.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use POSIX ();

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

# A WebSocket server in a separate process (this perl, same @INC) on
# 127.0.0.1: 'echo' sends each message back, 'sink' discards them.  It
# exits after $life seconds at the latest.  Returns ($pid, $port, $fh).
sub server_process {
    my ($kind, $life) = @_;
    my $code = <<'EOC';
use strict; use warnings; use EV; use EV::Websockets;
my ($kind, $life) = @ARGV;
$| = 1;
my $ctx  = EV::Websockets::Context->new;
my $port = $ctx->listen(port => 0, host => '127.0.0.1',
    on_message => $kind eq 'echo' ? sub { $_[0]->send($_[1]) } : sub { });
print "$port\n";
my $t = EV::timer($life, 0, sub { EV::break });
EV::run;
EOC
    my $pid = open(my $out, '-|') // die "fork: $!";
    if (!$pid) {
        exec($^X, (map { "-I$_" } grep { !ref } @INC), '-e', $code, $kind, $life) or POSIX::_exit(127);
    }
    my $port = <$out>;
    die "the $kind server did not start\n" unless defined $port && $port =~ /^(\d+)$/;
    return ($pid, $1, $out);
}

sub stop_process {
    my ($pid, $out) = @_;
    kill 'TERM', $pid;
    close $out;    # waits for it
}

subtest 'a send from on_drain does not starve the loop' => sub {
    my ($pid, $port, $out) = server_process(sink => 4);
    my $ctx   = EV::Websockets::Context->new;
    my $chunk = 'x' x 64;
    my ($stop, $sent) = (0, 0);
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_drain   => sub { return if $stop; $_[0]->send($chunk); $sent++ },
        on_close   => sub { $stop = 1 },
        on_error   => sub { $stop = 1 },
    );
    ok(run_until(sub { $conn->is_connected }, 3), 'connected to the server process');

    # Each drain sends the next message; a timer ends the stream.
    EV::now_update;
    my $t0 = EV::time;
    my $fired;
    my $timer = EV::timer(0.2, 0, sub { $fired = EV::time; $stop = 1 });
    $conn->send($chunk);
    run_until(sub { $stop }, 3);
    ok(defined $fired, 'a 0.2 s timer fired while the producer ran');
    cmp_ok(($fired // 99) - $t0, '<', 0.5, '... within 0.5 s') or diag(sprintf 'after %.2f s', ($fired // 99) - $t0);
    cmp_ok($sent, '>', 50, "the producer sent from on_drain meanwhile ($sent messages)");
    is($conn->state, 'connected', 'still connected');

    $conn->close;
    run_until(sub { $conn->state eq 'closed' }, 2);
    stop_process($pid, $out);
};

subtest "a forked child's exit leaves the parent's connections alone" => sub {
    my ($pid, $port, $out) = server_process(echo => 6);

    # A connection to the other process, and a pair within this one.
    my (%ev, %ev_local, %ev_server);
    my $ctx  = EV::Websockets::Context->new;
    my $conn = $ctx->connect(url => "ws://127.0.0.1:$port/", recording(\%ev));

    my $lctx   = EV::Websockets::Context->new;
    my $lport  = $lctx->listen(port => 0, host => '127.0.0.1',
        recording(\%ev_server, on_message => sub { $_[0]->send($_[1]) }));
    my $lconn  = $lctx->connect(url => "ws://127.0.0.1:$lport/", recording(\%ev_local));
    ok(run_until(sub { $ev{connect} && $ev_local{connect} && $ev_server{connect} }, 3), 'all connected');

    my $round = 0;
    for my $how ('exits', 'destroys its objects, then exits') {
        $round++;
        my $child = fork // die "fork: $!";
        if (!$child) {
            if ($how ne 'exits') {
                undef $conn;
                undef $lconn;
                undef $ctx;
                undef $lctx;
            }
            exit 0;    # a normal exit: END blocks, global destruction
        }
        waitpid($child, 0);
        is($?, 0, "the child $how");

        $conn->send("remote $round")  if $conn->is_connected;
        $lconn->send("local $round") if $lconn->is_connected;
        ok(run_until(sub { @{ $ev{message} || [] } >= $round && @{ $ev_local{message} || [] } >= $round }, 3),
            '... both connections still echo');
        is_deeply([ map { $_->[0] } @{ $ev{message} || [] } ], [ map { "remote $_" } 1 .. $round ], '... remote messages');
        is_deeply([ map { $_->[0] } @{ $ev_local{message} || [] } ], [ map { "local $_" } 1 .. $round ], '... local messages');
        is_deeply([ grep { $_ eq 'close' || $_ eq 'error' } map { @{ $_->{order} || [] } } \%ev, \%ev_local, \%ev_server ],
            [], '... no close or error anywhere');
    }

    $_->close for $conn, $lconn;
    ok(run_until(sub { $ev{close} && $ev_local{close} && $ev_server{close} }, 3), 'the parent closes them normally');
    is($ev{close}[0][0], 1000, '... 1000');
    stop_process($pid, $out);
};

is_deeply(\@warnings, [], 'no warnings') or diag(explain(\@warnings));
done_testing;
