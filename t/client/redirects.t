# Proves: 301, 302, 303, 307 and 308 with Location are followed, at most 5.
# POD: EV::Websockets, "Redirects" and "on_error messages".
use strict;
use warnings;
use Test::More;
use EV;
use EV::Websockets;
use lib 't/lib';
use TestWS;

my $guard = EV::timer(10, 0, sub { fail('timed out'); EV::break(EV::BREAK_ALL) });

my $ctx  = EV::Websockets::Context->new;
my (@paths, $landed_headers);
my $echo = echo_server($ctx, on_connect => sub { push @paths, $_[1]{Path}; $landed_headers = $_[1] });

sub redirect { my ($status, $location) = @_; "HTTP/1.1 $status\r\nLocation: $location\r\nContent-Length: 0\r\n\r\n" }

sub attempt {
    my ($url, @extra) = @_;
    my %got;
    $ctx->connect(
        @extra,
        url        => $url,
        on_connect => sub { $_[0]->send('ping') },
        on_message => sub { $got{reply} = $_[1]; $_[0]->close },
        on_close   => sub { $got{close} = $_[1] },
        on_error   => sub { push @{ $got{errors} }, $_[1] },
    );
    run_until(sub { exists $got{close} || $got{errors} }, 5);
    run_for(0.05);    # nothing more may fire
    return \%got;
}

for my $status ('301 Moved Permanently', '302 Found', '303 See Other', '307 Temporary Redirect', '308 Permanent Redirect') {
    my $port = http_answerer(sub { redirect($status, "ws://127.0.0.1:$echo/landed?via=$_[0]") });
    @paths = ();
    my $got = attempt("ws://127.0.0.1:$port/start");
    is($got->{reply}, 'ping', "$status: followed, echo works");
    is_deeply(\@paths, ['/landed'], '... at the Location');
    ok(!$got->{errors}, '... without errors');
}

{
    my $port = http_answerer(sub { $_[0] eq '/start' ? redirect('302 Found', '/next') : redirect('302 Found', "http://127.0.0.1:$echo/web") });
    @paths = ();
    my $got = attempt("ws://127.0.0.1:$port/start");
    is($got->{reply}, 'ping', 'relative Location, then an http:// one, are followed');
    is_deeply(\@paths, ['/web'], '... http:// is taken as ws://');
}

subtest 'credentials stay with their origin' => sub {
    my %auth = (Authorization => 'Bearer s3cret', Cookie => 'session=1', 'X-Trace' => 'abc');
    my %seen;    # path => the request head the redirector saw
    my $port;
    $port = http_answerer(sub {
        my ($path, $head) = @_;
        $seen{$path} = $head;
        return redirect('302 Found', "ws://127.0.0.1:$port/again") if $path eq '/start';
        return redirect('302 Found', "ws://127.0.0.1:$echo/elsewhere");
    });
    my $got = attempt("ws://127.0.0.1:$port/start", headers => \%auth);
    is($got->{reply}, 'ping', 'the redirects were followed');
    like($seen{'/again'}, qr/^Authorization: Bearer s3cret\r$/m, 'a redirect to the same origin keeps Authorization');
    like($seen{'/again'}, qr/^Cookie: session=1\r$/m, '... and Cookie');
    ok(!exists $landed_headers->{Authorization} && !exists $landed_headers->{Cookie},
        'another origin gets neither') or diag(explain($landed_headers));
    is($landed_headers->{'X-Trace'}, 'abc', '... but still the other headers');
};

# A chain of redirectors: the last one points at the echo server.
sub chain {
    my ($length) = @_;
    my $next = "ws://127.0.0.1:$echo/end";
    for (1 .. $length) {
        my $to = $next;
        $next = 'ws://127.0.0.1:' . http_answerer(sub { redirect('307 Temporary Redirect', $to) }) . '/hop';
    }
    return $next;
}

is(attempt(chain(5))->{reply}, 'ping', 'five redirects are followed');
my $six = attempt(chain(6));
is_deeply($six->{errors}, ['handshake failed: too many redirects'], 'a sixth is refused');
ok(!exists $six->{close}, '... with on_error only');

{
    my $port = http_answerer(sub { "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n" });
    my $got = attempt("ws://127.0.0.1:$port/");
    is_deeply($got->{errors}, ['handshake failed: HTTP 302 Found'], 'a redirect without Location is an error');
}

{
    my $port = http_answerer(sub { redirect('302 Found', 'ftp://127.0.0.1/') });
    my $got = attempt("ws://127.0.0.1:$port/");
    is_deeply($got->{errors}, ["handshake failed: bad redirect to 'ftp://127.0.0.1/'"], 'a redirect to another scheme is an error');
}

done_testing;
