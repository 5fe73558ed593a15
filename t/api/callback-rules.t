# Proves: a die in any callback is caught and warned, the connection carries
# on and $@ survives; pre-connect failures fire on_error only; messages read
# before a close come before on_close.
# POD: EV::Websockets, "CALLBACKS", "on_error" and "on_close".
#
# Callback rules: a die in any handler is caught and
# warned, the connection carries on, the user's $@ survives; pre-connect
# failures fire on_error only; messages read before a close come first.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

sub warned {
    my ($what) = @_;
    return scalar grep { /^EV::Websockets: exception in \Q$what\E handler: boom-\Q$what\E at \S+ line \d+\.\n\z/ }
        @warnings;
}

subtest 'a die in each handler is warned and the connection carries on' => sub {
    @warnings = ();
    my $ctx = EV::Websockets::Context->new;
    my (%died, %client, %server);
    my $boom = sub { my ($what) = @_; $died{$what}++; die "boom-$what" };

    # Our server dies in on_connect, on_message, on_error and on_close; a
    # message over max_message_size makes it fail with on_error.
    my $port = $ctx->listen(
        port             => 0,
        max_message_size => 100,
        on_connect       => sub { $server{connect}++; $boom->('connect') },
        on_message       => sub {
            my ($c, $data) = @_;
            push @{ $server{got} }, $data;
            $c->send("echo:$data");
            $boom->('message');
        },
        on_error => sub { push @{ $server{error} }, $_[1]; $boom->('error') },
        on_close => sub {
            push @{ $server{close} }, $_[1];
            EV::break if $client{close};
            $boom->('close');
        },
    );

    # Our client dies in on_connect, on_pong, on_drain and on_close.
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c) = @_;
            $c->send('one');
            $c->send_ping('are you there');
            $boom->('connect');
        },
        on_pong => sub {
            my ($c, $payload) = @_;
            push @{ $client{pong} }, $payload;
            $c->send('two');    # still works after on_drain and on_pong died
            $boom->('pong');
        },
        on_drain   => sub { $client{drain}++; $boom->('drain') },
        on_message => sub {
            my ($c, $data) = @_;
            push @{ $client{got} }, $data;
            $c->send('x' x 101) if $data eq 'echo:two';    # over the server's limit
        },
        on_close => sub {
            push @{ $client{close} }, $_[1];
            EV::break if $server{close};
            $boom->('close');
        },
    );

    my $after = run_keeping_errsv();
    run_for(0.2);    # a late or repeated callback would show up here

    is($after, 'keep', 'the user\'s $@ survived the handlers that died');
    for my $what (qw(connect message close error pong drain)) {
        ok($died{$what}, "the $what handler died");
        is(warned($what), $died{$what} // -1, qq{... and each time warned "EV::Websockets: exception in $what handler: ..."});
    }
    my $deaths = 0;
    $deaths += $_ for values %died;
    is(scalar @warnings, $deaths, 'no other warnings')
        or diag(explain(\@warnings));
    is($died{connect}, 2, 'both on_connect handlers died');
    is($died{close},   2, 'both on_close handlers died');

    is_deeply($server{got}, [qw(one two)], 'server kept receiving after on_connect and on_message died');
    is_deeply($client{got}, [qw(echo:one echo:two)], 'client kept receiving after its handlers died');
    is_deeply($client{pong}, ['are you there'], 'on_pong fired once');
    is_deeply($server{error}, ['message exceeds max_message_size'], 'server on_error fired once');
    is_deeply($server{close}, [1009], 'server on_close(1009) fired once, after on_error died');
    is_deeply($client{close}, [1009], 'client on_close(1009) fired once');
};

sub warnings_about {
    my ($what) = @_;
    return grep { /^EV::Websockets: exception in \Q$what\E: boom at / } @warnings;
}

# While these loops run, only the module's own callbacks fire (no Perl EV
# watchers, which would reset $@ themselves), so $@ afterwards shows whether
# the module preserved it.

subtest 'die in connect, message and close handlers' => sub {
    @warnings = ();
    my $ctx = EV::Websockets::Context->new;
    my (@server_got, @client_got, $server_closed, $client_closed);

    my $port = $ctx->listen(
        port       => 0,
        on_connect => sub { die 'boom' },
        on_message => sub {
            my ($c, $data) = @_;
            push @server_got, $data;
            die 'boom' if $data eq 'die';
            $c->send("echo:$data");
        },
        on_close => sub {
            $server_closed++;
            EV::break if $client_closed;
            die 'boom';
        },
    );
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send('die'); $_[0]->send('after') },
        on_message => sub { push @client_got, $_[1]; $_[0]->close },
        on_close   => sub { $client_closed++; EV::break if $server_closed },
    );

    my $after = run_keeping_errsv();

    is($after, 'keep', '$@ is not clobbered by callbacks that died');
    is(scalar warnings_about('connect handler'), 1, 'die in on_connect warns "exception in connect handler"');
    is(scalar warnings_about('message handler'), 1, 'die in on_message warns "exception in message handler"');
    is(scalar warnings_about('close handler'),   1, 'die in on_close warns "exception in close handler"');
    is(scalar @warnings, 3, 'no other warnings') or diag(explain(\@warnings));
    is_deeply(\@server_got, [qw(die after)], 'server kept receiving after on_message died');
    is_deeply(\@client_got, ['echo:after'], 'connection kept working after on_connect died');
    is($server_closed, 1, 'server on_close fired once');
    is($client_closed, 1, 'client on_close fired once');
};

subtest 'die in the error handler' => sub {
    @warnings = ();
    my $ctx  = EV::Websockets::Context->new;
    my $dead = closed_port();
    my $errors = 0;
    my $conn = $ctx->connect(
        url      => "ws://127.0.0.1:$dead/",
        on_error => sub { $errors++; EV::break; die 'boom' },
    );

    my $after = run_keeping_errsv();
    run_for(0.2);    # a recursive or repeated on_error would show up here

    is($after, 'keep', '$@ is not clobbered by on_error dying');
    is($errors, 1, 'on_error fired exactly once');
    is(scalar warnings_about('error handler'), 1, 'die in on_error warns "exception in error handler"');
    is(scalar @warnings, 1, 'no other warnings') or diag(explain(\@warnings));
};

subtest 'a __WARN__ handler or an exception that dies while it is reported' => sub {
    # The report of a callback's die goes through Perl under an eval: a
    # die there is dropped (as EV drops one in its own callbacks) instead
    # of unwinding through the loop, and everything goes on.
    package DiesWhenShown { use overload '""' => sub { die "cannot show\n" }, fallback => 1 }
    my $ctx  = EV::Websockets::Context->new(proxy => '');
    my $port = echo_server($ctx, host => '127.0.0.1');
    my @got;
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send('one') },
        on_message => sub {
            my ($c, $data) = @_;
            push @got, $data;
            $c->send('two') if $data eq 'one';
            die bless {}, 'DiesWhenShown' if $data eq 'one';
            die "boom\n";
        },
    );
    my $handler_ran;
    {
        local $SIG{__WARN__} = sub { $handler_ran++; die "the handler dies\n" };
        ok(run_until(sub { @got == 2 }, 3), 'both messages arrived: the loop went on');
    }
    is_deeply(\@got, ['one', 'two'], 'in order');
    ok($handler_ran, 'the dying __WARN__ handler was called');
    ok($conn->is_connected, 'the connection is still open');
};

subtest 'pre-connect failures fire on_error only, in state "closed"' => sub {
    @warnings = ();
    my $ctx = EV::Websockets::Context->new;
    my $sport = $ctx->listen(port => 0, on_handshake => sub { 0 });    # rejects everyone
    my $dead  = closed_port();
    my %ev;
    for my $case ([ refused => "ws://127.0.0.1:$dead/" ], [ rejected => "ws://127.0.0.1:$sport/" ]) {
        my ($name, $url) = @$case;
        my $e = $ev{$name} = {};
        $ctx->connect(url => $url, recording($e, on_error => sub { $e->{state} = $_[0]->state }));
    }
    ok(run_until(sub { $ev{refused}{error} && $ev{rejected}{error} }), 'both failed');
    run_for(0.3);
    for my $name (qw(refused rejected)) {
        is_deeply($ev{$name}{order}, ['error'], "$name: on_error only, once");
        is($ev{$name}{state}, 'closed', qq{$name: state is "closed" inside on_error});
    }
    is_deeply(\@warnings, [], 'no warnings');
};

# The raw peer sends three messages and then a close frame (or drops TCP)
# in one write.
for my $side (qw(client server)) {
    my $who = $side eq 'client' ? 'our client' : 'our server';
    for my $end ([ 'a close frame', 4000, 'done' ], [ 'a dropped connection', 1006, undef ]) {
        my ($how, $code, $reason) = @$end;
        subtest "$who: messages read before $how come before on_close" => sub {
            my $on_open = sub {
                my ($p) = @_;
                my $bytes = join '', map { $p->frame(payload => "m$_") } 1 .. 3;
                $bytes .= $p->frame(opcode => 8, payload => RawPeer::close_payload($code, $reason)) if $reason;
                $p->send_raw($bytes);
                $p->close_tcp unless $reason;
            };
            my @r = ($side eq 'client' ? \&connect_raw : \&listen_raw)->(peer => { on_open => $on_open });
            my $ev = $r[-1];
            ok(run_until(sub { $ev->{close} }), 'connection closed');
            run_for(0.1);
            is_deeply($ev->{order}, [qw(connect message message message close)], 'three messages, then on_close');
            is_deeply([ map { $_->[0] } @{ $ev->{message} } ], [qw(m1 m2 m3)], 'in order');
            is_deeply($ev->{close}, [ [ $code, $reason ] ], "on_close($code, " . ($reason // 'undef') . ')');
        };
    }
}

done_testing;
