#!/usr/bin/perl
# The other process of the pubsub tests: a PubsubNode (t/lib/PubsubNode.pm)
# bridged to the Redis at URL.
#
#   perl -Iblib/lib -Iblib/arch -It/lib t/bin/pubsub-node.pl URL [lifetime]
#
# Prints its port as the first line of stdout once its bridge has
# connected.  Exits on SIGTERM or after `lifetime` seconds (default 60),
# so a test that died leaves nothing behind.
use strict;
use warnings;
use EV;
use PubsubNode;

my ($url, $lifetime) = @ARGV;
$| = 1;
my $node;
$node = PubsubNode->new(redis => $url, on_connect => sub { print $node->port, "\n" if $node->connects == 1 });
my $term = EV::signal('TERM', sub { EV::break });
my $end  = EV::timer($lifetime // 60, 0, sub { EV::break });
EV::run;
