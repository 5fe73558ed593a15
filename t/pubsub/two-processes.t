# Proves: with pubsub, a publish in one process reaches the subscribers of
# another through a real Redis, exactly once, text and binary kept apart;
# a raw payload from another publisher arrives as text if UTF-8, else as
# binary; each process SUBSCRIBEs to a topic's channel only while it has
# local subscribers (unsubscribe and closed connections end it).
# POD: EV::Websockets, "pubsub", "pubsub_stats", "Topics across processes
# (Redis)".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use EV;
use EV::Websockets;
use File::Temp qw(tempdir);
use JSON::PP ();
use TestWS qw(run_until start_printed_server stop_daemon);
use RedisServer;
use PubsubNode;

my $guard = EV::timer(40, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $redis = RedisServer->start;
my $dir   = tempdir(CLEANUP => 1);
my ($child, $child_port) = start_printed_server($dir,
    [ $^X, '-Iblib/lib', '-Iblib/arch', '-It/lib', 't/bin/pubsub-node.pl', $redis->url ],
    'pubsub-node.pl');
ok $child_port, 'the other process is up and bridged';
my $node = PubsubNode->new(redis => $redis->url);
ok run_until(sub { $node->connects }, 10), 'this process is bridged';

# Clients of both: each records the published messages it gets, and the
# replies to its commands.
my $clients = EV::Websockets::Context->new;
my %c;
for my $name (qw(here1 here2 there1 there2)) {
    my $port = $name =~ /^here/ ? $node->port : $child_port;
    my $rec = $c{$name} = { got => [], replies => [] };
    $rec->{conn} = $clients->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $rec->{open} = 1 },
        on_message => sub {
            my (undef, $data, $binary) = @_;
            if (!$binary && $data =~ /\A(ok|stats|unknown)\b/) { push @{ $rec->{replies} }, $data }
            else { push @{ $rec->{got} }, [ $data, $binary ? 1 : 0 ] }
        },
        on_close => sub { $rec->{closed} = 1 },
    );
}
ok run_until(sub { 4 == grep { $_->{open} } values %c }, 10), 'four clients open';

# Send a command and wait for its reply.
sub ask {
    my ($name, $cmd) = @_;
    my $rec = $c{$name};
    my $n = @{ $rec->{replies} };
    $rec->{conn}->send($cmd);
    run_until(sub { @{ $rec->{replies} } > $n }, 10) or return undef;
    return $rec->{replies}[-1];
}

sub numsub { $redis->command('PUBSUB', 'NUMSUB', "test:$_[0]")->[1] }

# Wait (polling Redis between loop runs) until $cond holds.
sub redis_until {
    my ($cond) = @_;
    my $poll = EV::timer(0.02, 0.02, sub {});
    return run_until($cond, 10);
}

sub stats { my $s = ask($_[0], 'stats') // return {}; JSON::PP::decode_json(substr $s, 6) }

is numsub('news'), 0, 'no process is subscribed yet';
is ask($_, 'sub news'), 'ok', "$_ subscribes" for sort keys %c;
ok redis_until(sub { numsub('news') == 2 }), 'one SUBSCRIBE per process, not per client';
is stats('here1')->{channels}, 1, 'channels: 1 here';
is stats('there1')->{channels}, 1, '... and there';

# Publish from $from, then a marker from the same publisher: order is kept
# per publisher, so once every client has the marker, a duplicate of the
# message would have come before it.
sub publish_everywhere {
    my ($from, $cmd, $data, $binary, $what) = @_;
    is ask($from, "$cmd news $data"), 'ok 2', "$what: queued on the 2 local subscribers";
    ask($from, 'pub news marker');
    ok run_until(sub { 4 == grep { grep { $_->[0] eq 'marker' } @{ $_->{got} } } values %c }, 10),
        "$what: everyone got the marker";
    for my $name (sort keys %c) {
        my @got = grep { $_->[0] ne 'marker' } @{ $c{$name}{got} };
        is_deeply \@got, [ [ $data, $binary ] ], "$what: $name got it once";
        $c{$name}{got} = [];
    }
}
publish_everywhere('here1', 'pub', 'hello from here', 0, 'from this process');
publish_everywhere('there2', 'pub', 'hello from there', 0, 'from the other');
publish_everywhere('there1', 'bin', "\x00\x01bin", 1, 'binary');
my $here = stats('here1');
is $here->{received}, 4, 'received: the other process\'s 2 messages and 2 markers';
is $here->{dropped}, 0, 'nothing dropped';

subtest 'a raw payload from another publisher' => sub {
    is $redis->command('PUBLISH', 'test:news', 'plain text'), 2, 'Redis delivered it to both processes';
    is $redis->command('PUBLISH', 'test:news', "\xff\xfe"), 2, 'and a non-UTF-8 one';
    ok run_until(sub { 4 == grep { @{ $_->{got} } == 2 } values %c }, 10), 'everyone got both';
    is_deeply $c{$_}{got}, [ [ 'plain text', 0 ], [ "\xff\xfe", 1 ] ], "$_: text, then binary"
        for sort keys %c;
};

subtest 'subscribed only while local subscribers exist' => sub {
    is ask('there1', 'unsub news'), 'ok', 'one of two leaves';
    is numsub('news'), 2, 'the other still holds the channel';
    is ask('there2', 'unsub news'), 'ok', 'the last one leaves';
    ok redis_until(sub { numsub('news') == 1 }), 'that process UNSUBSCRIBEd';
    is stats('there1')->{channels}, 0, 'channels: 0 there';
    $c{here1}{conn}->close;
    $c{here2}{conn}->close;
    ok run_until(sub { $c{here1}{closed} && $c{here2}{closed} }, 10), 'the subscribers here close';
    ok redis_until(sub { numsub('news') == 0 }), 'closing the last one UNSUBSCRIBEd';
    is $node->ctx->pubsub_stats->{channels}, 0, 'channels: 0 here';
    is ask('there1', 'sub sport'), 'ok', 'a new topic';
    ok redis_until(sub { numsub('sport') == 1 }), 'SUBSCRIBEd again for it';
};

ok defined stop_daemon($child), 'the other process stops';
is_deeply $node->errors, [], 'no bridge error here';
done_testing;
