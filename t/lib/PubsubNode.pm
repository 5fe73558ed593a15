package PubsubNode;

# One process's part in the pubsub tests: a context bridged to Redis, with
# a listener on 127.0.0.1 whose clients drive it by message:
#
#     sub TOPIC | unsub TOPIC      -> "ok"   (this connection)
#     pub TOPIC DATA | bin TOPIC DATA -> "ok N" ($ctx->publish: N local)
#     stats                        -> "stats JSON" (pubsub_stats + connects)
#
# Every other message a client gets is a published one.  t/bin/pubsub-node.pl
# runs one in a process of its own; a test runs another in its own.

use strict;
use warnings;

use EV::Websockets;
use JSON::PP ();
use Scalar::Util qw(weaken);

sub new {
    my ($class, %o) = @_;
    my $self = bless { connects => 0, errors => [] }, $class;
    weaken(my $w = $self);
    $self->{ctx} = EV::Websockets::Context->new(pubsub => {
        redis      => $o{redis},
        prefix     => $o{prefix} // 'test:',
        on_connect => sub { $w->{connects}++; $o{on_connect}->() if $o{on_connect} },
        on_error   => sub { push @{ $w->{errors} }, $_[1] },
    });
    $self->{port} = $self->{ctx}->listen(
        port => 0, host => '127.0.0.1',
        on_message => sub { $w->obey(@_) if $w },
    );
    return $self;
}

sub obey {
    my ($self, $c, $msg) = @_;
    my $ctx = $self->{ctx};
    if ($msg =~ /\A(sub|unsub) (\S+)\z/) {
        $1 eq 'sub' ? $c->subscribe($2) : $c->unsubscribe($2);
        $c->send('ok');
    } elsif ($msg =~ /\A(pub|bin) (\S+) (.*)\z/s) {
        my $n = $ctx->publish($2, $3, binary => $1 eq 'bin' ? 1 : 0);
        $c->send("ok $n");
    } elsif ($msg eq 'stats') {
        my %s = (%{ $ctx->pubsub_stats }, connects => $self->{connects});
        $c->send('stats ' . JSON::PP::encode_json(\%s));
    } else {
        $c->send("unknown command: $msg");
    }
}

sub ctx      { $_[0]{ctx} }
sub port     { $_[0]{port} }
sub connects { $_[0]{connects} }
sub errors   { $_[0]{errors} }

1;
