# Proves: close codes and reasons reach on_close as sent, from either end,
# once; invalid codes croak.
# POD: EV::Websockets, "close" and "on_close".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $BAD_CODE = qr/\(RFC 6455 allows 1000-1003, 1007-1014, 3000-4999\)/;

subtest 'client closes with 4001 "bye now"' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (@server_close, @client_close, %seen);

    my $port = echo_server($ctx, on_close => sub { push @server_close, [ @_[1, 2] ] });
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c) = @_;
            $c->close(4001, 'bye now');
            $seen{state_after_close} = $c->state;
            # The first close wins; a second one is a silent no-op.
            $seen{second_close_ok} = eval { $c->close(1000, 'second'); 1 } ? 1 : 0;
            $seen{send_while_closing} = eval { $c->send('late'); 1 } ? '' : $@;
        },
        on_close => sub {
            my ($c, $code, $reason) = @_;
            push @client_close, [ $code, $reason ];
            $seen{send_in_on_close} = eval { $c->send('late'); 1 } ? '' : $@;
        },
    );

    ok(run_until(sub { @server_close && @client_close }, 5), 'both sides saw on_close');
    run_for(0.2);    # a duplicate or late callback would show up here

    is($seen{state_after_close}, 'closing', 'state is "closing" after close()');
    is($seen{second_close_ok}, 1, 'a second close() does not croak');
    like($seen{send_while_closing}, qr/^Connection is not open at /, 'send while closing croaks');
    like($seen{send_in_on_close}, qr/^Connection is not open at /, 'send inside on_close croaks');

    is(scalar @server_close, 1, 'server on_close fired exactly once');
    is_deeply($server_close[0], [ 4001, 'bye now' ], 'server got code 4001 and reason "bye now"');
    is(scalar @client_close, 1, 'client on_close fired exactly once');
    is($client_close[0][0], 4001, 'client on_close got the echoed code 4001');

    my $ok = eval { $conn->send('x'); 1 };
    ok(!$ok, 'send after on_close croaks');
    like($@, qr/^Connection is not open at /, '... with "Connection is not open"');
    ok(!eval { $conn->send_binary('x'); 1 }, 'send_binary after on_close croaks');
    like($@, qr/^Connection is not open at /, '... with "Connection is not open"');
    ok(eval { $conn->close(1000); 1 }, 'close on a closed connection is a silent no-op');
    ok(!eval { $conn->close(999); 1 }, 'an invalid close code still croaks when closed');
    like($@, qr/^close: invalid close code 999 $BAD_CODE/, '... with the invalid-code message');
};

subtest 'server closes with 1001 "going away"' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (@server_close, @client_close);

    my $port = $ctx->listen(
        port       => 0,
        on_message => sub { $_[0]->close(1001, 'going away') },
        on_close   => sub { push @server_close, [ @_[1, 2] ] },
    );
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub { $_[0]->send('please close') },
        on_close   => sub { push @client_close, [ @_[1, 2] ] },
    );

    ok(run_until(sub { @server_close && @client_close }, 5), 'both sides saw on_close');
    run_for(0.2);    # a duplicate or late callback would show up here

    is(scalar @client_close, 1, 'client on_close fired exactly once');
    is_deeply($client_close[0], [ 1001, 'going away' ], 'client got code 1001 and reason "going away"');
    is(scalar @server_close, 1, 'server on_close fired exactly once');
    is($server_close[0][0], 1001, 'server on_close got the echoed code 1001');
    is($conn->state, 'closed', 'client state is "closed"');
};

subtest 'invalid close codes croak' => sub {
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx);
    my (%croak, $state, $closed);
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        on_connect => sub {
            my ($c) = @_;
            for my $code (999, 1005, 0, 1004, 1006, 1015, 2999, 5000) {
                $croak{$code} = eval { $c->close($code); 1 } ? '' : $@;
            }
            $state = $c->state;
            $c->close;
        },
        on_close => sub { $closed++ },
    );

    # The code is checked before anything else, even while connecting.
    ok(!eval { $conn->close(999); 1 }, 'close(999) croaks while connecting');
    like($@, qr/^close: invalid close code 999 $BAD_CODE/, '... with the invalid-code message');
    is($conn->state, 'connecting', '... and the connection is unaffected');

    ok(run_until(sub { $closed }, 5), 'connection opened and closed');
    for my $code (999, 1005, 0, 1004, 1006, 1015, 2999, 5000) {
        like($croak{$code}, qr/^close: invalid close code $code $BAD_CODE at /, "close($code) croaks");
    }
    is($state, 'connected', 'a rejected close() leaves the connection open');
};

done_testing;
