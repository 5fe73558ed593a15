#!/usr/bin/env perl
# A tiny chat, server and two clients in one process and one EV loop.
#
#   perl -Mblib eg/demo.pl
#
# The server listens on a free port picked by the OS and broadcasts every
# message to all connected clients; "alice" and "bob" reach it on 127.0.0.1,
# chat a little and leave.  Every step is driven by a callback: the
# next line is sent once everybody has received the previous one.  The
# script prints a transcript and exits 0, or 1 if anything goes wrong or it
# takes longer than 5 seconds.

use strict;
use warnings;

use EV;
use EV::Websockets;

$| = 1;

my @script = (
    [ alice => 'hi bob!' ],
    [ bob   => 'hello alice. are we really in one process?' ],
    [ alice => 'yes: one EV loop, one server, two clients' ],
    [ bob   => 'neat. I have to go' ],
);
my %leave = (alice => [ 1000, 'bye' ], bob => [ 1001, 'going away' ]);

my $status = 0;
my $t0     = EV::time;

sub say_as {
    my ($who, $what) = @_;
    printf "%7.1f ms  %-7s %s\n", (EV::time - $t0) * 1000, "$who:", $what;
}

sub fail {
    my ($why) = @_;
    say_as(demo => "FAILED: $why");
    $status = 1;
    EV::break;
}

# One context serves, another connects: $server->connections then lists
# the server's side of each chat only.  Both run on the default EV loop.
# proxy => '': never send these loopback connections through a proxy named
# in the environment.
my $server  = EV::Websockets::Context->new(proxy => '');
my $clients = EV::Websockets::Context->new(proxy => '');

# ---------------------------------------------------------------- server

sub broadcast {
    my ($text) = @_;
    my @everyone = grep { $_->is_connected } $server->connections;
    $_->send($text) for @everyone;
    return scalar @everyone;
}

my $port = $server->listen(
    port => 0,

    on_connect => sub {
        my ($conn, $headers) = @_;
        my $name = (split m{/}, $headers->{Path})[-1] // 'anonymous';
        $conn->stash->{name} = $name;
        say_as(server => sprintf '%s connected from %s, path %s',
            $name, $conn->peer_address // '?', $headers->{Path});
        my $n = broadcast("* $name joined");
        say_as(server => "told $n client(s) that $name joined");
    },

    on_message => sub {
        my ($conn, $text) = @_;
        my $name = $conn->stash->{name};
        my $n = broadcast("<$name> $text");
        say_as(server => "relayed a line from $name to $n client(s)");
    },

    on_close => sub {
        my ($conn, $code, $reason) = @_;
        my $name = $conn->stash->{name};
        say_as(server => join ' ', "$name disconnected:", $code, $reason // ());
        broadcast("* $name left");
        finished('server', $name);
    },

    on_error => sub { fail("server: $_[1]") },
);

say_as(demo => "chat server listening on ws://127.0.0.1:$port/chat");

# ---------------------------------------------------------------- clients

my %client;        # name => connection
my $deliveries;    # broadcast copies still to arrive before $next runs
my $next;

sub expect {
    ($deliveries, $next) = @_;
}

sub join_chat {
    my ($name) = @_;
    $client{$name} = $clients->connect(
        url             => "ws://127.0.0.1:$port/chat/$name",
        connect_timeout => 2,

        on_connect => sub { say_as($name => 'connected') },

        on_message => sub {
            my ($conn, $text) = @_;
            say_as($name => "received \"$text\"");
            if ($deliveries && --$deliveries == 0) {
                my $step = $next;
                undef $next;
                $step->();
            }
        },

        on_close => sub {
            my ($conn, $code, $reason) = @_;
            say_as($name => join ' ', 'closed:', $code, $reason // ());
            finished('client', $name);
        },

        on_error => sub { fail("$name: $_[1]") },
    );
}

sub chat_line {
    my ($i) = @_;
    return sub {
        if ($i == @script) {    # all said: alice leaves first
            leave('alice');
            expect(1, sub { leave('bob') });    # bob hears "* alice left"
            return;
        }
        my ($who, $line) = @{ $script[$i] };
        say_as($who => "says \"$line\"");
        $client{$who}->send($line);
        expect(2, chat_line($i + 1));           # both get the broadcast
    };
}

sub leave {
    my ($name) = @_;
    my ($code, $reason) = @{ $leave{$name} };
    say_as($name => "leaving with close($code, \"$reason\")");
    $client{$name}->close($code, $reason);
}

# Two server-side and two client-side on_close calls end the demo.
my %gone;
sub finished {
    my ($side, $name) = @_;
    $gone{"$side $name"} = 1;
    return if keys %gone < 4;
    say_as(demo => 'everybody left; done');
    EV::break;
}

# alice joins; once she hears her own join notice, bob joins; once both
# have heard bob's, the conversation starts.
join_chat('alice');
expect(1, sub {
    join_chat('bob');
    expect(2, chat_line(0));
});

my $guard = EV::timer(5, 0, sub { fail('timed out after 5 seconds') });

EV::run;
undef %client;
undef $clients;
undef $server;
exit $status;
