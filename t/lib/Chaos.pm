package Chaos;

# A seeded random driver of the public API.  One sequence opens a context
# or two, with listeners and clients whose every callback (and the DESTROY
# of objects kept in connections' stashes) calls random methods: send in
# every form, close, pause and resume, connect, listen, adopt-free queries,
# shutting down or destroying a context, dropping the last reference to a
# connection, dying.
# Whatever the order, the process must not crash, every croak must be one
# the POD documents, and every socket must be gone once the sequence's
# objects are.  A sequence is a pure function of its seed: a failure names
# the seed to replay.

use strict;
use warnings;
use EV;
use EV::Websockets;
use Scalar::Util qw(weaken blessed);
use Exporter 'import';

our @EXPORT_OK = qw(run_sequence);

# Croaks a method may give in these states (POD: "Errors").
my @EXPECTED = (
    qr/^Connection is not open/,
    qr/^Connection has been destroyed/,
    qr/^Context has been destroyed/,
    qr/^Context is shutting down/,
    qr/^Cannot send while a fragmented message is in progress/,
    qr/^chaos: a deliberate die/,
);

# Warnings: the die of a callback, reported by the module.
my @EXPECTED_WARNINGS = (
    qr/^EV::Websockets: exception in .*: chaos: a deliberate die/,
    qr/^EV::Websockets: on_handshake returned an invalid header/,
);

my @CLOSE_CODES = (1000, 1001, 3000, 4000, 4999);

sub pick { $_[ int rand @_ ] }

# The actions, each given the sequence state and the connection at hand
# (undef when none).  Each runs under eval; its croak is checked.
my %ACTION = (
    send          => sub { $_[1]->send('t' x int rand 300) },
    send_binary   => sub { $_[1]->send_binary("\0" x int rand 300) },
    send_large    => sub { $_[1]->send('L' x (65536 + int rand 65536)) },
    send_ping     => sub { $_[1]->send_ping('p') },
    send_pong     => sub { $_[1]->send_pong('q') },
    send_fragment => sub { $_[1]->send_fragment('f' x int rand 50, int rand 2, int rand 2) },
    close         => sub { $_[1]->close(pick(@CLOSE_CODES), pick('', 'bye', 'x' x 100)) },
    pause_recv    => sub { $_[1]->pause_recv },
    resume_recv   => sub { $_[1]->resume_recv },
    query         => sub {
        my $c = $_[1];
        my @x = ($c->state, $c->is_connected, $c->is_connecting, $c->send_queue_size,
                 $c->get_protocol, $c->peer_address);
    },
    # a session object, as a chat server keeps: it holds another
    # connection, and its DESTROY acts on it
    stash_object  => sub {
        my ($st, $c) = @_;
        $c->stash->{ 'o' . int rand 3 } = Chaos::OnDestroy->new($st, another_conn($st, $c));
    },
    drop_conn     => sub {
        my ($st, $c) = @_;
        @{ $st->{conns} } = grep { blessed($_) && $_ != $c } @{ $st->{conns} };
    },
    connect       => sub { connect_one($_[0], pick(@{ $_[0]{ctxs} })) },
    listen        => sub { listen_one($_[0], pick(@{ $_[0]{ctxs} })) },
    connections   => sub { my $ctx = pick(@{ $_[0]{ctxs} }) or return; my @c = $ctx->connections },
    destroy_ctx   => sub { my $ctx = pick(@{ $_[0]{ctxs} }) or return; $ctx->DESTROY },
    shutdown      => sub { my $ctx = pick(@{ $_[0]{ctxs} }) or return; shutdown_one($_[0], $ctx) },
    drop_ctx      => sub {
        my ($st) = @_;
        return unless @{ $st->{ctxs} };
        splice @{ $st->{ctxs} }, int rand @{ $st->{ctxs} }, 1;
    },
);
my @ACTIONS = sort keys %ACTION;
my %CONN_ACTION = map { $_ => 1 } grep { !/^(?:connect|listen|connections|destroy_ctx|drop_ctx|shutdown)$/ } @ACTIONS;
my @CTX_ACTIONS = grep { !$CONN_ACTION{$_} } @ACTIONS;

# Run zero to two random actions; then, now and then, die.  DESTROYs have
# a budget of their own, so that they still act while a sequence ends.
sub act {
    my ($st, $where, $conn) = @_;
    return if !$st || $st->{ $where eq 'DESTROY' ? 'destroy_steps' : 'steps' }++ >= $st->{max_steps};
    for (1 .. int rand 3) {
        my $c = blessed($conn) && rand() < 0.7 ? $conn : pick(@{ $st->{conns} });
        my $name = $c ? pick(@ACTIONS) : pick(@CTX_ACTIONS);
        push @{ $st->{log} }, "$where:$name";
        next if eval { $ACTION{$name}->($st, $c); 1 };
        my $err = $@;
        push @{ $st->{unexpected} }, "$where:$name croaked: $err" unless grep { $err =~ $_ } @EXPECTED;
    }
    die "chaos: a deliberate die\n" if $where ne 'DESTROY' && rand() < 0.05;
}

# Some other connection this sequence has seen open (or none).
sub another_conn {
    my ($st, $c) = @_;
    return pick(grep { blessed($_) && $_ != $c } @{ $st->{seen} }, @{ $st->{conns} });
}

# Callbacks for a connection or a listener: each records and acts.  They
# hold the state weakly, so nothing here makes a cycle.
sub callbacks {
    my ($st) = @_;
    weaken(my $weak = $st);
    my %cb;
    for my $kind (qw(on_connect on_message on_close on_error on_pong on_drain)) {
        $cb{$kind} = sub {
            my $st = $weak or return;
            $st->{events}{$kind}++;
            $st->{last_event} = EV::now;
            if ($kind eq 'on_connect') {
                weaken($st->{seen}[ @{ $st->{seen} } ] = $_[0]);
                push @{ $st->{conns} }, $_[0] if rand() < 0.5;
                $_[0]->stash->{session} = Chaos::OnDestroy->new($st, another_conn($st, $_[0])) if rand() < 0.5;
            }
            eval { $_[0]->send($_[1]) } if $kind eq 'on_message' && rand() < 0.6;
            act($st, $kind, $_[0]);
            undef $_[0] if rand() < 0.1;    # the callback's own reference too
        };
    }
    return %cb;
}

sub connect_one {
    my ($st, $ctx) = @_;
    return unless $ctx;
    my $port = pick(@{ $st->{ports} }, $st->{closed_port});
    my $conn = $ctx->connect(
        url => "ws://127.0.0.1:$port/" . int rand 10,
        (rand() < 0.3 ? (protocol => 'chat') : ()),
        (rand() < 0.3 ? (compression => 0) : ()),
        (rand() < 0.2 ? (connect_timeout => 0.05) : ()),
        (rand() < 0.2 ? (max_message_size => 1000) : ()),
        callbacks($st),
    );
    push @{ $st->{conns} }, $conn if rand() < 0.8;
}

sub listen_one {
    my ($st, $ctx) = @_;
    return unless $ctx;
    weaken(my $weak = $st);
    my $verdict = pick(1, 1, 1, 0, 'headers', 'bad headers');
    my $port = $ctx->listen(
        port         => 0,
        host         => '127.0.0.1',
        (rand() < 0.3 ? (protocol => ['chat', 'other']) : ()),
        (rand() < 0.5 ? (compression => 1) : ()),
        (rand() < 0.2 ? (max_message_size => 5000) : ()),
        on_handshake => sub {
            my $st = $weak or return 1;
            $st->{events}{on_handshake}++;
            $st->{last_event} = EV::now;
            act($st, 'on_handshake', undef);
            return $verdict eq 'headers' ? { 'X-Chaos' => 'yes' }
                 : $verdict eq 'bad headers' ? { 'X-Chaos' => "a\r\nX-Forged: 1" }
                 : $verdict;
        },
        callbacks($st),
    );
    push @{ $st->{ports} }, $port;
}

# A graceful shutdown of $ctx, whose cb acts too (its die is warned as the
# callbacks' are).
sub shutdown_one {
    my ($st, $ctx) = @_;
    weaken(my $weak = $st);
    $ctx->shutdown(
        code    => pick(@CLOSE_CODES),
        reason  => pick('', 'bye'),
        timeout => pick(0, 0.01, 0.1),
        cb      => sub {
            my $st = $weak or return;
            $st->{events}{shutdown}++;
            $st->{last_event} = EV::now;
            act($st, 'shutdown', undef);
        },
    );
}

# One sequence: returns (unexpected croaks and warnings, the action log).
sub run_sequence {
    my ($seed, %opt) = @_;
    srand($seed);
    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, $_[0] };
    my $st = {
        ctxs => [], conns => [], seen => [], ports => [], log => [], unexpected => [],
        steps => 0, destroy_steps => 0, max_steps => $opt{steps} || 40, closed_port => $opt{closed_port},
    };
    push @{ $st->{ctxs} }, EV::Websockets::Context->new(proxy => '') for 1 .. 1 + int rand 2;
    listen_one($st, pick(@{ $st->{ctxs} })) for 1 .. 1 + int rand 2;
    connect_one($st, pick(@{ $st->{ctxs} })) for 1 .. 1 + int rand 3;

    # Until the steps are spent, or nothing happened for a moment, or the
    # sequence's time is up.
    my $done;
    $st->{last_event} = EV::now;
    my $limit = EV::timer($opt{seconds} || 0.5, 0, sub { $done = 'time'; EV::break });
    my $check = EV::timer(0.005, 0.005, sub {
        if ($st->{steps} >= $st->{max_steps} || !@{ $st->{ctxs} } || EV::now - $st->{last_event} > 0.02) {
            $done = 'ended';
            EV::break;
        }
    });
    EV::run until $done;
    undef $check;
    undef $limit;

    # Tear down in a random order; DESTROYs may still act (the steps are
    # spent, so they do nothing but run).
    my @held = (@{ $st->{ctxs} }, @{ $st->{conns} });
    @{ $st->{ctxs} } = ();
    @{ $st->{conns} } = () if rand() < 0.5;    # else DESTROYs still find them
    splice(@held, int rand @held, 1) while @held;
    @{ $st->{conns} } = ();
    EV::run(EV::RUN_NOWAIT) for 1 .. 3;

    push @{ $st->{unexpected} }, map { "warning: $_" }
        grep { my $w = $_; !grep { $w =~ $_ } @EXPECTED_WARNINGS } @warnings;
    return ($st->{unexpected}, $st->{log}, $st->{events}, $done);
}

package Chaos::OnDestroy;

use Scalar::Util qw(weaken);

# Kept in a stash: its DESTROY acts, while the connection or the context
# that held it is being freed.
sub new {
    my ($class, $st, $peer) = @_;
    my $self = bless { st => $st, peer => $peer }, $class;
    weaken($self->{st});
    return $self;
}

sub DESTROY {
    my ($self) = @_;
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT';
    local $@;
    Chaos::act($self->{st}, 'DESTROY', $self->{peer});
}

1;
