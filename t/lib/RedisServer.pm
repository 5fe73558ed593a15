package RedisServer;

# A redis-server of the tests' own, for the pubsub tests (and the
# cluster benchmark): on a free port of 127.0.0.1, in a temporary
# directory, saving nothing; it can be killed and started again on the
# same port, and is stopped at exit.  Without redis-server the test
# skips, except in CI, which bails out (need_peer).
#
#     my $redis = RedisServer->start;       # waits until it answers PING
#     RedisServer->start('--requirepass', 'pw');    # extra arguments
#     $redis->url;                          # redis://127.0.0.1:PORT
#     $redis->command(qw(PUBSUB NUMSUB ews:news));   # one reply, parsed
#     $redis->stop; $redis->start_again;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use TestWS qw(find_program spawn_daemon stop_daemon closed_port need_peer run_until);

my @running;
END { $_->stop for @running }

sub start {
    my ($class, @extra) = @_;
    my $bin = need_peer('redis-server', find_program('redis-server'),
        'redis-server is not installed (Debian: apt-get install redis-server)');
    my $self = bless {
        bin  => $bin,
        dir  => tempdir('ews-redis-XXXXXX', TMPDIR => 1, CLEANUP => 1),
        port => closed_port(),
        extra => \@extra,
    }, $class;
    $self->start_again;
    push @running, $self;
    return $self;
}

# Start it (again) on its port; dies if it does not answer in 10 s.
sub start_again {
    my ($self) = @_;
    $self->{daemon} = spawn_daemon([
        $self->{bin}, '--port', $self->{port}, '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--dir', $self->{dir}, @{ $self->{extra} },
    ], "$self->{dir}/redis.log");
    my $up;
    # a server with a password answers NOAUTH: up too
    my $probe = EV::timer(0, 0.02, sub {
        $up = 1 if eval { $self->command('PING') eq 'PONG' } || ($@ // '') =~ /NOAUTH/;
    });
    run_until(sub { $up || defined $self->{daemon}{status} }, 10);
    die "redis-server did not come up on port $self->{port}: see $self->{dir}/redis.log\n"
        unless $up;
    return $self;
}

# Kill it (SIGKILL: it goes away as a crashed server does).
sub kill_now {
    my ($self) = @_;
    my $d = $self->{daemon} or return;
    kill 'KILL', $d->{pid};
    run_until(sub { defined $d->{status} }, 5);
    delete $self->{daemon};
}

sub stop {
    my ($self) = @_;
    my $d = delete $self->{daemon} or return;
    stop_daemon($d);
}

sub port { $_[0]{port} }
sub url  { "redis://127.0.0.1:$_[0]{port}" }

# Send one command over a new connection and return its reply: a string,
# a number, or an array ref; dies on an error reply.  Blocking, bounded by
# a 5 s timeout: for checks between loop runs.
sub command {
    my ($self, @args) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp', Timeout => 5,
    ) or die "connect to redis: $!\n";
    $sock->timeout(5);
    my $req = '*' . @args . "\r\n" . join '', map { '$' . length($_) . "\r\n$_\r\n" } @args;
    print {$sock} $req or die "write to redis: $!\n";
    return _reply($sock);
}

sub _reply {
    my ($sock) = @_;
    defined(my $line = <$sock>) or die "redis closed the connection\n";
    $line =~ s/\r\n\z//;
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $type eq '+' || $type eq ':';
    die "redis: $rest\n" if $type eq '-';
    if ($type eq '$') {
        return undef if $rest < 0;
        my $n = read($sock, my $data, $rest + 2);
        return substr($data, 0, $rest);
    }
    return [ map { _reply($sock) } 1 .. $rest ] if $type eq '*';
    die "redis: unexpected reply '$line'\n";
}

1;
