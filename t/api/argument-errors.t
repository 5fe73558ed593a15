# Proves: bad arguments to connect and listen croak with the documented
# messages, undef callbacks count as absent, unknown options warn, a refused
# connect reaches on_error.
# POD: EV::Websockets, "Exceptions (croak)", "connect", "listen",
# "on_error messages".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

# $code must croak with exactly $msg (plus Perl's " at FILE line N.").
sub croaks_with {
    my ($code, $msg, $name) = @_;
    my $ok  = eval { $code->(); 1 };
    my $err = $@;
    ok(!$ok, "$name croaks");
    like($err, qr/^\Q$msg\E at /, qq{... with "$msg"});
}

my $ctx  = EV::Websockets::Context->new;
my $port = echo_server($ctx);
my $url  = "ws://127.0.0.1:$port/";

subtest 'connection refused' => sub {
    my $dead = closed_port();
    my (@errors, @error_states, $connected, $closed);
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$dead/",
        on_connect => sub { $connected++ },
        on_error   => sub {
            my ($c, $err) = @_;
            push @errors, $err;
            push @error_states, $c->state;
        },
        on_close => sub { $closed++ },
    );
    # Even a refusal that the kernel reports at once is delivered later.
    is($conn->state, 'connecting', 'connect returns a "connecting" connection');
    is(scalar @errors, 0, 'on_error does not fire inside connect');

    ok(run_until(sub { @errors }, 5), 'on_error fired');
    run_for(0.3);    # a duplicate or late callback would show up here
    is(scalar @errors, 1, 'on_error fired exactly once');
    ok(defined $errors[0], 'error message is defined');
    like($errors[0] // '', qr/refused/i, 'error message mentions the refusal');
    is($error_states[0], 'closed', 'state is "closed" inside on_error');
    ok(!$connected, 'on_connect never fired');
    ok(!$closed, 'on_close never fired (the connection was never established)');
    is($conn->state, 'closed', 'state is "closed" afterwards');
    ok(!eval { $conn->send('x'); 1 }, 'send on the failed connection croaks');
    like($@, qr/^Connection is not open at /, '... with "Connection is not open"');
    ok(eval { $conn->close; 1 }, 'close on the failed connection is a silent no-op');
};

subtest 'connect argument errors' => sub {
    croaks_with(sub { $ctx->connect() }, 'url parameter is required', 'connect with no options');
    croaks_with(sub { $ctx->connect(on_message => sub { }) },
        'url parameter is required', 'connect without url');
    croaks_with(sub { $ctx->connect(url => 'http://x/') },
        'URL must start with ws:// or wss://', 'an http:// url');
    croaks_with(sub { $ctx->connect(url => '127.0.0.1:80') },
        'URL must start with ws:// or wss://', 'a url without a scheme');

    for my $bad ('ws://h:0/', 'ws://h:70000/', 'ws://h:/', 'ws://h:ab/') {
        croaks_with(sub { $ctx->connect(url => $bad) },
            'connect: invalid port in url (expected 1-65535)', "url $bad");
    }

    croaks_with(sub { $ctx->connect(url => 'ws://u:p@h/') },
        'connect: credentials in url are not supported; use the headers option',
        'a url with credentials');

    croaks_with(sub { $ctx->connect(url => $url, 'x') },
        "odd number of options: key 'x' has no value", 'an odd number of options');

    for my $cb (qw(on_connect on_message on_close on_error)) {
        croaks_with(sub { $ctx->connect(url => $url, $cb => 'notcode') },
            "$cb must be a code reference", "$cb => 'notcode'");
    }
    croaks_with(sub { $ctx->connect(url => $url, headers => []) },
        'headers must be a hash reference', 'headers => []');
    croaks_with(sub { $ctx->connect(url => $url, headers => 'X-A: b') },
        'headers must be a hash reference', 'headers => a string');
};

subtest 'undef callbacks count as absent' => sub {
    my $closed;
    my $conn = eval {
        $ctx->connect(
            url        => $url,
            on_message => undef,
            on_error   => undef,
            on_connect => sub { $_[0]->close },
            on_close   => sub { $closed++ },
        );
    };
    ok($conn, 'connect accepts undef callbacks') or diag($@);
    ok(run_until(sub { $closed }, 5), '... and the connection works') if $conn;
};

subtest 'unknown option warns and is ignored' => sub {
    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };
    my $closed;
    my $conn = $ctx->connect(
        url        => $url,
        bogus      => 1,
        on_connect => sub { $_[0]->close },
        on_close   => sub { $closed++ },
    );
    is(scalar @warnings, 1, 'exactly one warning');
    like($warnings[0] // '', qr/^EV::Websockets: unknown option 'bogus'/, '... naming the option');
    ok(run_until(sub { $closed }, 5), 'the connection still works');
};

subtest 'scheme is case-insensitive' => sub {
    for my $scheme (qw(WS Ws)) {
        my ($connected, $closed, @errors);
        my $conn = $ctx->connect(
            url        => "$scheme://127.0.0.1:$port/",
            on_connect => sub { $connected++; $_[0]->close },
            on_close   => sub { $closed++ },
            on_error   => sub { push @errors, $_[1] },
        );
        ok(run_until(sub { $closed || @errors }, 5), "$scheme:// connection finished");
        is($connected, 1, "$scheme:// connected");
        is_deeply(\@errors, [], "$scheme:// had no errors");
    }
};

subtest 'listen argument errors' => sub {
    croaks_with(sub { $ctx->listen(port => 0, 'x') },
        "odd number of options: key 'x' has no value", 'listen with an odd number of options');
    croaks_with(sub { $ctx->listen(port => 0, on_message => 'notcode') },
        'on_message must be a code reference', "listen on_message => 'notcode'");
    croaks_with(sub { $ctx->listen(port => 70000) }, 'listen: port must be 0-65535', 'listen port 70000');
    croaks_with(sub { $ctx->listen(port => -1) },    'listen: port must be 0-65535', 'listen port -1');
    croaks_with(sub { $ctx->listen(port => 0, name => 'default') },
        "listen: vhost name 'default' is reserved", "listen name => 'default'");
    croaks_with(sub { $ctx->listen(port => 0, name => undef) },
        "listen: option 'name' must be a defined string", 'listen name => undef');
};

subtest 'methods called on the wrong kind of object' => sub {
    croaks_with(sub { EV::Websockets::Connection::send(bless({}, 'Foo'), 'x') },
        'self is not of type EV::Websockets::Connection', 'Connection::send on a Foo');
    croaks_with(sub { EV::Websockets::Connection::state('junk') },
        'self is not of type EV::Websockets::Connection', 'Connection::state on a string');
    croaks_with(sub { EV::Websockets::Connection::close($ctx) },
        'self is not of type EV::Websockets::Connection', 'Connection::close on a Context');

    my $ok = eval { EV::Websockets::Context::connect(bless({}, 'Foo'), url => $url); 1 };
    ok(!$ok, 'Context::connect on a Foo croaks');
    like($@, qr/is not of type EV::Websockets::Context/, '... with the typemap message');
};

done_testing;
