use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

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

done_testing;
