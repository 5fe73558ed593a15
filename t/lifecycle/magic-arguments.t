# Proves: Perl code run by magic (ties, overloading, $1) inside a method call
# cannot crash the module; forged objects are refused.
# POD: EV::Websockets, "Perl code at the boundary" and "Exceptions (croak)".
#
# Regressions: Perl code run by magic (ties, overloading, $1) inside a
# method call.  It may destroy the context or drop the connection between
# the method's checks and its use of them; it must be run before a value is
# looked at; tied headers hashes must work; forged objects are refused.
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;
use RawPeer;
use Tie::Hash;
use Scalar::Util qw(reftype);
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);

my $guard = EV::timer(15, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

# A tied scalar: FETCH counts the reads and returns the value; once armed,
# it first runs the hook.
package OnFetch {
    sub TIESCALAR { my ($class, $value, $hook) = @_; return bless { value => $value, hook => $hook, fetches => 0 }, $class }
    sub FETCH {
        my ($self) = @_;
        $self->{fetches}++;
        $self->{hook}->() if $self->{armed} && $self->{hook};
        return $self->{value};
    }
    sub STORE { $_[0]{value} = $_[1] }
}

# An object whose stringification (and numification) runs a hook.
package OnString {
    use overload '""' => sub { $_[0]{hook}->() if $_[0]{hook}; $_[0]{value} }, fallback => 1;
    sub new { my ($class, $value, $hook) = @_; return bless { value => $value, hook => $hook }, $class }
}

# A minimal tied hash whose FETCH computes each value afresh.
package FreshHash {
    sub TIEHASH  { my ($class, @keys) = @_; return bless { keys => [@keys], i => 0 }, $class }
    sub FETCH    { my ($self, $key) = @_; return "value-of-$key" }
    sub EXISTS   { my ($self, $key) = @_; return scalar grep { $_ eq $key } @{ $self->{keys} } }
    sub FIRSTKEY { $_[0]{i} = 0; return $_[0]->NEXTKEY }
    sub NEXTKEY  { my ($self) = @_; return $self->{keys}[ $self->{i}++ ] }
    sub SCALAR   { return scalar @{ $_[0]{keys} } }
}

package main;

# A fresh context with an echo listener and a connected client, whose
# events go to %$ev.
sub open_pair {
    my ($ev) = @_;
    my $ctx  = EV::Websockets::Context->new;
    my $port = echo_server($ctx, host => '127.0.0.1');
    my $conn = $ctx->connect(url => "ws://127.0.0.1:$port/", recording($ev || {}));
    run_until(sub { $conn->is_connected }, 3) or die 'no connection';
    return ($ctx, $conn);
}

# The hook for the magic: destroy the context (and drop the connection),
# then open a new pair.  It likely takes the memory just freed, so a stale
# pointer in the method would reach a live connection.  Returns the hook
# and a check that the new pair was left alone.
sub destroying_hook {
    my ($ctx, $conn, $drop) = @_;
    my (%ev, @pair);
    my $hook = sub {
        $$ctx->DESTROY;
        undef $$conn if $drop;
        @pair = open_pair(\%ev);
    };
    my $check = sub {
        run_for(0.1);
        ok(@pair, '... the magic ran');
        is($pair[1] && $pair[1]->state, 'connected', '... a connection opened by it is still open');
        is_deeply([ grep { $_ ne 'connect' } @{ $ev{order} || [] } ], [], '... and saw no traffic')
            or diag(explain(\%ev));
    };
    return ($hook, $check);
}

my %send_args = (
    send          => [],
    send_binary   => [],
    send_ping     => [],
    send_pong     => [],
    send_fragment => [ 0, 1 ],
);

subtest 'a send whose data destroys the context' => sub {
    for my $method (sort keys %send_args) {
        for my $kind (qw(tied overloaded)) {
            my ($ctx, $conn) = open_pair();
            my ($hook, $check) = destroying_hook(\$ctx, \$conn, 0);
            my $data;
            if ($kind eq 'tied') {
                tie $data, 'OnFetch', 'stray', $hook;
                my $primed = "$data";    # the scalar holds a value before the call
                tied($data)->{armed} = 1;
            }
            else {
                $data = OnString->new('stray', $hook);
            }
            my $ok  = eval { $conn->$method($data, @{ $send_args{$method} }); 1 };
            my $err = $@;
            ok(!$ok, "$method ($kind): croaks");
            like($err, qr/^Connection (?:is not open|has been destroyed)/, '... that the connection is gone');
            ok(!$conn->is_connected, '... and the connection is no longer open');
            $check->();
        }
    }
};

subtest 'a close whose arguments destroy the context and drop the connection' => sub {
    for my $which (qw(code reason overloaded)) {
        for my $drop (0, 1) {
            my ($ctx, $conn) = open_pair();
            my ($hook, $check) = destroying_hook(\$ctx, \$conn, $drop);
            my $what = "$which" . ($drop ? ', last reference dropped' : '');
            my $ok;
            if ($which eq 'overloaded') {
                $ok = eval { $conn->close(OnString->new(4000, $hook), 'bye'); 1 };
            }
            else {
                tie my $code,   'OnFetch', 4000, ($which eq 'code'   ? $hook : ());
                tie my $reason, 'OnFetch', 'bye', ($which eq 'reason' ? $hook : ());
                my $primed = "$code $reason";    # both hold values before the call
                tied($code)->{armed} = tied($reason)->{armed} = 1;
                $ok = eval { $conn->close($code, $reason); 1 };
            }
            my $err = $@;
            ok($ok || $err =~ /^(?:self is not of type EV::Websockets::Connection|Connection (?:is not open|has been destroyed))/,
                "close ($what): returns or croaks cleanly") or diag($err);
            ok(!$conn || !$conn->is_connected, '... and the connection is not open');
            $check->();
        }
    }
};

subtest 'on_handshake returns headers whose stringification destroys the context' => sub {
    my $sctx = EV::Websockets::Context->new;
    my $hooked;
    my $port = $sctx->listen(
        port         => 0,
        host         => '127.0.0.1',
        on_handshake => sub { return { 'X-Obj' => OnString->new('v', sub { $hooked++; $sctx->DESTROY }) } },
    );
    my %ev;
    my $cctx = EV::Websockets::Context->new;
    my $conn = $cctx->connect(url => "ws://127.0.0.1:$port/", recording(\%ev));
    ok(run_until(sub { $ev{close} || $ev{error} }, 3), 'the client hears the end of the connection');
    ok($hooked, 'the header value was stringified');
    is($ev{connect}, undef, 'no upgrade happened');
    isnt($conn->state, 'connected', 'client not connected');
    ok(!eval { $sctx->listen(port => 0, host => '127.0.0.1'); 1 }, 'the server context is destroyed');
    like($@, qr/^Context has been destroyed/, '... and says so');
};

subtest 'options whose stringification destroys the context' => sub {
    # $_[0] is the test's own variable (aliased), so that dropping it frees
    # the context.
    my $url   = 'ws://127.0.0.1:' . closed_port() . '/';
    my %cases = (
        'connect url'          => sub { $_[0]->connect(url => $_[1]->($url)) },
        'connect header value' => sub { $_[0]->connect(url => $url, headers => { 'X-A' => $_[1]->('a') }) },
        'listen host'          => sub { $_[0]->listen(port => 0, host => $_[1]->('127.0.0.1')) },
        # boolean and numeric options read through the same overloading
        # (fallback); each is converted before the context is looked at
        'connect ssl_verify'       => sub { $_[0]->connect(url => $url, ssl_verify => $_[1]->(1)) },
        'connect compression'      => sub { $_[0]->connect(url => $url, compression => $_[1]->(1)) },
        'connect connect_timeout'  => sub { $_[0]->connect(url => $url, connect_timeout => $_[1]->(5)) },
        'connect max_message_size' => sub { $_[0]->connect(url => $url, max_message_size => $_[1]->(99)) },
        'connect ping_interval'    => sub { $_[0]->connect(url => $url, ping_interval => $_[1]->(9)) },
        'connect protocol'         => sub { $_[0]->connect(url => $url, protocol => $_[1]->('chat')) },
        'listen port'              => sub { $_[0]->listen(port => $_[1]->(0), host => '127.0.0.1') },
        'listen reuse_port'        => sub { $_[0]->listen(port => 0, host => '127.0.0.1', reuse_port => $_[1]->(1)) },
        'listen compression'       => sub { $_[0]->listen(port => 0, host => '127.0.0.1', compression => $_[1]->(1)) },
        'listen handshake_timeout' => sub { $_[0]->listen(port => 0, host => '127.0.0.1', handshake_timeout => $_[1]->(3)) },
        'listen protocol element'  => sub { $_[0]->listen(port => 0, host => '127.0.0.1', protocol => [ 'a', $_[1]->('b') ]) },
        'listen header value'      => sub { $_[0]->listen(port => 0, host => '127.0.0.1', headers => { 'X-A' => $_[1]->('a') }) },
        'adopt initial_data'       => sub {
            socketpair(my $mine, my $theirs, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
            $_[0]->adopt(fh => $mine, initial_data => $_[1]->(''));
        },
        'adopt max_message_size'   => sub {
            socketpair(my $mine, my $theirs, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
            $_[0]->adopt(fh => $mine, max_message_size => $_[1]->(10));
        },
        'option name'              => sub { $_[0]->connect(url => $url, $_[1]->('on_error') => sub { }) },
    );
    for my $case (sort keys %cases) {
        for my $how ('DESTROY', 'last reference dropped') {
            my $ctx = EV::Websockets::Context->new;
            my $obj = sub { OnString->new($_[0], $how eq 'DESTROY' ? sub { $ctx->DESTROY } : sub { undef $ctx }) };
            my $ok  = eval { $cases{$case}->($ctx, $obj); 1 };
            my $err = $@;
            ok(!$ok, "$case ($how): croaks");
            like($err, qr/^Context has been destroyed/, '... Context has been destroyed');
            if ($ctx) {
                is(scalar(() = $ctx->connections), 0, '... and no connection was added to the dead context');
            }
        }
    }
};

subtest 'tied headers hashes' => sub {
    my $ctx = EV::Websockets::Context->new;
    my (%seen, %seen_by_client);
    tie my %reply, 'FreshHash', map { "X-Reply-$_" } 1 .. 20;
    my $port = $ctx->listen(
        port         => 0,
        host         => '127.0.0.1',
        on_handshake => sub { \%reply },
        on_connect   => sub { %seen = %{ $_[1] || {} } },
    );

    tie my %std, 'Tie::StdHash';
    %std = map { ("X-Header-$_" => "value-$_") } 1 .. 20;
    my $conn = $ctx->connect(
        url        => "ws://127.0.0.1:$port/",
        headers    => \%std,
        on_connect => sub { %seen_by_client = %{ $_[1] || {} } },
    );
    ok(run_until(sub { %seen && %seen_by_client }, 3), 'connected with tied headers on both sides');
    my %want = map { (lc "X-Header-$_" => "value-$_") } 1 .. 20;
    my %got  = map { (lc $_ => $seen{$_}) } grep { /^x-header-/i } keys %seen;
    is_deeply(\%got, \%want, 'the server saw all 20 request headers from a Tie::StdHash, each with its value');
    my %want_reply = map { (lc "X-Reply-$_" => "value-of-X-Reply-$_") } 1 .. 20;
    my %got_reply  = map { (lc $_ => $seen_by_client{$_}) } grep { /^x-reply-/i } keys %seen_by_client;
    is_deeply(\%got_reply, \%want_reply, 'the client saw all 20 response headers from a tied hash, each with its value');
    $conn->close;
    run_until(sub { $conn->state eq 'closed' }, 2);

    tie my %fresh, 'FreshHash', map { "X-Fresh-$_" } 1 .. 30;
    %seen = ();
    $conn = $ctx->connect(url => "ws://127.0.0.1:$port/", headers => \%fresh);
    ok(run_until(sub { %seen && $conn->is_connected }, 3), 'connected with a tied hash of 30 computed values');
    my %got_fresh = map { (lc $_ => $seen{$_}) } grep { /^x-fresh-/i } keys %seen;
    is_deeply(\%got_fresh, { map { (lc "X-Fresh-$_" => "value-of-X-Fresh-$_") } 1 .. 30 }, '... each header with its own value');
    $conn->close;
    run_until(sub { $conn->state eq 'closed' }, 2);
};

subtest 'magical arguments are read through their magic' => sub {
    my ($conn, $peer, $ev) = connect_raw();
    ok(run_until(sub { $ev->{connect} && $peer->{open} }), 'connected');

    'hello world' =~ /(w\w+)/ or die;
    $conn->send($1);
    'a fragment' =~ /(f\w+)/ or die;
    $conn->send_fragment($1, 0, 1);

    tie my $t, 'OnFetch', 'tied-value';
    $conn->send($t);
    $conn->send_binary($t);
    $conn->send_ping($t);
    $conn->send_pong($t);
    is(tied($t)->{fetches}, 4, 'one FETCH per call');

    ok(run_until(sub { $peer->messages >= 4 && $peer->frames_of(9) && $peer->frames_of(10) }), 'frames arrived');
    is_deeply([ $peer->messages ], [ [ 1, 'world' ], [ 1, 'fragment' ], [ 1, 'tied-value' ], [ 2, 'tied-value' ] ],
        'send($1), send_fragment($1), send($tied), send_binary($tied) carry the values');
    is_deeply([ map { $_->{payload} } $peer->frames_of(9) ],  ['tied-value'], 'send_ping($tied) carries the value');
    is_deeply([ map { $_->{payload} } $peer->frames_of(10) ], ['tied-value'], 'send_pong($tied) carries the value');

    '4001 gone' =~ /^(\d+) (\w+)/ or die;
    $conn->close($1, $2);
    ok(run_until(sub { $peer->{got_close} }), 'close frame arrived');
    is($peer->{close_code},   4001,   'close($1, $2): the code');
    is($peer->{close_reason}, 'gone', 'close($1, $2): the reason');

    ($conn, $peer, $ev) = connect_raw();
    ok(run_until(sub { $ev->{connect} }), 'connected again');
    tie my $code,   'OnFetch', 4002;
    tie my $reason, 'OnFetch', 'tied';
    $conn->close($code, $reason);
    ok(run_until(sub { $peer->{got_close} }), 'close frame arrived');
    is_deeply([ @$peer{qw(close_code close_reason)} ], [ 4002, 'tied' ], 'close($tied, $tied)');
    is_deeply([ map { tied($_)->{fetches} } $code, $reason ], [ 1, 1 ], '... one FETCH each');

    my $ctx  = EV::Websockets::Context->new;
    '127.0.0.1' =~ /^(.*)$/ or die;
    my $port = echo_server($ctx, host => $1);
    "ws://127.0.0.1:$port/" =~ /^(.*)$/ or die;
    my $c1 = $ctx->connect(url => $1);
    tie my $url, 'OnFetch', "ws://127.0.0.1:$port/";
    my $c2 = $ctx->connect(url => $url);
    is(tied($url)->{fetches}, 1, 'connect(url => $tied): one FETCH');
    ok(run_until(sub { $c1->is_connected && $c2->is_connected }), 'listen(host => $1), connect(url => $1) and connect(url => $tied) work');
    $_->close for $c1, $c2;
    run_until(sub { $c1->state eq 'closed' && $c2->state eq 'closed' }, 2);
};

subtest 'forged objects' => sub {
    my @forged = (
        bless(\(my $x = 42), 'EV::Websockets::Connection'),
        bless({}, 'EV::Websockets::Connection'),
        bless([], 'EV::Websockets::Connection'),
        'EV::Websockets::Connection',
    );
    my %args = (map({ $_ => ['x'] } qw(send send_binary send_ping send_pong send_fragment)), close => [1000]);
    for my $obj (@forged) {
        my $kind = reftype($obj) // 'class name';
        for my $method (qw(send send_binary send_ping send_pong send_fragment close pause_recv resume_recv
                           send_queue_size stash get_protocol peer_address state is_connected is_connecting)) {
            my $ok = eval { $obj->$method(@{ $args{$method} || [] }); 1 };
            like($ok ? 'returned' : $@, qr/^self is not of type EV::Websockets::Connection/,
                "$method on a forged connection ($kind) croaks");
        }
    }

    my $before = @warnings;
    ok(eval { $forged[0]->DESTROY; 1 }, 'DESTROY on a forged connection returns') or diag($@);
    my $ctx = bless \(my $y), 'EV::Websockets::Context';
    ok(eval { $ctx->DESTROY; 1 }, 'DESTROY on a forged context returns') or diag($@);
    for my $method (qw(connect listen connections)) {
        ok(!eval { $ctx->$method; 1 }, "$method on a forged context croaks");
        like($@, qr/self is not of type EV::Websockets::Context/, '... self is not of type');
    }
    undef $ctx;    # implicit DESTROY
    { my $other = bless {}, 'EV::Websockets::Context' }
    { my $conn  = bless {}, 'EV::Websockets::Connection' }
    is_deeply([ @warnings[ $before .. $#warnings ] ], [], 'no warnings from destroying forged objects')
        or diag(explain(\@warnings));
};

is_deeply(\@warnings, [], 'no warnings') or diag(explain(\@warnings));
done_testing;
