# Proves: the bridge logs in with the URL's password (AUTH), and reports a
# refused password or a missing one through on_error, retrying; it picks
# the URL's database (messages cross databases: Redis pub/sub is
# server-wide); a host given by name is resolved off the loop, each of
# its addresses tried in turn (localhost: ::1, then 127.0.0.1).
# POD: EV::Websockets, "pubsub".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use EV;
use EV::Websockets;
use TestWS qw(run_until);
use RedisServer;

my $guard = EV::timer(30, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $redis = RedisServer->start('--requirepass', 's3cret');
my $port  = $redis->port;

sub bridge {
    my ($url) = @_;
    my %r = (up => 0, errors => []);
    $r{ctx} = EV::Websockets::Context->new(pubsub => {
        redis      => $url,
        on_connect => sub { $r{up}++ },
        on_error   => sub { push @{ $r{errors} }, $_[1] },
    });
    return \%r;
}

my $wrong = bridge("redis://:nope\@127.0.0.1:$port");
my $none  = bridge("redis://127.0.0.1:$port");
my $right = bridge("redis://:s3cret\@127.0.0.1:$port/3");
my $named = bridge("redis://:s3cret\@localhost:$port");
ok run_until(sub { @{ $wrong->{errors} } >= 2 && @{ $none->{errors} } && $right->{up} && $named->{up} }, 15),
    'each one told';
like $wrong->{errors}[0], qr/^Redis AUTH failed: WRONGPASS/, 'a wrong password: ' . $wrong->{errors}[0];
is $wrong->{errors}[1], $wrong->{errors}[0], '... retried, told again';
like $none->{errors}[0], qr/^Redis PING failed: NOAUTH/, 'no password: ' . $none->{errors}[0];
is $wrong->{up} + $none->{up}, 0, 'neither connected';
is_deeply $right->{errors}, [], 'the right password, database 3: connected';
is_deeply $named->{errors}, [], 'localhost resolved, an address that answers found';

# a publish through the one in database 3 reaches a subscriber of the other
my $got;
my $port_ws = $named->{ctx}->listen(port => 0, host => '127.0.0.1',
    on_connect => sub { $_[0]->subscribe('news'); $_[0]->send('ready') });
my $client = EV::Websockets::Context->new;
my $ready;
my $conn = $client->connect(url => "ws://127.0.0.1:$port_ws/",
    on_message => sub { $_[1] eq 'ready' ? $ready = 1 : ($got = $_[1]) });
ok run_until(sub { $ready }, 10), 'a subscriber';
is $named->{ctx}->pubsub_stats->{channels}, 1, 'subscribed';
# the SUBSCRIBE may still be on its way: publish until it is heard
my $tries = 0;
my $pub = EV::timer(0, 0.05, sub { $right->{ctx}->publish(news => 'hello') if $tries++ < 100 });
ok run_until(sub { defined $got }, 10), 'a message across the two';
is $got, 'hello', '... intact';
done_testing;
