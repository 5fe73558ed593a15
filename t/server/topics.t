# Proves: subscribe/unsubscribe/topics, and publish's fan-out from the
# context and from a connection: one copy per open subscriber, the sender
# left out, closing and closed connections skipped, compressed and masked
# recipients decoding it.
# POD: EV::Websockets, "Topics (publish and subscribe)", "subscribe",
# "unsubscribe", "topics", "publish", "subscribers".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;

my $guard = EV::timer(20, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# A server with $n clients of its own; returns ($ctx, \@server_conns,
# \@client_conns, \%got) once all are open.  $got{$i} collects
# [data, is_binary] per client.
sub setup {
    my (%a) = @_;
    my $n   = $a{n} // 1;
    my $ctx = EV::Websockets::Context->new;
    my (@srv, @cli, %got);
    my ($ids, $open) = (0, 0);
    my $port = $ctx->listen(
        port => 0, host => '127.0.0.1',
        ($a{listen} ? %{ $a{listen} } : ()),
        on_message => sub {
            my ($c, $msg) = @_;
            if ($msg =~ /^id:(\d+)$/) { $srv[$1] = $c; EV::break if ++$ids == $n; return }
            $a{server_message}->(@_) if $a{server_message};
        },
    );
    for my $i (0 .. $n - 1) {
        my $c;
        $c = $ctx->connect(
            url => "ws://127.0.0.1:$port/",
            ($a{connect} ? %{ $a{connect} } : ()),
            on_connect => sub { $cli[$i] = $c; $c->send("id:$i") },
            on_message => sub { push @{ $got{$i} }, [ $_[1], $_[2] ] },
        );
    }
    EV::run;
    # $srv->[$i] is the server's side of client $i
    return ($ctx, \@srv, \@cli, \%got);
}

# Run the loop until $cond is true (the guard bounds it).
sub run_until {
    my ($cond) = @_;
    my $w = EV::check(sub { EV::break if $cond->() });
    my $t = EV::timer(0.01, 0.01, sub { EV::break if $cond->() });
    EV::run unless $cond->();
}

subtest 'subscribe, unsubscribe, topics' => sub {
    my ($ctx, $srv) = setup();
    my $c = $srv->[0];
    ok $c->subscribe('news'), 'newly subscribed';
    ok !$c->subscribe('news'), 'already subscribed';
    ok $c->subscribe("b\0in"), 'a byte-string topic';
    is_deeply [ $c->topics ], [ 'news', "b\0in" ], 'topics in order';
    is scalar($c->topics), 2, 'scalar context: the count';
    is $ctx->subscribers('news'), 1, 'one subscriber';
    ok $c->unsubscribe('news'), 'was subscribed';
    ok !$c->unsubscribe('news'), 'no longer';
    ok !$c->unsubscribe('never'), 'never was';
    is $ctx->subscribers('news'), 0, 'none left';
    is_deeply [ $c->topics ], ["b\0in"], 'the other stays';
    $ctx->DESTROY;
};

subtest 'publish to 50 clients: one copy each, binary flag' => sub {
    my ($ctx, $srv, $cli, $got) = setup(n => 50);
    $_->subscribe('all') for @$srv;
    is $ctx->subscribers('all'), 50, '50 subscribers';
    is $ctx->publish('all', 'hello'), 50, 'queued for 50';
    is $ctx->publish('all', "\xff\x00", binary => 1), 50, 'binary queued for 50';
    is $ctx->publish('nobody', 'x'), 0, 'no subscribers: 0';
    run_until(sub { 50 == grep { @{ $got->{$_} // [] } == 2 } 0 .. 49 });
    is scalar(grep { $got->{$_}[0][0] eq 'hello' && !$got->{$_}[0][1] } 0 .. 49), 50, 'text, once each';
    is scalar(grep { $got->{$_}[1][0] eq "\xff\x00" && $got->{$_}[1][1] } 0 .. 49), 50, 'binary, once each';
    is scalar(grep { @{ $got->{$_} } == 2 } 0 .. 49), 50, 'no extra copies';
    $ctx->DESTROY;
};

subtest 'connection publish excludes the sender; closing skipped; closed leaves' => sub {
    my ($ctx, $srv, $cli, $got) = setup(n => 3);
    $_->subscribe('t') for @$srv;
    my $outsider = EV::Websockets::Context->new;
    is $srv->[0]->publish('t', 'from 0'), 2, 'all but the sender';
    $srv->[2]->close(1000);
    is $srv->[2]->state, 'closing', 'closing';
    is $ctx->publish('t', 'after'), 2, 'the closing one is not counted';
    is $ctx->subscribers('t'), 3, 'still subscribed while closing';
    run_until(sub { $srv->[2]->state eq 'closed' && @{ $got->{1} // [] } == 2 });
    is $ctx->subscribers('t'), 2, 'a closed connection leaves its topics';
    is_deeply [ map { $_->[0] } @{ $got->{1} } ], [ 'from 0', 'after' ], 'client 1 got both';
    is_deeply [ map { $_->[0] } @{ $got->{0} // [] } ], [ 'after' ], 'the sender got only the other';
    is_deeply [ map { $_->[0] } @{ $got->{2} // [] } ], [ 'from 0' ], 'the closing one only the first';
    ok !eval { $srv->[2]->subscribe('t'); 1 }, 'subscribe on a closed connection croaks';
    like $@, qr/^Connection is not open/, '... as send does';
    ok !eval { $srv->[2]->publish('t', 'x'); 1 }, 'publish too';
    is scalar($srv->[2]->topics), 0, 'a closed connection has no topics';
    $ctx->DESTROY;
};

subtest 'publish from on_message and from DESTROY' => sub {
    my $ctx;
    my ($srv, $cli, $got);
    ($ctx, $srv, $cli, $got) = setup(
        n => 2,
        server_message => sub { my ($c, $msg) = @_; $c->publish('room', "relay:$msg") },
    );
    $_->subscribe('room') for @$srv;
    $cli->[0]->send('hi');
    run_until(sub { @{ $got->{1} // [] } == 1 });
    is $got->{1}[0][0], 'relay:hi', 'relayed from on_message';
    ok !$got->{0}, 'not back to the sender';
    {
        package Publisher;
        sub DESTROY { $_[0]{ctx}->publish('room', 'bye') }
    }
    { my $p = bless { ctx => $ctx }, 'Publisher' }
    run_until(sub { @{ $got->{0} // [] } == 1 && @{ $got->{1} } == 2 });
    is $got->{0}[0][0], 'bye', 'published from DESTROY';
    $ctx->DESTROY;
    ok !eval { $ctx->publish('room', 'x'); 1 }, 'a destroyed context croaks';
    like $@, qr/Context has been destroyed/, '... so';
};

for my $takeover (0, 1) {
    subtest "compressed recipients, context_takeover $takeover" => sub {
        my $comp = $takeover ? 1 : { context_takeover => 0 };
        my ($ctx, $srv, $cli, $got) = setup(
            n => 3, listen => { compression => $comp }, connect => { compression => 1 },
        );
        $_->subscribe('z') for @$srv;
        my @msgs = map { ("message $_ " x 20) } 1 .. 3;
        $ctx->publish('z', $_) for @msgs;
        $ctx->publish('z', "\x01" x 100, binary => 1);
        run_until(sub { 3 == grep { @{ $got->{$_} // [] } == 4 } 0 .. 2 });
        for my $i (0 .. 2) {
            is_deeply [ map { $_->[0] } @{ $got->{$i} } ], [ @msgs, "\x01" x 100 ], "client $i decodes all";
        }
        $ctx->DESTROY;
    };
}

subtest 'a client-role subscriber gets a masked copy' => sub {
    my $echo_ctx = EV::Websockets::Context->new;
    my @seen;
    my $port = $echo_ctx->listen(port => 0, host => '127.0.0.1', on_message => sub { push @seen, $_[1]; EV::break if @seen == 2 });
    my $ctx = EV::Websockets::Context->new;
    my @c;
    for (1 .. 2) {
        my $c; $c = $ctx->connect(url => "ws://127.0.0.1:$port/", on_connect => sub { push @c, $c; EV::break if @c == 2 });
    }
    EV::run;
    ok $_->subscribe('up'), 'client subscribes' for @c;
    is $ctx->publish('up', 'to the server'), 2, 'queued for both clients';
    EV::run;
    is_deeply \@seen, [ 'to the server', 'to the server' ], 'the server unmasked both';
    $ctx->DESTROY;
    $echo_ctx->DESTROY;
};

subtest 'croaks and argument conversion' => sub {
    my ($ctx, $srv) = setup();
    $srv->[0]->subscribe('t');
    ok !eval { $ctx->publish('t', "\xff"); 1 }, 'invalid UTF-8 text croaks';
    like $@, qr/^publish: text message is not valid UTF-8/, '... publish\'s message';
    ok !eval { $ctx->publish('t', 'x', 'binary'); 1 }, 'odd options croak';
    my @w;
    {
        local $SIG{__WARN__} = sub { push @w, @_ };
        is $ctx->publish('t', 'x', bogus => 1), 1, 'unknown option: still published';
    }
    like "@w", qr/unknown option 'bogus'/, '... with a warning';
    {
        package Closer;
        use overload '""' => sub { $_[0]{c}->close(1000); 't' };
    }
    is $ctx->publish(bless({ c => $srv->[0] }, 'Closer'), 'x'), 0,
        'the topic is converted first: its overloading closed the subscriber';
    $ctx->DESTROY;
};

done_testing;
