# Proves: every callback gets the very object the user holds, and a connection
# whose object was dropped stays open.
# POD: EV::Websockets, "EV::Websockets::Connection" and "stash".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use Scalar::Util qw(weaken);
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

subtest 'callbacks receive the object the user holds' => sub {
    my $ctx = EV::Websockets::Context->new;
    my $wctx = $ctx;    # weak, so the callbacks do not keep the context alive
    weaken($wctx);

    my ($server_conn, @server_same, %server_keys, $server_closed);
    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub {
            $server_conn = $_[0];    # the user keeps it
            $server_keys{"$_[0]"}++;
        },
        on_message => sub {
            my ($c, $data) = @_;
            push @server_same, [ 'on_message', $c == $server_conn, "$c" eq "$server_conn" ];
            $server_keys{"$c"}++;
            $c->send($data);
        },
        on_close => sub {
            my ($c) = @_;
            push @server_same, [ 'on_close', $c == $server_conn, "$c" eq "$server_conn" ];
            $server_keys{"$c"}++;
            $server_closed++;
        },
    );

    my (@client_same, %client_keys, $client_closed, $listed, $echoes);
    my $conn;
    $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c) = @_;
            push @client_same, [ 'on_connect', $c == $conn, "$c" eq "$conn" ];
            $client_keys{"$c"}++;
            $c->send('one');
            $c->send('two');
        },
        on_message => sub {
            my ($c) = @_;
            push @client_same, [ 'on_message', $c == $conn, "$c" eq "$conn" ];
            $client_keys{"$c"}++;
            $listed = grep { $_ == $conn } $wctx->connections;
            $c->close if ++$echoes == 2;
        },
        on_close => sub {
            my ($c) = @_;
            push @client_same, [ 'on_close', $c == $conn, "$c" eq "$conn" ];
            $client_keys{"$c"}++;
            $client_closed++;
        },
    );
    my $str = "$conn";

    ok(run_until(sub { $client_closed && $server_closed }, 5), 'exchange finished');

    is(scalar @client_same, 4, 'client callbacks: on_connect, 2 x on_message, on_close');
    for my $r (@client_same) {
        my ($cb, $same_ref, $same_str) = @$r;
        ok($same_ref, "client $cb gets the object returned by connect (==)");
        ok($same_str, "client $cb gets the object returned by connect (stringified)");
    }
    is_deeply([ keys %client_keys ], [$str], 'one stable key for the client across callbacks');
    is("$conn", $str, 'the returned object stringifies the same at the end');
    is($listed, 1, 'connections returns the same object the user holds');

    is(scalar @server_same, 3, 'server callbacks: 2 x on_message, on_close');
    for my $r (@server_same) {
        my ($cb, $same_ref, $same_str) = @$r;
        ok($same_ref, "server $cb gets the object seen in on_connect (==)");
        ok($same_str, "server $cb gets the object seen in on_connect (stringified)");
    }
    is(scalar keys %server_keys, 1, 'one stable key for the server connection across callbacks');
    undef $_ for $conn, $server_conn;
};

subtest 'a connection whose object was dropped stays open' => sub {
    my $ctx = EV::Websockets::Context->new;

    my ($server_conn, $sender, $server_closed);
    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub {
            $server_conn = $_[0];
            # Send three messages spread out over time, so the client is idle
            # (with no Perl reference held) between deliveries.
            my $n = 0;
            $sender = EV::timer(0.1, 0.1, sub {
                $server_conn->send('msg' . ++$n);
                undef $sender if $n == 3;
            });
        },
        on_message => sub { },
        on_close   => sub { $server_closed++ },
    );

    my (@got, @stash_seen, $client_closed, $close_stash, @errors);
    # The return value is deliberately thrown away.
    $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->stash->{k} = 'v' },
        on_message => sub {
            my ($c, $data) = @_;
            push @got, $data;
            push @stash_seen, $c->stash->{k};
            $c->close(1000) if @got == 3;
        },
        on_close => sub {
            $close_stash = $_[0]->stash->{k};
            $client_closed++;
        },
        on_error => sub { push @errors, $_[1] },
    );

    ok(run_until(sub { $client_closed && $server_closed }, 5), 'exchange finished');
    is_deeply(\@got, [qw(msg1 msg2 msg3)], 'all three messages delivered to the dropped connection');
    is_deeply(\@stash_seen, [qw(v v v)], 'stash set in on_connect is seen in every on_message');
    is($close_stash, 'v', '... and in on_close');
    is_deeply(\@errors, [], 'no errors');
    undef $server_conn;
};

done_testing;
