package EV::Websockets;

use strict;
use warnings;

use EV ();

our $VERSION = '0.11';

require XSLoader;
XSLoader::load('EV::Websockets', $VERSION);

_set_debug(1) if $ENV{EV_WS_DEBUG};

# Warnings from inside the event loop (a callback's exception, a bad
# on_handshake header), called by the XS under G_EVAL: a __WARN__ handler
# or an exception's overloading that dies cannot unwind through the loop.
sub _warn { warn @_ }

package EV::Websockets::Context;

# Split a proxy URL into (host, port).  Kept in Perl so tests can call it
# directly; the scheme and any userinfo are stripped, IPv6 brackets removed.
sub _parse_proxy {
    my ($url) = @_;
    return () if !defined $url || $url eq '';
    $url =~ s{^\w+://}{};
    $url =~ s{^[^@/]*@}{};
    my ($host, $port);
    if ($url =~ /^\[([^\]]*)\](?::(\d+))?/) {
        ($host, $port) = ($1, $2);
    } elsif ($url =~ /^([^:\/]+)(?::(\d+))?/) {
        ($host, $port) = ($1, $2);
    } else {
        return ();
    }
    return ($host, defined $port ? $port : '1080');
}

1;
__END__

=encoding utf8

=head1 NAME

EV::Websockets - WebSocket client and server for the EV event loop

=head1 SYNOPSIS

A client:

    use EV;
    use EV::Websockets;

    my $ctx = EV::Websockets::Context->new(loop => EV::default_loop);

    my $conn = $ctx->connect(
        url        => 'ws://example.com/ws',
        on_connect => sub { my ($conn) = @_; $conn->send("Hello, WebSocket!"); },
        on_message => sub { my ($conn, $data) = @_; print "Got: $data\n"; },
        on_close   => sub { my ($conn, $code, $reason) = @_;
                            print "Closed: $code " . ($reason // "") . "\n"; },
        on_error   => sub { my ($conn, $err) = @_; print "Error: $err\n"; },
    );

    EV::run;

A server that echoes every message and can broadcast to its clients:

    my $port = $ctx->listen(
        port       => 9001,
        on_connect => sub { my ($conn, $headers) = @_;
                            print "client on $headers->{Path}\n";
                            $conn->subscribe('all'); },
        on_message => sub { my ($conn, $data, $is_binary) = @_;
                            $is_binary ? $conn->send_binary($data)
                                       : $conn->send($data); },
    );

    $ctx->publish(all => "broadcast!");   # each open subscriber, once

=head1 DESCRIPTION

EV::Websockets speaks the WebSocket protocol (RFC 6455) as a client and as a
server inside the L<EV> event loop, for programs that already use EV. It is a
drop-in replacement for EV::Websockets 0.10, which was built on
libwebsockets: same packages, methods, options, callback arguments, states
and croak messages, with the defects listed under
L</DIFFERENCES FROM THE LIBWEBSOCKETS-BASED ORIGINAL> fixed. Loading it
loads L<EV>; C<$EV::Websockets::VERSION> holds its version.

The core is written in Rust: non-blocking sockets from mio, TLS from rustls,
DEFLATE from zlib-rs, its own frame codec and HTTP handshakes (with
tungstenite's types and key derivation), and a small XS layer that binds it
to EV watchers. All protocol work happens in Rust; your callbacks are called
from the EV loop after the Rust code has returned, never from inside it.

Some properties worth knowing:

=over 4

=item *

Nothing blocks the loop. C<connect> returns at once; host names are resolved
on a helper thread, and the result wakes the loop.

=item *

Sends are queued, never written inside the call. What the callbacks of a
connection's read queue on that connection (an echo, a reply) is written in
one go when they return; everything else queued during a loop iteration is
written in one go per connection just before the loop waits again. A burst
of sends costs few system calls. Use C<send_queue_size> and C<on_drain> for
backpressure.

=item *

An idle context (no listener, no connection) holds no active watcher: it
never spins and does not keep C<EV::run> alive.

=item *

Messages are delivered whole: fragmented messages are reassembled, whatever
their size, up to C<max_message_size>. Pings are answered automatically.

=back

=head2 Status

This release of the Rust core implements ws:// clients and servers, TLS
(wss:// with rustls, TLS listeners, mutual TLS), HTTP and SOCKS5 proxies,
keepalive pings, redirects, C<adopt> and permessage-deflate compression on
both sides.

=head1 EV::Websockets::Context

A context owns listeners and connections and runs them on one EV loop.

=head2 new

    my $ctx = EV::Websockets::Context->new(%options);

=over 4

=item loop => $loop

The L<EV::Loop> to run on; default C<EV::default_loop>. Anything else croaks
with a message that names C<EV::Loop>.

=item proxy => $host, proxy_port => $port

HTTP proxy for outgoing connections: C<$host> is a host name or IP address
(no scheme, no port), C<proxy_port> its port, default 1080. The client
sends C<CONNECT host:port HTTP/1.1> (with C<Host: host:port>) for ws:// and
wss:// alike; TLS runs inside the tunnel. An answer other than 2xx fails
the connection through C<on_error>.

Without C<proxy> (or with C<< proxy => undef >>), the first defined of
C<$ENV{https_proxy}>, C<$ENV{http_proxy}> and C<$ENV{all_proxy}> is used,
read when the context is created (C<proxy_port> does not apply to it). In
these variables, C<http://>, C<https://> or no scheme means HTTP CONNECT
(spoken to the proxy in the clear), with C<user:pass@> sent as
C<Proxy-Authorization: Basic>; C<socks5://> and
C<socks5h://> mean SOCKS5 (with username/password authentication when
given): with C<socks5://> the server's name is resolved here (off the loop)
and its address sent, with C<socks5h://> the proxy resolves the name. The
port defaults to 1080; an IPv6 proxy goes in brackets. A value that is
empty, has another scheme or cannot be parsed means no proxy.

Hosts listed in C<no_proxy> / C<NO_PROXY> (comma-separated names, domain
suffixes, IP addresses, or C<*>) are reached directly, also with an
explicit C<proxy>. C<< proxy => "" >> turns off every proxy, including the
environment's. For proxy failures see L</on_error messages>.

=item ssl_cert => $file, ssl_key => $file

Client certificate and key (PEM) for mutual TLS, shown to wss:// servers
that ask for one (see L</Making certificates>). Both are needed together. Keys may be PKCS#8, PKCS#1
(RSA) or SEC1 (EC); the key must match the certificate.

=item ssl_ca => $file

CA certificates (PEM) used as the trust store for verifying servers,
replacing the system roots (like curl's C<--cacert>); see
L</Making certificates> for making a CA of your own. Without it the
system's trust store is used (on Debian F</etc/ssl/certs>;
C<SSL_CERT_FILE> and C<SSL_CERT_DIR> in the environment override where it
is looked for). The trust store is loaded when the context's first
verified wss:// connection starts; if the system has no trusted
certificate, that C<connect> croaks
C<connect: no trusted certificates found on this system>.

=item ssl_init => $bool

Accepted for compatibility and has no effect: the TLS library used (rustls)
keeps no process-global state, so this module coexists with OpenSSL,
picotls or anything else in the same process.

=item pubsub => { redis => $url, ... }

Bridges the context's topics to a Redis server, so that a C<publish> in
any process (one per core with C<reuse_port>, or on several machines)
reaches the subscribers of all; see
L</"Topics across processes (Redis)">.  The keys:

=over 4

=item redis => 'redis://[[user]:password@]host[:port][/db]'

Required.  The host is an IP address (IPv6 in brackets) or a name,
resolved off the loop as connections' names are; the port defaults to
6379, the database to 0.  A password (percent-encoded in the URL) is sent
with C<AUTH>, with the user name for a Redis 6 ACL user.  C<rediss://>
(TLS) is not supported.

=item prefix => $string

The Redis channel of topic C<T> is C<prefix . T>; default C<"ews:">.

=item on_connect => sub { my ($ctx) = @_; ... }

Called each time the bridge has (re)connected, logged in and
(re)subscribed to the channels of every topic with local subscribers.

=item on_error => sub { my ($ctx, $message) = @_; ... }

Called once per failure: the connection refused or lost, a name that
does not resolve, C<AUTH> refused, no answer in 5 seconds.  A retry
follows by itself after 0.1 s, doubling up to 5 s (each spread by 20 %).

=back

Unknown keys and bad values croak, e.g.
C<"pubsub: unknown key 'host' (known: redis, prefix, on_connect, on_error)">,
C<"pubsub: redis is required (a redis:// URL)">,
C<"pubsub: redis: scheme must be redis://, not http://">,
C<"pubsub: on_error must be a code reference">.  The bridge starts
connecting when the loop next runs; neither callback runs inside C<new>.
Without C<pubsub> nothing of this exists and topics cost what they
did.

=back

Unreadable or mismatched certificate and key files, or C<ssl_cert> without
C<ssl_key>, croak C<< "Failed to create context: <reason>" >>, naming the
file (see L</Exceptions (croak)>). Unknown options warn, as for
C<connect>.

Contexts may be created and destroyed freely, also in forked children
(see L</THREADS AND FORK>).

=head2 connect

    my $conn = $ctx->connect(url => 'ws://host:port/path', %options);

Starts a client connection and returns its L</EV::Websockets::Connection>
at once, in state C<connecting>. No callback fires inside C<connect>.

=over 4

=item url => $url (required)

C<ws://host[:port]/path> or C<wss://host[:port]/path>; the scheme is
case-insensitive. The port defaults to 80 (ws) or 443 (wss); IPv6 literals go
in brackets (C<ws://[2001:db8::1]:9001/>). The query is sent
(C<ws://host?x=1> requests C</?x=1>); a fragment never is. Credentials in
the URL (C<user:pass@>) are refused: pass an C<Authorization> header instead.
A URL holding a space or a control character (CR, LF, tab, NUL, ...)
anywhere croaks rather than being cleaned up; percent-encode such
characters (C<%20>).

=item protocol => $list

Subprotocols to offer, sent verbatim as C<Sec-WebSocket-Protocol> (a comma
list is allowed). Each name must be an HTTP token (letters, digits and
C<!#$%&'*+-.^_`|~>), else C<connect> croaks C<< protocol: '<name>' is not a
valid subprotocol name >>. The one the server picks is available from
C<get_protocol>.

=item headers => { Name => 'value', ... }

Extra request headers. C<Host> or C<Origin> (any case) replaces the
module's own; a C<User-Agent> is sent only if you give one. C<Upgrade>,
C<Connection>, C<Sec-WebSocket-Key>, C<Sec-WebSocket-Version>,
C<Sec-WebSocket-Extensions> and C<Sec-WebSocket-Accept> belong to the
handshake and croak, as do names that are not HTTP tokens (empty, or with
a space, a colon, CR, LF or any other character outside the token set) and
values containing CR, LF, NUL or another control character (a tab is
allowed).

=item connect_timeout => $seconds

Deadline for the whole opening: DNS, TCP (every address tried, see
L</Addresses>), proxy, TLS and the HTTP upgrade. When it passes, the socket is closed at once, C<on_error> fires once with
C<"connect timeout">, the state becomes C<closed>, and nothing fires
afterwards. Without this option (or with 0, a negative value or undef) a
deadline of 30 seconds applies. Redirects do not restart it.

=item max_message_size => $bytes

Largest incoming message accepted, in bytes, counted after reassembly
(and decompression); 0 (or undef), the default for C<connect>, means
unlimited (servers default to 16 MiB, see L</listen>). A message of
exactly this size is accepted. A larger one fires C<on_error> with
C<"message exceeds max_message_size">, then the connection is closed with
code 1009 and C<on_close> reports 1009. The check is made on each frame's
declared length, so an oversized message is refused before its bytes are
read or buffered. A compressed message is inflated in steps as its bytes
come out, and refused as soon as the output passes the limit: a small
frame that would inflate to gigabytes (a deflate bomb) costs no more than
the limit.

With 0 (unlimited) a peer can make the process buffer a message of any
size, in one frame or in any number of fragments: set a limit on every
client connection that faces untrusted servers.

=item ssl_verify => 0

Turns off all certificate checks for wss:// (default: on): any issuer, any
name, expired or not. The server's signature over the handshake is still
checked, so the peer holds the key of the certificate it showed, but
anyone in the path can show one: the connection is encrypted, not
authenticated. By default the certificate must chain to the context's
C<ssl_ca> (or the system roots) and name the host of the URL (a DNS name,
or an IP address for IP literals); SNI is sent for names. TLS 1.2 and 1.3
are offered. TLS failures before the connection opens come as
C<< on_error("TLS handshake failed: <reason>") >>.

=item compression => 0

Do not offer permessage-deflate (RFC 7692). By default the client offers
it (C<permessage-deflate; client_no_context_takeover;
client_max_window_bits>): it compresses each message on its own, so it
keeps no compressor between messages, and accepts any window size and
context mode the server chooses. When the server accepts, its answer is
in C<on_connect>'s headers as C<Sec-WebSocket-Extensions>; messages from
the server are inflated (bounded by C<max_message_size>) and messages of
32 bytes or more are sent compressed. An answer the client cannot honour
(an extension it did not offer, bad parameters) fails the handshake with
an C<on_error> (see L</on_error messages>).

=item compression => $preset | \%settings

Offer permessage-deflate with the window, memory level and context
takeover of a preset or a settings hash (see L</Compression presets> under
C<listen>), the same as the server's. C<'shared'> offers
C<permessage-deflate; server_no_context_takeover;
client_no_context_takeover; client_max_window_bits>: no zlib state is kept
either way. A preset that keeps context offers no
C<client_no_context_takeover>; one with a window below 15 bits also
offers C<client_max_window_bits=N; server_max_window_bits=N>
(C<dedicated_3kb>: C<permessage-deflate; client_max_window_bits=9;
server_max_window_bits=9>). The client holds the server to its offer:
an answer without C<server_no_context_takeover> when it was asked for,
or without C<server_max_window_bits> of at most N, fails the handshake
(C<bad permessage-deflate answer>). The client compresses with the
smaller of its own window and the one the answer allows, and inflates
with the window the answer names.

=item close_timeout => $seconds

How long a closing handshake may take (default 5; 0, a negative value or
undef mean the default): after C<close>, or after the peer's close frame,
the module waits this long for the peer's close frame or, on the client,
for the server to close TCP. When the time is up the socket is dropped and
C<on_close> reports 1006 (unless the peer's close frame came).

=item idle_timeout => $seconds

Close an open connection on which nothing went either way (no frame read
or written, pings and pongs included) for this long (default off; 0 or undef
mean off): it starts closing with code 1001 and
reason C<"idle timeout">, then the closing handshake and C<close_timeout>
run as after C<close>. Independent of C<ping_interval>, except that pings
and their pongs are traffic: a connection that keeps pinging is not idle.
It runs while receiving is paused too.

=item max_backpressure => $bytes

Most payload bytes the send queue (L</send_queue_size>) may hold; 0 (or
undef), the default, means no limit. A C<send> or C<send_binary> whose
message would take C<send_queue_size> past this many bytes is not queued:
it returns false, the message is dropped, and L</dropped_messages> counts
it. A message larger than the limit is dropped even on an empty queue. The
message counts at its size before compression. For C<send_fragment> only
a message's first fragment is checked: once a fragmented message has
started, its later fragments are always queued, so it can be finished.
Pings and pongs (and the automatic replies) are never limited.

=item close_on_backpressure_limit => 0|1

With a true value, a message over C<max_backpressure> does not leave the
connection as it was: the message is dropped (and counted) and the
connection starts closing with code 1008 and reason C<"backpressure limit
exceeded">, after what is already queued. The send returns false, as
without this option. Default 0: only the message is dropped.

=item ping_interval => $seconds, ping_timeout => $seconds

Keepalive (default off; no timer exists while it is off). After
C<ping_interval> seconds without hearing from the peer a ping is sent; if
no pong arrives within C<ping_timeout> (default: C<ping_interval>),
C<on_error> fires with C<"ping timeout">, the connection is closed with
1011 and C<on_close> follows. Any data received counts as hearing from the
peer. The pongs are delivered to C<on_pong> like any other. C<ping_timeout>
alone does nothing. While receiving is paused (C<pause_recv>) keepalive is
suspended, since the pong could not be read.

=item on_connect, on_message, on_close, on_error, on_pong, on_drain

Callbacks, see L</CALLBACKS>. For a client, the second argument of
C<on_connect> is a hash of the server's 101 response headers.

=back

The request carries C<Host> (with the port when it is not the scheme's
default), C<Origin: http(s)://host>, the upgrade headers, the offered
subprotocols, then your C<headers>; no C<User-Agent> unless you give one.
Redirects (301, 302, 303, 307, 308 with C<Location>, to ws, wss, http or
https URLs) are followed, at most 5 times; C<Authorization>, C<Cookie> and
C<Proxy-Authorization> from your C<headers> are only sent again to the
same origin (scheme, host and port).

A failure before the handshake completes fires C<on_error> only, never
C<on_close>; the state inside it is C<closed>.

=head3 Addresses

A host name may resolve to several addresses, IPv6 and IPv4 ones. They
are dialled the Happy Eyeballs way (RFC 8305): IPv6 addresses first, then
the families alternate (each in the resolver's order). The first address
is tried at once; each next one 250 ms after the previous attempt started
if no attempt has connected by then, or at once when an attempt fails.
Earlier attempts keep going meanwhile; the first to connect is used and
the others are closed. So an address that never answers (an IPv6 route
that drops packets, say) delays the connection by 250 ms, not by
C<connect_timeout>. C<connect_timeout> bounds all the attempts together
(and the rest of the opening); when every address has failed,
C<on_error> reports the last failure (C<connect failed: Connection
refused>), or C<connect timeout> when attempts were still waiting at the
deadline. The connection to a proxy is made the same way.

=head2 listen

    my $port = $ctx->listen(port => 9001, %options);

Starts a WebSocket server and returns the port it is bound to (useful with
C<< port => 0 >>). Each connection that completes the upgrade gets the
listener's callbacks and C<max_message_size>. Server connections are never
in state C<connecting>: they exist from the completed handshake on, and a
connection is already listed by C<connections> inside its own C<on_connect>.
A context may have several listeners.

=over 4

=item port => $port

0 to 65535; 0 (the default) lets the system pick. Binding a port already
in use croaks.

=item host => $address

Bind one address only, given as an IP address (C<'127.0.0.1'>, C<'::1'>);
a host name croaks C<< Failed to create vhost for listening: host must be
an IP address, not '<host>' >>. By default the listener binds B<all
interfaces>, IPv4 and IPv6 (one dual-stack socket on C<::>; C<0.0.0.0>
where the system has no IPv6), so it is reachable from the network: pass
C<< host => '127.0.0.1' >> for a local-only server.

=item reuse_port => 1

Set C<SO_REUSEPORT>, so that several processes can listen on one port.

=item name => $name

Listener name, default C<'server'>; C<'default'> is reserved.

=item protocol => $name or [ $name, ... ]

Subprotocols this server speaks, in order of preference. A client offering
none is accepted without one; a client offering one of them gets the first
of the server's list that it offered; a client offering only others gets
C<400 Bad Request>. A listener without C<protocol> accepts every client and
answers without a protocol. Each name must be an HTTP token, else
C<listen> croaks C<< Failed to create vhost for listening: protocol:
'<name>' is not a valid subprotocol name >> (C<adopt> without the prefix).

=item headers => { Name => 'value', ... } (response headers)

Headers added to every 101 response, after the module's own. What is
refused for C<connect> is refused here (the handshake's own names,
including C<Sec-WebSocket-Accept>; names that are not tokens; CR, LF, NUL
or other control characters in values), croaking
C<< Failed to create vhost for listening: headers: ... >>.

=item on_handshake => sub { my ($headers) = @_; ... }

Called before the 101 response with the request headers (the same hash as
server C<on_connect> receives), in scalar context. Return a hash ref to
accept and add its pairs to this response, another true value to accept, or
a false value to reject: the client gets C<403 Forbidden> and no server
callback fires for it. If it dies, the connection is rejected with the
warning C<< "EV::Websockets: exception in on_handshake: <err>" >>. The
returned pairs are held to the rules of the C<headers> option: if one
breaks them (a name that is not a token, a value with CR or LF, a name the
handshake sets), nothing of the hash is sent, the client gets C<500
Internal Server Error> instead, no server callback fires, and the module
warns C<< "EV::Websockets: on_handshake returned an invalid header:
<why>" >>, for example C<< value of 'X-Note' contains CR, LF or NUL >>.

=item max_message_size => $bytes

As for C<connect>, but the default (option not given, or undef) is
16 MiB (16777216 bytes): a client cannot make the server buffer more for
one message unless you allow it. 0 means unlimited.

=item close_timeout, ping_interval, ping_timeout

As for C<connect>.

=item idle_timeout

As for C<connect>.

=item max_backpressure, close_on_backpressure_limit

As for C<connect>: the limit on what each accepted connection queues for
its client.

=item handshake_timeout => $seconds

Deadline for a client to complete TLS (for wss://) and send a complete
upgrade request (default 10; 0, a negative value or undef mean the
default). A client that misses it is disconnected without an answer.

=item max_header_size => $bytes

Largest upgrade request head accepted (default 16384; 0 or undef mean the
default). A longer head, or one with more than 100 header lines (a fixed
limit), is answered C<431 Request Header Fields Too Large>.

=item compression => 1

Negotiate permessage-deflate (RFC 7692) with clients that offer it
(default off). The first acceptable offer wins; its C<server_max_window_bits>
and C<server_no_context_takeover> are honoured, offers with unknown or
malformed parameters are declined. Messages of 32 bytes or more are sent
compressed; compressed messages are inflated, bounded by
C<max_message_size>. By default the answer asks both sides to compress
each message on its own (C<server_no_context_takeover;
client_no_context_takeover>), so a connection holds no zlib state between
messages: an idle compressed connection costs what an uncompressed one
does (about 1.6 KB here). A client that keeps its context although asked
not to (Mojolicious 9.31 does) fails with 1007 on the first message that
refers back to an earlier one; serve such clients with
C<< context_takeover => 1 >>.

=item context_takeover => 1

With C<< compression => 1 >>, keep each side's compression context between
messages as the client offered (the RFC 7692 default): similar messages
shrink much further, but each connection that has sent a compressed
message holds its compressor (about 320 KB), and one that received
compressed messages from a client keeping its context holds an inflater
(about 45 KB). The C<dedicated_*> presets keep context for far less. With
a settings hash that has no C<context_takeover> of its own, this option
decides it; with a preset, or a hash that says otherwise, a contradicting
C<context_takeover> croaks (C<< context_takeover => 1 contradicts
compression => 'shared' >>).

=item compression => $preset | \%settings

Negotiate permessage-deflate with a window, a memory level and context
takeover chosen for memory; see L</Compression presets>.

=item ssl_cert => $file, ssl_key => $file, ssl_ca => $file

Serve wss:// with this certificate chain and key (PEM), TLS 1.2 or 1.3
(L</Making certificates> shows how to make them). With C<ssl_ca>, clients must present a certificate signed by one of its
CAs (mutual TLS); a client without one is refused during the TLS
handshake. Unreadable or mismatched files croak
C<< "Failed to create vhost for listening: <reason>" >>. Empty strings
count as not given.

=item on_connect, on_message, on_close, on_error, on_pong, on_drain (server side)

Callbacks, see L</CALLBACKS>. For a server, the second argument of
C<on_connect> is a hash of request headers.

=back

The request header hash (for C<on_handshake> and server C<on_connect>)
holds, when present and non-empty: C<Path> (the request path without the
query, percent-decoded, with C<.>, C<..> and C<//> resolved), C<Query> (the
raw query string, without C<?>), C<URI> (the raw request target), C<Host>,
C<Origin>, C<Cookie>, C<Authorization>, C<Sec-WebSocket-Protocol> (the list
the client offered), C<User-Agent>, C<X-Forwarded-For>, and every other
request header under its canonical name (C<X-Foo-Bar>). A header sent on
several lines is one value here, its lines joined with C<", ">
(C<"; "> for C<Cookie>); the upgrade is judged on the same combined
values.

Requests that are not WebSocket upgrades are answered C<426 Upgrade Required>
(with C<Sec-WebSocket-Version: 13>), malformed upgrades (not C<GET>, not
HTTP/1.1, a target not starting with C</>, no C<Host>, no
C<Connection: Upgrade>, a bad C<Sec-WebSocket-Key>, C<Host>,
C<Sec-WebSocket-Key> or C<Sec-WebSocket-Version> on more than one line)
C<400 Bad Request> (426 for an unsupported version); the server then closes the socket. Nothing that goes wrong before the
upgrade completes on a server (a refused or malformed request, a failed
TLS handshake, a client that leaves or misses C<handshake_timeout>) fires a
callback.

=head3 Compression presets

C<compression> on C<listen>, C<adopt> and C<connect> takes, besides 0 and
1, a preset name (uWebSockets' names) or a hash:

    compression => 'dedicated_3kb'
    compression => { window_bits => 10, mem_level => 2, context_takeover => 1 }

=over 4

=item C<'shared'>

No context takeover either way (what C<< compression => 1 >> is on a
server): each message is compressed on its own with a stream borrowed
from a per-thread spare, so a connection keeps no zlib state.

=item C<'dedicated_3kb'>, C<'dedicated_4kb'>, C<'dedicated_8kb'>, C<'dedicated_16kb'>, C<'dedicated_32kb'>, C<'dedicated_64kb'>, C<'dedicated_128kb'>, C<'dedicated_256kb'>

Context takeover both ways, with window bits and memory level 9 and 1, 9
and 2, 10 and 3, 11 and 4, 12 and 5, 13 and 6, 14 and 7, and 15 and 8: the
sizes zlib's deflate state would have (2^(window_bits+2) +
2^(mem_level+9) bytes).

=item C<< { window_bits => 9..15, mem_level => 1..9, context_takeover => 0|1 } >>

Any of the three (defaults 15, 8 and 1; on a server without
C<context_takeover> in the hash, the C<context_takeover> option decides).
Bad values croak: C<compression: window_bits must be from 9 to 15>,
C<compression: mem_level must be from 1 to 9>, C<compression:
context_takeover must be 0 or 1>, C<compression: unknown setting 'x'
(known: window_bits, mem_level, context_takeover)>, and for a name that is
none of the presets C<compression: unknown preset 'x'>.

=back

Negotiation (RFC 7692): a server with a window below 15 bits answers
C<server_max_window_bits=N> (the offer's value if smaller), and asks the
client for C<client_max_window_bits=N> (the offer's value if smaller)
when the offer has C<client_max_window_bits>; browsers, Python websockets
and Node's ws do. Without it the client may compress with a 15-bit window,
so the server inflates with one: with context kept, that direction then
keeps a 32 KB window. Two of our own sides with C<dedicated_3kb> agree on
C<permessage-deflate; server_max_window_bits=9; client_max_window_bits=9>;
C<dedicated_256kb> answers C<permessage-deflate>, as C<< compression => 1
>> with C<< context_takeover => 1 >> does.

Memory: below memory level 8 (every C<dedicated_*> but the largest) a
direction that keeps context keeps only its last 2^window_bits bytes of
messages, not its zlib stream; each message borrows the thread's spare
stream and primes it with those bytes (deflate's dictionary), which
refers back to earlier messages as well as a kept stream does, for a
little CPU per message in proportion to the window. (zlib-rs's deflate
state is about 130 KB whatever the window, its hash table being fixed.)
At memory level 8 or 9 the zlib streams themselves are kept, the fastest
and largest. Measured with F<bench/memory.pl> (1,000 idle server
connections, after one 2 KB message each way, the clients using the same
preset), per connection:

    no compression, or 'shared'            1.7 KB
    dedicated_3kb, dedicated_4kb           2.9 KB
    dedicated_8kb                          3.9 KB
    dedicated_16kb                         5.8 KB
    dedicated_32kb                         9.9 KB
    dedicated_64kb                        14.3 KB (18 KB once its windows fill)
    dedicated_128kb                       14.3 KB (34 KB once its windows fill)
    dedicated_256kb                        342 KB
    compression => 1, context_takeover => 1  321 KB

=head2 adopt

    my $conn = $ctx->adopt(fh => $socket, initial_data => $bytes, %options);

Takes over an accepted socket whose client is about to upgrade (or already
sent the request), and serves the WebSocket handshake on it. C<initial_data>
holds bytes already read from the socket, typically the HTTP upgrade
request; they are processed as if read first. Bytes the handle itself
read ahead and still buffers (a buffered C<read> or C<readline> leaves
them there, and Feersum pushes what followed the request head back into
C<psgix.io> and C<< $req->io >>) are taken from the handle and processed
right after C<initial_data>: the connection reads the descriptor directly,
so they would otherwise be lost. Any connected stream socket can be
adopted, a Unix socketpair too. The connection works on a
duplicate of the handle's descriptor, which it closes when done, and keeps a
reference to the handle until then; the handle's own descriptor is closed
by Perl as usual, so nothing is closed twice. When the connection ends the
socket is shut down, so the peer sees the end even while the handle lives.

If C<initial_data> holds a complete request, C<on_connect> may fire inside
C<adopt>, which then returns the connection already C<connected>. The second
argument of C<on_connect> is always C<undef> for adopted connections.

Options: C<fh> (required), C<initial_data>, C<max_message_size> (default
16 MiB, as for C<listen>),
C<protocol>, C<headers>, C<on_handshake>, C<handshake_timeout>,
C<max_header_size>, C<close_timeout>, C<ping_interval>, C<ping_timeout>,
C<idle_timeout>, C<max_backpressure>, C<close_on_backpressure_limit>, C<compression>,
C<context_takeover>, and the callbacks, all as for C<listen>.
An adopted connection does not borrow settings from any listener.

For example, with L<Feersum> (whose PSGI handler offers the socket as
C<psgix.io>):

    $feersum->psgi_request_handler(sub {
        my $env = shift;
        return [400, [], []] unless ($env->{HTTP_UPGRADE} // '') =~ /websocket/i;
        my $hdr = "GET " . ($env->{REQUEST_URI} // '/') . " HTTP/1.1\r\n";
        for (sort keys %$env) {
            next unless /^HTTP_(.+)/;
            (my $h = $1) =~ s/_/-/g;
            $hdr .= "$h: $env->{$_}\r\n";
        }
        $ctx->adopt(
            fh           => $env->{'psgix.io'},
            initial_data => "$hdr\r\n",
            on_message   => sub { $_[0]->send($_[1]) },    # echo
        );
        return sub { };    # a response that never starts: the socket is ours
    });

A plain C<return;> would make Feersum 1.41 answer a 500 into the upgraded
socket. F<eg/feersum_psgi.pl> and F<eg/feersum_native.pl> are complete
examples.

=head3 Feersum versions

Both Feersum 1.41 (Debian's C<feersum> package) and the Feersum 1.5 series
work; code can tell them apart by feature
(C<< Feersum::Connection->can('io') >>, C<< Feersum->can('new_instance') >>,
C<< $server->can('has_tls') && $server->has_tls >>) rather than by
C<$Feersum::VERSION> (1.41 reports C<1.41>; 1.5 development releases such as
C<1.506_15> report C<1.50615>).

=over 4

=item PSGI, C<psgix.io> (1.41 and 1.5)

Adopt C<< $env->{'psgix.io'} >> as it is, and answer with a streaming
response that never starts (C<sub { }>). The handle wraps Feersum's own
descriptor, which Feersum closes when it is done with the request: the
connection runs on its own duplicate, and a handle whose descriptor was
closed behind its back is never closed again by this module (the handle
is kept rather than freed, so that a reused descriptor number is not
closed). Feersum 1.5 can leave C<psgix.io> out
(C<< set_psgix_io(0) >>); it is on by default.

=item native, C<< $req->io >> (1.5)

Adopt C<< $req->io >> as it is; a duplicate made with C<open> would not
have the bytes Feersum pushed back into its buffer. Ownership is as for
C<psgix.io>.

=item native, C<< $req->fileno >> (1.41)

1.41 has no C<< $req->io >> and no C<psgix.io> in the native interface.
Adopt a duplicate, C<< open(my $fh, '+<&', $req->fileno) >>: Feersum
closes its descriptor when C<$req> is freed. A client's bytes sent
together with the upgrade request (before the C<101>, which RFC 6455
clients do not do) stay inside Feersum and are lost on this path.

=item TLS listeners (1.5, C<set_tls>)

On a listener with TLS, C<psgix.io> and C<< $req->io >> are one end of a
Unix socketpair that Feersum relays through TLS 1.3 (the handle owns that
descriptor); it is adopted like any other socket, and the client connects
with C<wss://>. C<new_instance> servers and several C<use_socket>
listeners on one server work alike: the handle does not depend on the
listener it came from.

=item HTTP/2 (1.5, C<< set_tls(..., h2 =E<gt> 1) >>)

WebSockets over HTTP/2 (RFC 8441, C<< $env->{'psgix.h2.extended_connect'} >>)
cannot be adopted: they carry no C<Sec-WebSocket-Key> handshake to answer.
Refuse them, or leave C<h2> off.

=back

=head2 publish

    my $n = $ctx->publish($topic, $data);
    my $n = $ctx->publish($topic, $bytes, binary => 1);

Queues C<$data> as one message (text unless C<binary> is true) on every
subscriber of C<$topic> that is open (state C<connected>); connections
C<connecting> or C<closing> are skipped silently, as is one in the middle
of sending a fragmented message.  A subscriber whose send queue would
pass its C<max_backpressure> is skipped too, and counts the message in
C<dropped_messages> (with C<close_on_backpressure_limit> it starts closing
with 1008 instead).  Returns how many it was queued on.
Croaks C<"publish: text message is not valid UTF-8 (use binary =E<gt> 1 for
bytes)"> for invalid text, and C<"Context has been destroyed"> after
destruction.  Unknown options warn.  See L</"Topics (publish and subscribe)">.

=head2 subscribers

    my $n = $ctx->subscribers($topic);

How many connections subscribe to C<$topic> (closing ones included).

=head2 pubsub_stats

    my $s = $ctx->pubsub_stats;   # undef without pubsub

The counters of the context's bridge to Redis (see C<pubsub> under
L</new>), in a new hash: C<connected> (1 while both connections are up),
C<published> (messages handed to Redis), C<received> (messages from other
publishers, fanned out here), C<dropped> (publishes not handed to Redis:
while disconnected, or past the 16 MiB bound of unwritten output),
C<reconnects> (times it connected again after losing its connection) and
C<channels> (the channels it is subscribed to: topics with local
subscribers).  After C<shutdown> the counters stay readable, with
C<connected> 0; after destruction it returns undef.

=head2 connections

    my @conns = $ctx->connections;

The connections of this context whose state is C<connected> or C<closing>,
clients and servers alike. Connections still C<connecting>, and closed ones,
are left out. In scalar context, their number. Empty after the context
was destroyed.

=head2 shutdown

    $ctx->shutdown(
        code    => 1001,              # default 1001 ("going away")
        reason  => 'server restart',  # default ""
        timeout => 5,                 # seconds, default 5
        cb      => sub { my ($ctx) = @_; EV::break },
    );

A graceful stop, for a server or a client context alike:

=over 4

=item 1.

Every listening socket of the context closes at once: new clients are
refused by the system, not answered.

=item 2.

Every C<connected> connection starts its closing handshake with C<code> and
C<reason>, as C<< $conn->close($code, $reason) >> would: the close frame
goes out after anything still queued, and C<on_close> fires when the peer
answers. Connections already C<closing> carry on. A client still
C<connecting> is failed at once: its C<on_error> fires with
C<context is shutting down> (and no C<on_close>, as for any failed connect);
a server connection whose upgrade had not completed is dropped without a
callback.

=item 3.

C<cb> is called once, with the context, when the last connection of the
context is gone (after its C<on_close> returned), or when C<timeout>
seconds have passed, whichever comes first. At the timeout, the
connections left are dropped first: their sockets close (with a last
best-effort write of what is queued) and each gets C<on_close> with 1006
and an undef reason, as for any connection lost without a closing
handshake. A context with no connection calls C<cb> on the next loop
iteration, never from inside C<shutdown>. C<timeout> 0 does not wait for
any peer: the close frames are written and everything left is dropped on
the next loop iteration. Each connection's own C<close_timeout> still
applies and may end its wait sooner.

=back

All options are optional; C<code> and C<reason> are checked as C<close>
checks them, C<timeout> as the numeric options are, C<cb> must be a code
reference, and an unknown option warns; see L</ERRORS>. Nothing is shut
down when an argument croaks.

The context stays shut: afterwards (also inside and after C<cb>),
C<connect>, C<listen>, C<adopt> and a second C<shutdown> croak C<"Context is
shutting down">. C<connections> and the methods of its connections work as
before.

C<cb> runs under C<eval> like the callbacks: a C<die> in it is warned as
C<< "EV::Websockets: exception in shutdown handler: <error>" >>. It may
destroy the context. Destroying the context while the shutdown is under
way (before C<cb>) ends it as any destruction does (L</"Destroying a
context">): nothing more is called, C<cb> included. In a forked child (see
L</fork>), C<shutdown> leaves the parent's peers alone: it closes the
child's copies of the sockets without a close frame or a callback, and
calls C<cb> on the next loop iteration.

Each example server in F<eg/> stops this way on SIGINT or SIGTERM.

=head2 Destroying a context

When a context is freed (its last reference goes away, or C<< $ctx->DESTROY >>
is called, even inside one of its callbacks), its listening sockets close and
its connections are detached without any callback firing: open peers get a
best-effort close frame with code 1001. Connection objects you still hold
then report C<closed>: C<send*> croak C<"Connection is not open">, C<close>,
C<pause_recv> and C<resume_recv> do nothing, C<stash> still works,
C<peer_address> and C<get_protocol> return undef and C<send_queue_size>
returns 0.

After an explicit C<< $ctx->DESTROY >>, C<connect>, C<listen> and C<adopt>
croak C<"Context has been destroyed"> and C<connections> returns an empty
list. Calling DESTROY again is harmless.

Destruction runs in two phases. First every watcher stops and every
socket (listening or connected) closes, with no Perl code running. Only
then are the Perl values the context and its connections hold released:
callbacks, adopted handles, and connections whose last reference was the
context's. Whatever DESTROY that runs (a session object kept in a
connection's C<stash> that says goodbye on, or closes, other connections;
a closure's captured object) therefore finds a destroyed context and
connections without sockets: their methods croak or do nothing as above,
and none of them can start a watcher on the context being freed.

=head1 EV::Websockets::Connection

Connection objects come from C<connect>, C<adopt>, C<connections> and
callback arguments. While you hold a reference, every callback receives that
same object, so C<$conn == $other> and C<$seen{"$conn"}> work. A connection
does B<not> close when its Perl object goes away: if you keep no reference,
it stays open and its callbacks receive a fresh object each time (the
C<stash> belongs to the connection and survives). Call C<close> to close.

=head2 send

    my $queued = $conn->send($text);

Queues a text message and returns true; returns false when
C<max_backpressure> dropped it (see L</connect>), which only happens with
that option set. The string's bytes go out as Perl stores them: a
string with Perl's UTF-8 flag on (from C<decode>, or holding wide
characters) goes out as its UTF-8 encoding; any other string must already
be valid UTF-8 bytes (for example from C<Encode::encode_utf8>) or the call
croaks C<send: text message is not valid UTF-8 (use send_binary for
bytes)>. So C<"caf\xe9"> croaks unless it was C<utf8::upgrade>d: encode
text yourself to be sure. Croaks unless the state is C<connected>, and
while a fragmented message is in progress. C<undef> sends an empty
message.

=head2 send_binary

    my $queued = $conn->send_binary($bytes);

Queues a binary message. Same state rules and return value as C<send>.

=head2 send_fragment

    my $queued = $conn->send_fragment($data, $is_binary = 0, $is_final = 1);

Sends one fragment of a streaming message. With no fragmented message open,
it starts one (text or binary per C<$is_binary>); with one open, it sends a
continuation (C<$is_binary> is ignored). A true C<$is_final> ends the
message, so C<send_fragment("x")> is the same as C<send("x")>. A text
message must be valid UTF-8 as a whole: a character may be split between
fragments, but the fragment that makes the message invalid (or a final
one that leaves a character unfinished) croaks like C<send>, is not sent,
and leaves the message open. Croaks unless the state is C<connected>.

    $conn->send_fragment("part1", 0, 0);   # text, not final
    $conn->send_fragment("part2", 0, 0);   # continuation
    $conn->send_fragment("part3", 0, 1);   # continuation, final

Pings and pongs may be sent while a fragmented message is open; C<send> and
C<send_binary> may not.

Returns true when the fragment was queued, false when C<max_backpressure>
dropped it. Only the first fragment of a message can be dropped (the
message then has not started: the next call starts one again); the later
fragments of a started message are always queued and return true.

=head2 send_ping, send_pong

    $conn->send_ping($payload);
    $conn->send_pong($payload);

Queue a Ping or Pong frame. The payload is optional (undef means empty) and
silently cut to 125 bytes. Incoming pings are answered automatically;
C<send_pong> is for unsolicited pongs (one-way keepalive). C<on_pong> fires
for every pong received.

=head2 subscribe, unsubscribe, topics

    $conn->subscribe('news')   or print "already subscribed\n";
    $conn->unsubscribe('news') or print "was not subscribed\n";
    my @topics = $conn->topics;   # in subscription order; scalar: count

C<subscribe> returns true if the connection was newly subscribed to the
topic, false if it already was; C<unsubscribe> true if it was subscribed.
Topic names are byte strings.  A connection may subscribe while
C<connecting>, C<connected> or C<closing>; once its socket is gone both
croak C<"Connection is not open">, and C<topics> is empty.  Its
subscriptions end with it.

=head2 publish (connection)

    my $n = $conn->publish($topic, $data, binary => 0);

As L<< C<< $ctx->publish >>|/publish >>, to every subscriber of the topic but
C<$conn> itself (which need not be subscribed).  Croaks C<"Connection is
not open"> once its socket is gone.

=head2 send_queue_size

Number of payload bytes queued and not yet handed to the socket (framing not
counted; compressed messages count as their compressed size). It rises as
soon as you send, since nothing is written inside a send call. Over TLS it
includes what the TLS session has taken but not yet written to the socket
(up to 64 KB, counted until all of it is written), so it falls in steps of
up to that size. 0 when the connection is gone; never croaks.

=head2 dropped_messages

    my $n = $conn->dropped_messages;

How many messages C<max_backpressure> dropped on this connection (0
without the option); still known once the connection is closed. Never
croaks.

=head2 close

    $conn->close($code = 1000, $reason);

Starts a clean close. The arguments are checked first, in any state: codes
outside 1000-1003, 1007-1014 and 3000-4999 croak, and so does a reason
that is not valid UTF-8 (same rule as for C<send>: a string with Perl's
UTF-8 flag goes out as its UTF-8 encoding, any other must hold UTF-8
bytes). An undef code means 1000. Then, if the connection is
connecting, closing, closed or destroyed, the call does nothing (it does not
cancel a connect: use C<connect_timeout>); the first C<close> wins.

Otherwise an open fragmented message is ended with an empty final fragment,
the state becomes C<closing>, everything queued is sent in order followed by
the close frame (the reason is UTF-8, cut to 123 bytes on a character
boundary), and messages from the peer are still delivered. The module waits
for the peer's close frame (at most C<close_timeout>, 5 seconds by default);
the server side closes TCP first; then C<on_close> fires with the code and
reason of the peer's close frame (normally the echo of yours), or 1006 if
none came in time. The server closes TCP only once everything it sent has
been written to the socket, including what a TLS session still held
(within C<close_timeout>). C<on_drain> does not fire after C<close>.

=head2 pause_recv, resume_recv

Stop and restart reading. While paused nothing is read from the socket and no
message is delivered, not even one already buffered; the peer is slowed down
by TCP flow control, and keepalive pings are suspended. Effective while
connected or closing; otherwise they do nothing. C<close> resumes
receiving, since the peer's close frame must be read: messages that arrive
before it are still delivered. C<pause_recv> while closing holds them back
until C<close_timeout>.

=head2 stash

    $conn->stash->{user} = $name;

A hash ref for your own per-connection data, created on first use. It lives
as long as the connection, across Perl objects, C<close> and context
destruction. Croaks only when the connection is destroyed.

=head2 get_protocol

The negotiated subprotocol, on both client and server side, while the
connection is open; undef if none was negotiated or the connection is closed.

=head2 peer_address

The peer's IP address as text (IPv4 dotted quad, or IPv6 without brackets),
without the port; undef when there is no socket.

=head2 state, is_connected, is_connecting

C<state> returns one of the L</STATES>. C<is_connected> is true only in
state C<connected>, C<is_connecting> only in C<connecting>.

=head1 CALLBACKS

Callbacks are given as options of C<connect>, C<listen> and C<adopt>. Each
must be a code reference; undef means none.

=over 4

=item on_connect => sub { my ($conn, $headers) = @_; ... }

The connection is open. C<$headers>: for a client, the 101 response headers
under their canonical names (repeated headers joined with C<", ">,
C<Set-Cookie> with C<"; ">); for a server, the request headers described
under L</listen>; for C<adopt>, C<undef>.

=item on_message => sub { my ($conn, $data, $is_binary, $is_final) = @_; ... }

A complete message. C<$data> is a byte string (never UTF-8 flagged; decode
text yourself if you need characters), C<""> for an empty message.
C<$is_binary> is 1 or 0. C<$is_final> is always 1 and exists for
compatibility.

=item on_close => sub { my ($conn, $code, $reason) = @_; ... }

Fires exactly once for every connection that reached C<connected>, when it
is torn down; the state is C<closed> inside it. C<$code> is never undef:

=over 4

=item *

the code and reason of the peer's close frame (the reason as bytes, C<"">
when the frame had none), or 1005 with an undef reason when the frame had
no code;

=item *

1006 with an undef reason when the connection was lost without a close
frame, or a closing handshake passed C<close_timeout> without one;

=item *

1009 after a message over C<max_message_size>;

=item *

1002 after a protocol violation by the peer, 1007 after invalid UTF-8 in a
text message or close reason;

=item *

1011 after a keepalive ping timeout.

=back

After a failure the module detected itself (1009, 1002, 1007, 1011),
C<$reason> is the text C<on_error> received just before, which is also
the reason of the close frame sent to the peer (cut to 123 bytes).

=item on_error => sub { my ($conn, $message) = @_; ... }

Something went wrong; see L</ERRORS> for the messages. Before the handshake
completes only C<on_error> fires (state C<closed>). On an open connection,
an error the module detects (size limit, protocol violation, ping timeout,
read, write or TLS failure) fires C<on_error>, then C<on_close>; a peer
that closes or drops the connection without such an error fires only
C<on_close>.

=item on_pong => sub { my ($conn, $payload) = @_; ... }

A pong arrived.

=item on_drain => sub { my ($conn) = @_; ... }

The send queue went from non-empty to empty (once per drain;
C<send_queue_size> is 0 inside). Never fires after C<close>: to act once
everything is sent before closing, do it here before calling C<close>, or
rely on C<on_close>.

=back

Every callback runs under C<eval>. A C<die> inside one is caught and warned
as C<< "EV::Websockets: exception in <what>: <error>" >>, where C<< <what> >>
is C<connect handler>, C<message handler>, C<close handler>,
C<error handler>, C<pong handler> or C<drain handler> (C<shutdown handler>
for L</shutdown>'s C<cb>), and the connection
carries on (a die in C<on_error> does not call C<on_error> again). A die
in C<on_handshake> is warned as C<on_handshake> and rejects the client.
Your C<$@> is left as it was.

Inside any callback you may call any method, open new connections, close the
connection, destroy the context, or drop the last reference to anything.
Messages received before a close are delivered before C<on_close>.
Destroying the context fires no callbacks.

=head1 STATES

C<< $conn->state >> returns one of:

=over 4

=item connecting

Client only: DNS, TCP, proxy, TLS or the HTTP upgrade is in progress.

=item connected

Open: messages can be sent and received.

=item closing

C<close> was called or the closing handshake is under way; queued data is
still being sent and received messages still delivered.

=item closed

The connection is gone, the Perl object remains. This is the state inside
C<on_close>, inside an C<on_error> that precedes the handshake, and after the
context was destroyed.

=item destroyed

The internal structure has been freed. C<send*> and C<stash> croak
C<"Connection has been destroyed">; C<close>, C<pause_recv> and
C<resume_recv> do nothing; C<send_queue_size> returns 0.

=back

=head1 ERRORS

=head2 Topics (publish and subscribe)

Each context keeps a registry of topics: a connection subscribes to any
number of them (C<< $conn->subscribe >>), and C<< $ctx->publish >> or
C<< $conn->publish >> sends one message to every open subscriber.  The
fan-out happens in the native core: the frame is built once, and each
recipient gets a copy in its send queue without a Perl call per
recipient; the writes go out in the loop's next batch, as sends do.
Recipients with permessage-deflate and no context takeover on the
server's side share one compressed payload per window size; one with
context takeover compresses for itself; a client connection masks its
own copy.  Unlike C<< $_->send(...) for $ctx->connections >>, which
croaks at the first connection that is closing, publish skips connections
that are not open and counts only those it queued on.

    $ctx->listen(port => 9001,
        on_connect => sub { $_[0]->subscribe('chat') },
        on_message => sub { my ($conn, $msg) = @_;
                            $conn->publish(chat => $msg) });   # all but $conn

=head2 Topics across processes (Redis)

With C<pubsub> (see L</new>), C<< $ctx->publish >> and
C<< $conn->publish >> fan out locally exactly as without it, and also
publish to the Redis channel C<prefix . topic>; a message that comes from
Redis on a topic's channel is fanned out to every local subscriber of the
topic by the native core, as a local publish is, without a Perl call per
message or per recipient.  A process's own messages that come back from
Redis are skipped: it has delivered them already.

    my $ctx = EV::Websockets::Context->new(pubsub => {
        redis    => 'redis://127.0.0.1:6379',
        on_error => sub { warn "redis: $_[1]\n" },
    });
    $ctx->listen(port => 9001, reuse_port => 1,
        on_connect => sub { $_[0]->subscribe('chat') },
        on_message => sub { $ctx->publish(chat => $_[1]) });

The bridge keeps two connections to the server, both on the context's
loop: one SUBSCRIBEd (a subscribed RESP connection takes no other
command), one for PUBLISH.  A process is subscribed to a topic's channel
only while it has local subscribers: the first C<subscribe> to a topic
sends C<SUBSCRIBE>, the last C<unsubscribe> (or the close of the last
subscriber) C<UNSUBSCRIBE>.  After a reconnect it subscribes again to
every channel it needs before C<on_connect> runs.  Unlike an idle
context, one with C<pubsub> keeps C<EV::run> running: its connections to
Redis (or its retry timer) are active watchers.  C<shutdown> and
destruction stop the bridge at once (after a last write of what is
queued); messages published afterwards stay local (and count as
dropped).

Delivery is at most once: while Redis is unreachable, publishes reach the
local subscribers and are counted in C<pubsub_stats>' C<dropped>, not
queued, and nothing is replayed after the outage (Redis pub/sub keeps no
history).  Messages of one publisher arrive in the order it published
them; there is no order between publishers.  Past 16 MiB of output that
Redis has not taken yet, publishes are dropped (and counted) too.  A
reply from Redis larger than 64 MiB (a message of that size, or a server
that misbehaves) is not buffered further: the connection ends with
C<on_error> C<"Redis sent a reply larger than 64 MiB"> and is made
again.

The payload on a channel is an envelope: the 4 bytes C<"\0EWS">, the
version byte C<"\x01">, C<"t"> (text) or C<"b"> (binary), 8 bytes of
origin (the publishing context's random id, big-endian), then the message.
Other programs can take part: one that publishes with this envelope and
an origin of its own (any 8 bytes) sends text or binary as it chooses; a
raw payload, without the envelope, is delivered as a text message if it
is valid UTF-8 and as a binary one otherwise (as is an enveloped "text"
message that is not UTF-8: no peer is sent an invalid text frame).  To
read what a process publishes, skip the first 14 bytes.

The RESP protocol is the C<redis-protocol> crate's, and the bridge is
part of the native core rather than a Perl Redis client (such as
C<AnyEvent::Redis> or C<Redis::Fast>) calling C<publish> for each message
it receives: a message from Redis goes from the socket's read buffer to
the subscribers' send queues without a Perl call, and the bridge's
sockets are watched by the same EV loop, in the same way, as the
context's connections.

=head2 Exceptions (croak)

Options (C<new>, C<connect>, C<listen>, C<adopt>):

=over 4

=item C<< odd number of options: key '<last arg>' has no value >>

=item C<< <name> must be a code reference >>

A callback option that is defined but not a CODE ref.

=item C<< headers must be a hash reference >>

=item C<protocol must be a name or an array reference of names>

C<listen> and C<adopt>: C<protocol> is another kind of reference, or its
array holds undef or a reference.

=back

Numeric options (C<connect_timeout>, C<close_timeout>, C<ping_interval>,
C<ping_timeout>, C<handshake_timeout>, C<max_message_size>,
C<max_header_size>, C<proxy_port>): each is read once, and NaN, an
infinity, a negative number, a string that is not a number and a value
past the option's range croak with the option's name:

=over 4

=item C<< <name> must be a number of seconds from 0 to 1000000000 >>

The timeouts and C<ping_interval>; 0 still means the default (or off for
C<ping_interval>).

=item C<< <name> must be a number of bytes from 0 to 9007199254740992 >>

C<max_message_size> and C<max_header_size> (2**53); fractions are cut.

=item C<< proxy_port must be a port number from 1 to 65535 >>

=item C<< listen: port must be 0-65535 >>

=back

An unknown option is ignored with the warning
C<< EV::Websockets: unknown option '<key>' >>. When a key is given twice,
the later value wins.

C<connect>:

=over 4

=item C<url parameter is required>

=item C<URL must start with ws:// or wss://>

=item C<connect: invalid port in url (expected 1-65535)>

=item C<connect: credentials in url are not supported; use the headers option>

=item C<< connect: invalid url: <why> >>

C<missing host>, C<unterminated IPv6 address>, C<junk after IPv6 address>
or C<contains a space or control character>.

=item C<< protocol: '<name>' is not a valid subprotocol name >>

A name of the C<protocol> list is not an HTTP token. Here and below,
names are shown escaped (C<\r>, C<\n>, C<\0>, C<\u{...}>).

=item C<< headers: '<name>' is set by the handshake >>

=item C<< headers: invalid header name '<name>' >>

A name that is not an HTTP token: empty, or with a space, a colon, CR, LF,
NUL or another character outside letters, digits and
C<!#$%&'*+-.^_`|~>.

=item C<< headers: value of '<name>' contains CR, LF or NUL >>

=item C<< headers: value of '<name>' contains a control character >>

Another control character than a tab.

=item C<< connect: <TLS reason> >>

A wss:// URL when no trust store can be loaded, for example
C<connect: no trusted certificates found on this system>, or a C<ssl_ca>
file that became unreadable since C<new>.

=back

C<listen>:

=over 4

=item C<< listen: option '<name>' must be a defined string >>

For C<name>, C<protocol>, C<ssl_cert>, C<ssl_key> or C<ssl_ca> passed as
undef.

=item C<listen: vhost name 'default' is reserved>

=item C<listen: ssl_cert and ssl_key must both be set for TLS (only ssl_cert was given)>

Or C<(only ssl_key was given)>.

=item C<listen: port must be 0-65535>

=item C<< Failed to create vhost for listening: <reason> >>

Bind failure (such as C<Address already in use>), unusable TLS files (the
reasons listed for C<new> below), a C<host> that is not an IP address
(C<< host must be an IP address, not '<host>' >>), bad C<headers>
(C<< headers: ... >> as for C<connect>) or a bad C<protocol> name
(C<< protocol: '<name>' is not a valid subprotocol name >>).

=back

C<adopt>:

=over 4

=item C<fh parameter is required>

=item C<Invalid filehandle>

A closed handle. Things that are not handles at all get Perl's own
C<Bad filehandle: ...> messages.

=item C<adopt: file handle is not a socket>

=item C<adopt: file handle is a listening socket>

=item C<< adopt: cannot duplicate the file handle: <os error> >>

For example when the process is out of descriptors.

=item C<< headers: ... >>, C<< protocol: ... >>

Bad C<headers> or C<protocol>, as for C<listen>.

=back

Context:

=over 4

=item C<loop must be an EV::Loop object>

=item C<< Failed to create context: <reason> >>

C<< <reason> >> is one of C<ssl_cert needs ssl_key>, C<ssl_key needs
ssl_cert>, C<< cannot read certificates from '<file>': <error> >>,
C<< no certificate in '<file>' >>, C<< cannot read a private key from
'<file>': <error> >>, C<< unusable private key in '<file>': <error> >>,
C<< the key in '<key file>' does not match the certificate in '<cert
file>' >> or C<< bad CA certificate in '<file>': <error> >>.

=item C<Context has been destroyed>

C<connect>, C<listen>, C<adopt> or C<shutdown> after C<< $ctx->DESTROY >>.

=item C<Context is shutting down>

C<connect>, C<listen>, C<adopt> or C<shutdown> after C<shutdown> (the context
stays shut).

=back

C<shutdown>'s options:

=over 4

=item C<< shutdown: invalid close code <n> (RFC 6455 allows 1000-1003, 1007-1014, 3000-4999) >>

=item C<shutdown: reason is not valid UTF-8>

C<code> and C<reason>, checked as C<close> checks them.

=item C<timeout must be a number of seconds from 0 to 1000000000>

NaN, an infinity, a negative number, a string that is not a number or a
value past 10^9.

=item C<cb must be a code reference>

=item C<< odd number of options: key '<last arg>' has no value >>

=back

Connection methods:

=over 4

=item C<Connection is not open>

C<send>, C<send_binary>, C<send_fragment>, C<send_ping> or C<send_pong> in a
state other than C<connected> (also inside C<on_close> and after the context
was destroyed).

=item C<Connection has been destroyed>

Those methods and C<stash> on a destroyed connection.

=item C<Cannot send while a fragmented message is in progress; finish the fragment with send_fragment(..., is_final =E<gt> 1) first>

=item C<send: text message is not valid UTF-8 (use send_binary for bytes)>

=item C<< close: invalid close code <n> (RFC 6455 allows 1000-1003, 1007-1014, 3000-4999) >>

=item C<close: reason is not valid UTF-8>

The reason is not valid UTF-8: a string without Perl's UTF-8 flag must
hold UTF-8 bytes; one with the flag is encoded. Checked in any state.

=item C<self is not of type EV::Websockets::Connection>

A Connection method called on something else (including a copy that is
not a real connection object). Context methods called on the wrong object
croak with the standard typemap message,
C<< EV::Websockets::Context::<method>: self is not of type
EV::Websockets::Context >>.

=back

Wrap sends in C<eval> if they may race the teardown of a connection.

=head2 on_error messages

The texts are stable; C<< <...> >> parts come from the system, rustls,
zlib or the peer. Before the handshake completes, C<on_error> is the only
callback (state C<closed>); afterwards it is followed by C<on_close>. On a
server, failures before the upgrade completes fire no callback at all.

Before the connection opens (client only):

=over 4

=item C<connect timeout>

C<connect_timeout> (or the default 30 second deadline) passed; the socket
is closed at once.

=item C<context is shutting down>

The context's L</shutdown> was called while the connection was still
connecting; the socket is closed at once.

=item C<< DNS lookup failed for '<host>': <reason> >>

The name did not resolve (the lookup runs off the event loop), for example
C<< DNS lookup failed for 'x.invalid': failed to lookup address
information: Name or service not known >>; C<< <reason> >> is
C<no address> when the answer was empty.

=item C<< connect failed: <os error> >>

No address of the host took the TCP connection (see L</Addresses>); the
error is the last attempt's, for example C<connect failed: Connection
refused>. (C<< connect failed: no
address for '<host>' >> if there was no address to try.)

=item C<< proxy failed: HTTP <code> <reason> >>

The HTTP proxy answered C<CONNECT> with another status than 2xx. A proxy
that cannot be reached gives C<< connect failed: <os error> >>.

=item C<proxy failed: connection closed by the proxy>, C<proxy failed: answer too large>, C<< proxy failed: malformed answer (<detail>) >>

The proxy closed before opening the tunnel, or sent a head over 16 KiB or
one that is not HTTP.

=item C<< proxy failed: the user name in the proxy URL contains <what> >>, C<< proxy failed: the password in the proxy URL contains <what> >>

The credentials of a proxy URL from the environment (after percent
decoding, e.g. C<http://user:pa%0d%0ass@proxy>) hold C<CR, LF or NUL> or
C<a control character>; nothing is sent to the proxy. Likewise
C<proxy failed: the user name in the proxy URL contains ':'> (HTTP Basic
cannot carry it) and C<proxy failed: SOCKS5 user names and passwords are
limited to 255 bytes>. The password is never part of the text.

=item C<< proxy failed: SOCKS5 <detail> >>

C<< SOCKS5 error <n> (<meaning>) >> (the proxy's reply code, for example
C<SOCKS5 error 5 (connection refused)>), C<SOCKS5 authentication refused>,
C<SOCKS5 proxy accepts none of our methods>, C<SOCKS5 proxy answered with
another protocol> or C<SOCKS5 bad address type>.

=item C<< TLS handshake failed: <reason> >>

The reason says what is wrong and what to do about it. The usual ones:

=over 4

=item C<the server's certificate is a CA certificate, not a server certificate: make a CA and sign a server certificate with it (see "Making certificates" in EV::Websockets)>

The server shows a CA certificate, typically one made with C<openssl req
-x509> and given to the client as C<ssl_ca> too. See
L</Making certificates>.

=item C<< the server's certificate is not signed by a CA in ssl_ca (or the system's trust store): give the CA certificate that signed it as ssl_ca (a self-signed certificate is not its own CA; see "Making certificates" in EV::Websockets) >>

The certificate's issuer is not trusted: no C<ssl_ca>, or another CA's.

=item C<< the server's certificate is for <names>, not <host>: connect to a name it is for, or make a certificate for this one (see "Making certificates" in EV::Websockets) >>

The host of the URL is none of the DNS names and IP addresses the
certificate lists (for example C<the server's certificate is for
localhost, 127.0.0.1, not 10.0.0.5: ...>).

=item C<< the server's certificate expired on <YYYY-MM-DD hh:mm:ss> UTC: renew it (or check this machine's clock) >>, C<< the server's certificate is not valid before <YYYY-MM-DD hh:mm:ss> UTC: check this machine's clock >>

=item C<< the server's certificate is not for a TLS server: make one with extendedKeyUsage serverAuth (see "Making certificates" in EV::Websockets) >>

=item C<the server does not speak TLS: use ws://>

A wss:// URL for a server that answered in the clear.

=item C<the server requires a client certificate: give the context ssl_cert and ssl_key>

The server (a listener with C<ssl_ca>) asks for mutual TLS.

=item C<the server does not trust our client certificate: sign it with a CA in the server's ssl_ca>, C<< the server refused our client certificate (<alert>): it must be valid now, signed by a CA in the server's ssl_ca, with extendedKeyUsage clientAuth >>

=back

Other failures keep rustls' words, for example C<TLS handshake failed:
received fatal alert: HandshakeFailure>.

=item C<handshake failed: the server speaks TLS: use wss://>

A ws:// URL for a TLS server: it answered the request with a TLS record.

=item C<< handshake failed: HTTP <code> <reason> >>

The server answered the upgrade with another status, for example
C<handshake failed: HTTP 404 Not Found> (just C<< HTTP <code> >> when the
status line has no reason). Redirects (301, 302, 303, 307, 308 with
C<Location>) are followed instead, to ws://, wss://, http:// or https://
locations (http means ws here), at most 5.

=item C<handshake failed: too many redirects>, C<< handshake failed: bad redirect to '<location>' >>

A sixth redirect, or a C<Location> that is not a usable URL of those
schemes. (C<handshake failed: unexpected redirect> is an internal
safeguard and should never be seen.)

=item C<handshake failed: connection closed by peer>

The server closed before answering the upgrade completely.

=item C<handshake failed: bad Sec-WebSocket-Accept>, C<handshake failed: repeated Sec-WebSocket-Accept>

The second: the response has more than one C<Sec-WebSocket-Accept> line.
Lines of C<Upgrade>, C<Connection>, C<Sec-WebSocket-Protocol> and
C<Sec-WebSocket-Extensions> repeated in a response are combined with
commas (see L</Header injection>).

=item C<handshake failed: missing 'Upgrade: websocket'>, C<handshake failed: missing 'Connection: Upgrade'>

=item C<< handshake failed: server chose subprotocol '<name>' that was not offered >>

=item C<handshake failed: server accepted an extension that was not offered>

An extension other than permessage-deflate, or permessage-deflate after
C<< compression => 0 >>.

=item C<handshake failed: server accepted permessage-deflate twice>, C<< handshake failed: bad permessage-deflate answer: <detail> >>

The server's permessage-deflate answer cannot be honoured, for example
C<< bad permessage-deflate answer: 'server_max_window_bits=7' is not 8 to 15 >>.

=item C<handshake failed: response head too large>, C<< handshake failed: malformed response (<detail>) >>

The response head is over 16 KiB or has more than 100 header lines, or is
not HTTP.

=item C<< read failed: <os error> >>, C<< write failed: <os error> >> (opening)

The socket failed during the opening (for example
C<read failed: Connection reset by peer>).

=back

On an open connection (client or server), each followed by C<on_close>:

=over 4

=item C<message exceeds max_message_size>

Then a close with 1009.

=item C<< protocol error: <detail> >>

The peer broke RFC 6455; then a close with 1002. C<< <detail> >> is one of
C<unmasked frame from client>, C<masked frame from server>,
C<reserved bits set> (RSV bits without an extension, or RSV1 on a control
or continuation frame), C<< unknown opcode <n> >>,
C<continuation frame without a message>,
C<new message inside a fragmented message>, C<fragmented control frame>,
C<control frame payload over 125 bytes>,
C<close frame with a 1-byte payload>, C<< invalid close code <n> >> or
C<frame length over 2^63> (a 64-bit length with its top bit set).

=item C<< invalid compressed message: <zlib's reason> >>

A message marked compressed is not valid DEFLATE data; then a close with
1007.

=item C<invalid UTF-8 in text message>, C<invalid UTF-8 in close reason>

Then a close with 1007.

=item C<ping timeout>

No pong within C<ping_timeout>; then a close with 1011.

=item C<< read failed: <os error> >>, C<< write failed: <os error> >>

The connection broke (for example C<Connection reset by peer>); then
C<on_close> with 1006. A reset after the peer's close frame is no error:
C<on_close> then reports the peer's code.

=item C<< TLS error: <reason> >>

A TLS failure on an open connection; then C<on_close> with 1006.

=back

=head1 SECURITY

=head2 TLS

wss:// clients verify the server by default: its certificate must chain
to the context's C<ssl_ca> (or the system trust store), be valid now, and
name the URL's host (DNS name or IP address). TLS is rustls (TLS 1.2 and
1.3); OpenSSL is not used. C<< ssl_verify => 0 >> accepts any certificate
from anyone: the traffic is encrypted but the server is not
authenticated, so a machine in the path can read and change it. Use it
for tests, or when the peer is authenticated some other way.

A TLS listener with C<ssl_ca> requires and verifies client certificates;
without C<ssl_ca> it accepts any client. A client that speaks plain HTTP
to a TLS listener (a ws:// URL for a wss:// server) gets a TLS alert and
the connection is closed, with no callback, like the other failures
before the upgrade; an EV::Websockets client reports C<handshake failed:
the server speaks TLS: use wss://>.

=head2 Making certificates

A TLS server needs a certificate that names the hosts clients connect to,
signed by a CA the clients trust. For a public server that CA is a public
one (Let's Encrypt, say) and clients need no C<ssl_ca>. For your own
servers and tests, make a CA of your own: F<eg/make_certs.pl> does it with
C<openssl>:

    perl eg/make_certs.pl --dir certs --client

writes F<certs/ca.pem> and F<certs/ca-key.pem> (the CA; keep the key
private), F<certs/server.pem> and F<certs/server-key.pem> (a server
certificate signed by the CA, for C<localhost>, C<127.0.0.1> and C<::1>;
C<--name HOST> adds names) and, with C<--client>, F<certs/client.pem> and
F<certs/client-key.pem> (a client certificate for mutual TLS). Running it
again in the same directory keeps the CA, so new certificates stay
trusted. Then:

    # the server shows its certificate (and, with ssl_ca, requires a
    # client certificate signed by the CA)
    $ctx->listen(port => 9011,
        ssl_cert => 'certs/server.pem', ssl_key => 'certs/server-key.pem',
        ssl_ca   => 'certs/ca.pem',    # only for mutual TLS
        on_message => sub { ... });

    # the client trusts the CA (and shows its own certificate)
    my $client = EV::Websockets::Context->new(
        ssl_ca   => 'certs/ca.pem',
        ssl_cert => 'certs/client.pem', ssl_key => 'certs/client-key.pem');
    $client->connect(url => 'wss://localhost:9011/', ...);

The same with C<openssl> by hand: a CA (C<basicConstraints =
critical, CA:TRUE>, C<keyUsage = keyCertSign, cRLSign>), then a key and a
certificate request for the server, signed with C<openssl x509 -req -CA
ca.pem -CAkey ca-key.pem> and an extension file holding
C<basicConstraints = CA:FALSE>, C<extendedKeyUsage = serverAuth> and
C<subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1> (clients check the
names there, not the common name). A single self-signed certificate
(C<openssl req -x509>) does not work as both the server's certificate and
the client's C<ssl_ca>: it is a CA certificate, which a server may not
show (L</on_error messages> says so).

A connection closes its socket only once the TLS session has written all
its records as well as the send queue: the end of the last message before
a close is never cut off, however slowly the peer reads (bounded by
C<close_timeout>). C<send_queue_size> counts what the TLS session still
holds.

=head2 Listening

C<listen> binds all interfaces, IPv4 and IPv6, unless C<host> names one
address: use C<< host => '127.0.0.1' >> (or C<'::1'>) for a server only
local programs may reach. The server does not check C<Origin>; browsers
send it, so a server for browsers should check C<< $headers->{Origin} >>
in C<on_handshake> (cross-site WebSocket hijacking). Failures before the
upgrade (bad requests, TLS failures, timeouts) cost no callback.

=head2 Header injection

Nothing you pass can add a line to an HTTP head. Every name and value the
module writes is checked first, whichever way it came: the C<url> of
C<connect> (its path, query and host), C<protocol> (each name an HTTP
token), C<headers> of C<connect>, C<listen> and C<adopt> (names tokens,
values without CR, LF, NUL or other control characters), the hash
C<on_handshake> returns, and the credentials of a proxy URL taken from the
environment. Arguments croak (see L</Exceptions (croak)>); a bad
C<on_handshake> hash answers the client C<500 Internal Server Error> with
a warning (see L</listen>); bad proxy credentials fail the connection with
an C<on_error> (see L</on_error messages>). A URL is refused, not cleaned
up, when it holds a space or control character: URL parsers silently drop
tabs and newlines, so C<ws://host/a%0d%0a> is the way to send those bytes.

Requests and responses that split a header over several lines are read
as RFC 9110 allows: the lines of C<Upgrade>, C<Connection>,
C<Sec-WebSocket-Protocol> and C<Sec-WebSocket-Extensions> count as one
comma-separated value (C<Connection: keep-alive> then C<Connection:
Upgrade> is an upgrade). C<Host>, C<Sec-WebSocket-Key> and
C<Sec-WebSocket-Version> given twice get C<400 Bad Request>, and a
response with two C<Sec-WebSocket-Accept> lines fails the client
(C<handshake failed: repeated Sec-WebSocket-Accept>).

=head2 Limits and their defaults

=over 4

=item C<max_message_size>: 16 MiB on servers, unlimited on clients

Bounds each incoming message after reassembly and decompression; checked
on declared frame lengths, so nothing over the limit is buffered.
C<listen> and C<adopt> default to 16 MiB (16777216 bytes); C<connect>
defaults to 0, unlimited. With 0 a peer can make the process buffer (or
inflate) a message of any size: give a server C<< max_message_size => 0 >>
only for trusted clients, and set a limit on clients that talk to
untrusted servers.

=item C<handshake_timeout>: 10 seconds (server)

For TLS and the upgrade request; a client that misses it is dropped.

=item Heads: 16 KiB and 100 header lines

An upgrade request over either limit gets 431 (C<max_header_size> moves
the first). A client
fails on a larger 101 response (C<response head too large>) and on a
proxy answer over 16 KiB.

=item C<connect_timeout>: 30 seconds (client)

Covers DNS, TCP, proxy, TLS, the upgrade and redirects.

=item C<close_timeout>: 5 seconds

Longest wait for the peer during a closing handshake.

=item C<ping_interval>, C<ping_timeout>: off

Without keepalive a peer that vanished without a FIN or RST (a half-open
TCP connection) holds its connection until the system notices, which can
take hours; set C<ping_interval> for long-lived connections.

=item C<idle_timeout>: off

Without it (and without keepalive) a peer that connects and then stays
silent holds its connection, and its memory, for as long as it likes;
with it such a connection is closed (1001) after that many seconds.

=item Control frames: 125 bytes

Larger or fragmented control frames are protocol errors (1002). Pings from
a peer that does not read are answered with one pong at a time, the latest
ping's, so they cannot pile up.

=item Send queue (C<max_backpressure>): not limited

Without C<max_backpressure>, a peer that reads slowly (or not at all)
makes what you send accumulate in memory: everything sent and not yet
taken by the kernel stays queued, without bound; watch C<send_queue_size>
and C<on_drain>. With it, a connection's queue holds at most
C<max_backpressure> payload bytes (plus framing, and over TLS what the TLS
session holds): a slow reader costs about C<max_backpressure> plus one
message (the rest of a fragmented message that had started, or a message
compressed to less than its size), and further messages are dropped, or
the connection closed with C<close_on_backpressure_limit>.

=item Compression memory

Off on servers by default. With C<< compression => 1 >> (or C<'shared'>)
and without C<context_takeover> no zlib state is kept between messages
(an idle compressed connection costs what an uncompressed one does). With
C<< context_takeover => 1 >> each connection that has sent a compressed
message keeps its compressor (about 320 KB) and one receiving from a client
that keeps its context an inflater (about 45 KB). The C<dedicated_*>
presets below C<dedicated_256kb> keep context in 2^window_bits bytes per
direction instead: about 1 KB per connection for C<dedicated_3kb> (see
L</Compression presets>). Inflation goes in steps
of at most 256 KiB of output and stops at C<max_message_size>.

=item Connections and accepts

No limit on the number of connections other than the descriptor limit
(C<ulimit -n>). The accept backlog is 1024; a listener accepts at most 64
connections per wake-up, and after an accept error (such as C<EMFILE>)
pauses for 0.1 seconds instead of spinning.

=back

=head2 Perl code at the boundary

Perl code can run wherever the module reads a Perl value: a tied hash of
C<headers>, an overloaded option or argument, a callback's return value, a
DESTROY. None of it can crash the module:

=over 4

=item *

Every option and argument is converted once, before the context or
connection is looked at; a conversion that destroys the context (or drops
the last reference to the connection) makes the call croak
C<"Context has been destroyed"> (or C<"Connection is not open">) instead of
acting on freed memory. The arguments are owned for the length of the
call, so Perl code that frees or changes the others does not matter.

=item *

Contexts and connections end in two phases (see L</Destroying a context>):
sockets and watchers first, Perl values after.

=item *

A callback may destroy the context, close or drop its own connection, or
die, in every callback kind (C<on_handshake> included). The warning that
reports a die is given under an eval of its own: a C<$SIG{__WARN__}>
handler that dies, or an exception object whose overloading dies when it
is shown, is dropped there (as EV drops a die in its own callbacks), and
the loop goes on.

=item *

Nothing interpreter-specific is kept in static memory: contexts made in
several threads at once (each on its own loop) bless their connections
into their own interpreter's classes.

=item *

Numeric options are range-checked (see L</Exceptions (croak)>), so no
deadline can overflow.

=item *

A panic inside the Rust core is caught at the boundary and reported as
C<< internal error in EV::Websockets (please report it): <what it said> >>:
as the croak of the call that reported errors, or as the C<on_error> of
the connection it happened on, which then closes (1011 once open).

=back

=head2 Redirects

A client follows up to 5 redirects, also to another host and from wss://
to ws://, sending the same request to the new location. Your
C<Authorization>, C<Cookie> and C<Proxy-Authorization> headers go only to
the origin (scheme, host and port) of the URL you gave and of redirects
that stay on it; other headers go everywhere.

=head1 THREADS AND FORK

=head2 Threads

Contexts and connections define C<CLONE_SKIP>: a new Perl thread gets no
copy of them (in the thread, variables that held them hold unblessed
references to undef). The objects stay usable in the thread that created
them; creating and joining threads, also inside callbacks, does not
disturb them. Host names are resolved on short-lived helper threads of the
Rust core, not Perl threads.

=head2 fork

A forked child inherits the sockets, but the connections stay the
parent's. In the child:

=over 4

=item *

do not use the parent's contexts or connections (no sends, no C<close>,
no running their loop): both processes would read and write the same
sockets;

=item *

exiting (normally, with END blocks and global destruction, or from inside
a callback) and C<exec> leave the parent's connections alone: the child
sends nothing and shuts nothing down, and all sockets are close-on-exec,
so an exec'd program inherits none;

=item *

C<< $ctx->DESTROY >> (or freeing the objects) and C<< $ctx->shutdown >>
only close the child's copies of the descriptors, without a close frame;
the child may then
create contexts of its own and use them, for example on a new
C<< EV::Loop->new >>.

=back

Data queued before the fork is sent once, by the parent.  The same holds
for the connections to Redis of a context with C<pubsub>: a child that
needs the bridge makes a context of its own (as F<eg/cluster.pl>'s
workers do).

=head1 DIFFERENCES FROM THE LIBWEBSOCKETS-BASED ORIGINAL

EV::Websockets 0.10 was built on libwebsockets 4.3. Scripts written for it
run unchanged unless they depend on one of the defects fixed below (for
example, passing something other than a code reference as a callback now
croaks). The other differences are additions. Each point is described in
full in its section above.

=head2 Fixes

=over 4

=item *

An idle context never spins an internal watcher and never starves your
timers and I/O watchers; it does not keep C<EV::run> alive by itself.

=item *

Host names are resolved without blocking the loop; a DNS failure is reported
through C<on_error> instead of a croak from C<connect>.

=item *

An unknown option warns instead of being silently ignored; a callback option
that is not a code reference, and C<headers> that is not a hash reference,
croak.

=item *

C<on_close> reports what really happened: the peer's code and reason, 1005,
1006, 1009, 1002 or 1007 (see L</CALLBACKS>), never undef.

=item *

Exceptions in callbacks no longer clobber your C<$@>.

=item *

C<close> performs a real closing handshake (RFC 6455 section 7): it waits for
the peer's close frame up to C<close_timeout>, and the server closes TCP
first. A reason is cut on a character boundary.

=item *

C<connect_timeout> closes the socket at once and reports
C<"connect timeout"> exactly once; nothing fires afterwards.

=item *

URLs: query strings are sent and fragments dropped; credentials in the URL
croak. C<Host> includes a non-default port. Your headers replace standard
ones instead of duplicating them; handshake headers and CR/LF/NUL croak.

=item *

C<send> of a text message that is not valid UTF-8 croaks; so does a text
message sent with C<send_fragment> whose fragments together are not valid
UTF-8.

=item *

A message over C<max_message_size> closes the connection with 1009. Protocol
violations by the peer (unmasked client frames, masked server frames,
reserved bits, unknown opcodes, bad control frames, bad continuations,
invalid close codes) close it with 1002, invalid UTF-8 with 1007; none of
them affects other connections.

=item *

C<get_protocol> works on both sides. C<is_connected> is true only in state
C<connected>, C<is_connecting> only in C<connecting>.

=item *

Server: the listener binds IPv4 and IPv6. A listener without C<protocol>
accepts every client; a client offering only unknown subprotocols gets 400.
A rejection from C<on_handshake> answers 403; plain HTTP requests get
C<426 Upgrade Required> with C<Sec-WebSocket-Version: 13>; malformed
upgrades get 400. An out-of-range C<port> croaks, and the bind failure
message includes the reason.

=item *

C<adopt> croaks on a listening socket and no longer borrows settings from a
listener named C<server>.

=item *

Contexts: C<proxy_port> defaults to 1080 as documented; C<< proxy => "" >>
suppresses environment proxies; C<ssl_ca> alone works as the trust store;
bad certificate or key files croak with the reason. Destroying a context
sends a best-effort 1001 close frame to open peers.

=item *

Objects survive any destruction order during global destruction; forged or
copied objects croak instead of crashing; threads skip cloning them
(C<CLONE_SKIP>); forked children leave the parent's connections alone.

=back

=head2 Additions

=over 4

=item *

Topics across processes through Redis: C<pubsub> (see L</new>) and
L</pubsub_stats>.

=item *

Sends are batched: a reply sent from a connection's own callbacks goes out
in one write when they return, everything else queued during one loop
iteration in one write per connection before the loop waits.

=item *

C<on_connect> of a client receives every response header; server request
headers include C<Query>, C<URI> and every other header.

=item *

C<listen> accepts C<host>, C<reuse_port>, C<handshake_timeout> (default
10 seconds), C<max_header_size> (default 16 KiB; heads are also limited
to 100 header lines, 431 beyond), C<compression>, C<context_takeover>
and an array of protocols.

=item *

C<adopt> accepts C<protocol>, C<headers>, C<on_handshake>, C<compression>
and C<context_takeover>.

=item *

A 30 second handshake deadline applies when C<connect_timeout> is not given.

=item *

C<no_proxy> is honoured, proxy credentials are sent, and C<socks5://> and
C<socks5h://> proxies work.

=item *

Keepalive: C<ping_interval> and C<ping_timeout>; C<close_timeout>.

=item *

permessage-deflate on the server side (C<< compression => 1 >>, the
original never negotiated it); the client compresses what it sends, not
only inflates; C<< compression => 0 >> on C<connect> turns off the offer.
Inflation is bounded by C<max_message_size>.

=item *

C<EV_WS_DEBUG=1> in the environment turns on debug output.

=item *

Host names with several addresses are dialled the Happy Eyeballs way
(L</Addresses>), and TLS failures say what is wrong and what to do
(L</on_error messages>, L</Making certificates>).

=back

=head1 DEBUGGING

    EV::Websockets::_set_debug(1);    # trace on
    EV::Websockets::_set_debug(0);    # trace off

Turns process-wide tracing on or off: lines on STDERR prefixed with
C<[EV::WS] >. Setting C<EV_WS_DEBUG> to a true value in the environment
before the module loads does the same. Without it the module prints
nothing on STDERR except the warnings described above.

A panic inside the Rust core would be a bug: it is caught at the boundary
instead of unwinding into Perl (the process carries on), reported as
described in L</Perl code at the boundary>, and Rust prints where it
happened on STDERR; please report it. C<EV::Websockets::_selftest_panic()>
exists for the test suite: it panics on purpose and returns the message
the guard made of it.

=head1 EXAMPLES

F<eg/> holds runnable examples, for instance F<demo.pl> (a chat server and
two clients in one loop), F<echo_server.pl> and F<echo_client.pl>,
F<chat_server.pl>, F<tls_server.pl>, F<make_certs.pl> (see
L</Making certificates>), F<cluster.pl> (worker processes sharing topics
through Redis), and F<feersum_psgi.pl> and
F<feersum_native.pl> (see L</adopt>). Run them from the build directory
with C<perl -Mblib>.

=head1 PERFORMANCE AND MEMORY

Sends are queued and written in batches: what a connection's own
callbacks send is written in one go when they return, everything else
once per connection just before the loop waits. Every socket has
C<TCP_NODELAY>; each readiness costs one read (64 KB at a time, more
while a large frame arrives). A 64-byte
echo round trip costs about as much as a hand-written Perl echo over raw
TCP in the same loop.

An idle connection holds no I/O buffer: about 1.5 KB of memory per idle
server connection, also with 10,000 of them, and about the same with
permessage-deflate unless C<context_takeover> is on (see L</SECURITY>).
Compression with context takeover costs about 321 KB per connection with
C<< compression => 1, context_takeover => 1 >>, 2.9 KB with
C<< compression => 'dedicated_3kb' >> and 9.9 KB with C<'dedicated_32kb'>
(see L</Compression presets>).
Busy connections borrow buffers from a per-thread spare (one per
direction, kept up to 4 MB), so large messages do not cost an allocation
each; a message being reassembled is held whole, up to
C<max_message_size>.

The F<bench/> directory measures echo latency (F<latency.pl>), throughput
sequential and pipelined (F<throughput.pl>), handshakes per second
(F<accept.pl>), memory per idle connection (F<memory.pl>), the same
echo through the other Perl WebSocket modules installed and a raw-TCP
echo (F<compare.pl>), and a broadcast to 1,000 and 10,000 subscribers by
C<publish>, by a Perl loop of C<send> and by Node's C<ws> (F<fanout.pl>).
C<publish> builds a message's frame once and copies it to each
subscriber's queue without a Perl call: with 1,000 subscribers it
delivers about twice as many messages a second as the Perl loop, and
about half as many as the kernel takes when each subscriber's frames
are written with one system call. F<README.pod> has the figures measured on a 2-vCPU
virtual machine, next to those of the original.

=head1 SEE ALSO

L<EV>, L<Feersum>, L<Net::WebSocket::EVx>, L<AnyEvent::WebSocket::Client>,
RFC 6455 (The WebSocket Protocol), RFC 7692 (permessage-deflate).

=head1 LICENSE

This library is free software; you can redistribute it and/or modify it
under the same terms as Perl itself.

=cut
