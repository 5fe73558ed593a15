package PerlPeers;

# Shared parts of the interoperability tests against other Perl WebSocket
# implementations that run in this same process, on the same EV loop:
# t/interop/mojolicious.t (Mojolicious) and t/interop/anyevent.t
# (AnyEvent::WebSocket::Client).
#
#     use lib 't/lib';
#     use PerlPeers;
#     BEGIN { need_modules('libmojolicious-perl', 'Mojolicious') }
#
# Every conversation follows one script, whoever plays the client and the
# server, so that each pairing is tested the same way:
#
#   1. the client sends @MESSAGES (and, if it can, @FRAGMENTED in pieces)
#      and the server echoes each with its type;
#   2. the command "cmd:fragments" makes the server send @FRAGMENTED in
#      pieces itself;
#   3. the client pings, then "cmd:ping:<payload>" makes the server ping;
#   4. the client closes, or "cmd:close:<code>:<reason>" makes the server
#      close.
#
# A client is a hash ref (an "adapter") of code refs wrapping the peer's
# API -- send($payload, $is_binary), ping($payload), close($code, $reason),
# fragments(\@pieces, $is_binary) (optional) -- and rec, the record its
# callbacks fill.  A record is a hash ref: connected (true once open),
# got ([data, is_binary] of each message, commands excluded), pongs
# (payloads), errors (texts), close ([code, reason] once closed), protocol
# (the negotiated subprotocol), and whatever else a peer records.  A server
# keeps a list of records, one per connection, in order of arrival.

use strict;
use warnings;

use Test::More;
use EV;
use EV::Websockets;
use TestWS qw(run_until);
use Scalar::Util qw(blessed);
use Exporter 'import';

our @EXPORT = qw(need_modules @MESSAGES @FRAGMENTED new_record our_server
    server_command connect_ok exchange_ok close_ok payload_ok $MiB);

our $MiB = 1 << 20;

# Load @modules, or end the test: skipped, with the reason, on a developer
# machine; BAIL_OUT in CI (CI set), where nothing may skip.  $package is the
# Debian package that provides them, named in the reason.  Call it in a
# BEGIN block so that later `use` lines find the modules loaded.
sub need_modules {
    my ($package, @modules) = @_;
    for my $module (@modules) {
        next if eval "require $module; 1";
        my ($err) = split /\n/, $@;
        my $why = "$module is not available (Debian: apt-get install $package): $err";
        BAIL_OUT("CI must run the interoperability tests: $why") if $ENV{CI};
        plan skip_all => $why;
    }
    return;
}

# The messages each client sends: [ name, payload, is_binary ].  Payloads
# are bytes (text as UTF-8) and come back as bytes.
srand(82);
my $compressible = substr('All work and no play makes Jack a dull boy. ' x 30000, 0, $MiB);
my $random       = pack('N*', map { int rand 2**32 } 1 .. $MiB / 4);
# Sent twice: with context takeover the second copy refers back into the
# first, so a peer that lost (or kept when it should not) the context shows.
my $again        = pack('N*', map { int rand 2**32 } 1 .. 500);
our @MESSAGES = (
    [ 'text',                    'hello',                                          0 ],
    [ 'UTF-8 text',              "caf\xc3\xa9 \xe2\x98\xba \xf0\x9f\x98\x80",      0 ],
    [ 'binary',                  "\x00\x01\x02\xfe\xff",                           1 ],
    [ 'empty text',              '',                                               0 ],
    [ 'empty binary',            '',                                               1 ],
    [ '1 MiB compressible text', $compressible,                                    0 ],
    [ '1 MiB random binary',     $random,                                          1 ],
    [ '2000 random bytes',       $again,                                           1 ],
    [ 'the same 2000 bytes',     $again,                                           1 ],
);

# Fragmented messages: [ name, [ pieces ], is_binary ].  The text one splits
# a UTF-8 character across two frames; the binary one has 100 KB pieces,
# more than one read.
our @FRAGMENTED = (
    [ 'fragmented text',   [ 'frag-1 ', "frag-2 \xe2\x98", "\xba frag-3" ], 0 ],
    [ 'fragmented binary', [ 'x' x 100_000, 'y' x 100_000, 'z' ],           1 ],
);

# A fresh record (see above), with %extra added.
sub new_record {
    my (%extra) = @_;
    return { connected => 0, got => [], pongs => [], errors => [], %extra };
}

# What a server does with message $data from its client: runs the command
# and returns true, or returns false if it is not a command (then it is to
# be echoed).  %do holds the server's own code refs: fragments (send
# @FRAGMENTED in pieces), ping($payload), close($code, $reason).
sub server_command {
    my ($data, %do) = @_;
    return 0 unless $data =~ /\Acmd:(\w+)(?::(.*))?\z/s;
    my ($cmd, $arg) = ($1, $2 // '');
    if    ($cmd eq 'fragments') { $do{fragments}->() }
    elsif ($cmd eq 'ping')      { $do{ping}->($arg) }
    elsif ($cmd eq 'close')     { $do{close}->(split /:/, $arg, 2) }
    else                        { die "unknown command '$data'" }
    return 1;
}

# Our server: listen(port => 0, %opt) in $ctx, echoing, running the
# commands, and recording each connection (protocol: get_protocol in
# on_connect; headers: the request headers).  Returns ($port, \@records).
sub our_server {
    my ($ctx, %opt) = @_;
    my @records;
    my $rec = sub { $_[0]->stash->{rec} };
    my $port = $ctx->listen(
        port       => 0,
        host       => '127.0.0.1',
        %opt,
        on_connect => sub {
            my ($conn, $headers) = @_;
            push @records, $conn->stash->{rec} =
                new_record(connected => 1, protocol => $conn->get_protocol, headers => $headers);
        },
        on_message => sub {
            my ($conn, $data, $is_binary) = @_;
            return if !$is_binary && server_command($data,
                fragments => sub {
                    for my $f (@FRAGMENTED) {
                        my ($name, $pieces, $bin) = @$f;
                        $conn->send_fragment($pieces->[$_], $bin, $_ == $#$pieces) for 0 .. $#$pieces;
                    }
                },
                ping  => sub { $conn->send_ping($_[0]) },
                close => sub { $conn->close(@_) },
            );
            push @{ $rec->($conn)->{got} }, [ $data, $is_binary ];
            $is_binary ? $conn->send_binary($data) : $conn->send($data);
        },
        on_pong  => sub { push @{ $rec->($_[0])->{pongs} }, $_[1] },
        on_error => sub { push @{ $rec->($_[0])->{errors} }, $_[1] },
        on_close => sub { $rec->($_[0])->{close} = [ $_[1], $_[2] ] },
    );
    return ($port, \@records);
}

# Record $rec without its messages (which may be megabytes), for diag.
sub brief {
    my ($rec) = @_;
    my %b = map { $_ => blessed($rec->{$_}) ? ref $rec->{$_} : $rec->{$_} } keys %$rec;
    $b{got} = scalar @{ $rec->{got} || [] };
    return \%b;
}

# $got (bytes or undef) is $want; eq rather than is(), so that a mismatch
# does not dump a megabyte.
sub payload_ok {
    my ($got, $want, $name) = @_;
    ok(defined $got && $got eq $want, $name)
        or diag('got ' . (defined $got ? length($got) . ' bytes' : 'nothing') . ', expected ' . length($want));
}

# Wait until client adapter $cl is connected and, with $records (the list
# of a server's connection records; the connection must not be open yet),
# until the server has its record.  Returns that record (true without
# $records), or undef if the client failed.
sub connect_ok {
    my ($name, $cl, $records) = @_;
    my $rec = $cl->{rec};
    my $i   = $records ? @$records : undef;    # this connection's record, once the server accepts it
    my $ready = sub { $rec->{connected} && (!$records || $records->[$i]) };
    run_until(sub { $ready->() || @{ $rec->{errors} } || $rec->{close} }, 5);
    ok($ready->(), "$name: connected") or return diag explain brief($rec);
    return $records ? $records->[$i] : 1;
}

# Steps 1 to 3 of the script (see the top) between client adapter $cl and
# the server whose connection records are in @$records; the connection must
# not be open yet.  %opt: messages (default \@MESSAGES), the messages the
# client sends.  Returns the server's record of this connection, or undef
# if the conversation could not go on.
sub exchange_ok {
    my ($name, $cl, $records, %opt) = @_;
    my $rec = $cl->{rec};
    my $srv = connect_ok($name, $cl, $records) or return;

    # 1. Every message at once, then the fragmented ones in pieces; 2. the
    # server's fragmented messages.  All must come back whole, in order,
    # with their type.
    my @messages = @{ $opt{messages} || \@MESSAGES };
    my @expect   = @messages;
    $cl->{send}->($_->[1], $_->[2]) for @messages;
    for my $f ($cl->{fragments} ? @FRAGMENTED : ()) {
        $cl->{fragments}->($f->[1], $f->[2]);
        push @expect, [ "$f->[0] sent in pieces", join('', @{ $f->[1] }), $f->[2] ];
    }
    my $sent = @expect;
    $cl->{send}->('cmd:fragments', 0);
    push @expect, map { [ "$_->[0] from the server", join('', @{ $_->[1] }), $_->[2] ] } @FRAGMENTED;
    run_until(sub { @{ $rec->{got} } >= @expect || $rec->{close} }, 10);
    is(scalar @{ $rec->{got} }, scalar @expect, "$name: one message back per message, plus the server's")
        or diag explain [ map { [ length $_->[0], $_->[1] ] } @{ $rec->{got} } ];
    for my $k (0 .. $#expect) {
        my ($what, $payload, $binary) = @{ $expect[$k] };
        my ($data, $bin) = @{ $rec->{got}[$k] || [] };
        payload_ok($data, $payload, "$name: $what arrived intact");
        is($bin, $binary, "$name: $what arrived as " . ($binary ? 'binary' : 'text'));
    }
    is(scalar @{ $srv->{got} }, $sent, "$name: the server received each message once, reassembled");
    ok(!$rec->{close}, "$name: still open")
        or return diag explain { client => brief($rec), server => brief($srv) };

    # 3. Pings both ways, answered with the payload.
    $cl->{ping}->('client ping');
    ok(run_until(sub { grep { $_ eq 'client ping' } @{ $rec->{pongs} } }),
        "$name: the server answered the client's ping with a pong carrying its payload")
        or diag explain $rec->{pongs};
    $cl->{send}->('cmd:ping:server ping', 0);
    ok(run_until(sub { grep { $_ eq 'server ping' } @{ $srv->{pongs} } }),
        "$name: the client answered the server's ping with a pong carrying its payload")
        or diag explain $srv->{pongs};

    is_deeply($rec->{errors}, [], "$name: no client errors");
    is_deeply($srv->{errors}, [], "$name: no server errors");
    return $srv;
}

# Step 4: close from $by ('client': the adapter's close($code, $reason);
# 'server': the close command), wait until both sides have closed, and
# compare [code, reason] on each side with $expect{client} and
# $expect{server}, and the errors with $expect{client_errors} and
# $expect{server_errors} (default none).
sub close_ok {
    my ($name, $cl, $srv, $by, $code, $reason, %expect) = @_;
    my $rec = $cl->{rec};
    if ($by eq 'server') {
        $cl->{send}->("cmd:close:$code:$reason", 0);
    }
    else {
        # An undef code calls close() without arguments, an undef reason
        # close($code).
        $cl->{close}->(defined $code ? ($code, defined $reason ? $reason : ()) : ());
    }
    ok(run_until(sub { $rec->{close} && $srv->{close} }, 5), "$name: both sides closed")
        or diag explain { client => $rec->{close}, server => $srv->{close} };
    is_deeply($rec->{close}, $expect{client}, "$name: the client's close code and reason");
    is_deeply($srv->{close}, $expect{server}, "$name: the server's close code and reason");
    is_deeply($rec->{errors}, $expect{client_errors} || [], "$name: client errors");
    is_deeply($srv->{errors}, $expect{server_errors} || [], "$name: server errors");
    return;
}

1;
