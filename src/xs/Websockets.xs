/* Perl binding of EV::Websockets: Perl objects, option parsing, EV watchers
 * and callback dispatch.  All protocol work happens in the Rust core behind
 * ev_websockets.h; this file never parses a byte of WebSocket.
 *
 * Control flow: an EV watcher fires -> C calls into Rust, which does its
 * work and returns -> C pulls the queued events and calls Perl for each.
 * Perl never runs on top of a Rust frame, and a croak only ever happens in
 * an XS body after Rust has returned.
 *
 * Lifetimes: a connection's C struct lives in ext magic on its Perl object
 * and is freed with it.  While its socket is alive the struct holds a
 * reference to that object ("self_held"), so a connection the user dropped
 * stays open and callbacks keep getting the same object.  Every dispatch
 * pins the object for its duration, so a callback may close or drop its own
 * connection or destroy the context.  The context struct is reference
 * counted in C (its Perl object holds one reference, a running prepare
 * callback another), so destroying it inside a callback only detaches.
 */

#include "binding.h"

/* The binding's parts, in dependency order (see binding.h). */
#include "callbacks.c"
#include "connection.c"
#include "pubsub.c"
#include "context.c"
#include "options.c"

/* ---- XS ---------------------------------------------------------------- */

typedef ws_ctx *EV__Websockets__Context;

MODULE = EV::Websockets   PACKAGE = EV::Websockets

PROTOTYPES: DISABLE

BOOT:
{
    I_EV_API("EV::Websockets");
}

void
_set_debug(int on)
CODE:
    ws_debug = on;

SV *
_selftest_panic()
PREINIT:
    ews_error err;
CODE:
    /* the guard's text for a deliberate panic, or undef if none was caught */
    RETVAL = ews_selftest_panic(&err) == -1 ? newSVpv(err.msg, 0) : newSV(0);
OUTPUT:
    RETVAL

MODULE = EV::Websockets   PACKAGE = EV::Websockets::Context

SV *
new(const char *class, ...)
PREINIT:
    call_opts opts;
    struct ev_loop *loop = NULL;
    ews_error err;
    ews_client *client;
    ews_pubsub *pubsub = NULL;
    ews_header *pairs = NULL;
    size_t n_pairs = 0;
    SV *pubsub_cbs[PUBSUB_CBS] = { NULL, NULL };
    ws_ctx *ctx;
    SV *obj;
CODE:
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_NEW, "loop", &opts);
    opts_check(aTHX_ &opts);
    if (opts.pubsub)
        pairs = pubsub_pairs(aTHX_ opts.pubsub, pubsub_cbs, &n_pairs);
    if (opts.object) {
        if (!(SvROK(opts.object) && sv_derived_from(opts.object, "EV::Loop")))
            croak("loop must be an EV::Loop object");
        loop = INT2PTR(struct ev_loop *, SvIVX(SvRV(opts.object)));
    }
    client = ews_client_new(opts.core, &err);
    if (!client)
        croak("Failed to create context: %s", err.msg);
    if (pairs && !(pubsub = ews_pubsub_settings(pairs, n_pairs, &err))) {
        ews_client_free(client);
        croak("%s", err.msg);
    }
    Newxz(ctx, 1, ws_ctx);
    ctx->refs = 1;
    ctx->client = client;
    ctx->loop = loop ? loop : EV_DEFAULT;
    if (loop)
        ctx->loop_sv = SvREFCNT_inc_simple_NN(SvRV(opts.object));
    ev_prepare_init(&ctx->prepare, ctx_prepare_cb);
    ev_idle_init(&ctx->idle, ctx_idle_cb);
    ev_async_init(&ctx->async, ctx_async_cb);
    ev_timer_init(&ctx->shutdown, ctx_shutdown_cb, 0., 0.);
    ctx->pid = getpid();
    ctx->waker = ews_waker_new(ctx_wake, ctx);
    ctx->hub = ews_hub_new();
    obj = newSV_type(SVt_PVMG);
    sv_magicext(obj, NULL, PERL_MAGIC_ext, &ctx_vtbl, (const char *)ctx, 0);
    ctx->self = obj;
    if (pubsub)
        bridge_start(aTHX_ ctx, pubsub, pubsub_cbs);
    RETVAL = sv_bless(newRV_noinc(obj), gv_stashpv(class, GV_ADD));
    TRACE("context %p created", (void *)ctx);
OUTPUT:
    RETVAL

SV *
connect(EV::Websockets::Context ctx, ...)
PREINIT:
    call_opts opts;
    ews_error err;
    ews_conn *rs;
CODE:
    ctx_pin(aTHX_ ctx);
    ctx_open(aTHX_ ctx);
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_CONNECT, NULL, &opts);
    opts_check(aTHX_ &opts);
    ctx_open(aTHX_ ctx);   /* converting the options may have destroyed or shut it */
    rs = ews_connect(opts.core, ctx->waker, ctx->client, &err);
    if (!rs)
        croak("%s", err.msg);
    TRACE("connect %p", (void *)rs);
    conn_sync(aTHX_ conn_new(aTHX_ ctx, rs, &opts.cbs, &RETVAL));
OUTPUT:
    RETVAL

IV
listen(EV::Websockets::Context ctx, ...)
PREINIT:
    call_opts opts;
    ews_error err;
    ws_listener *l;
CODE:
    ctx_pin(aTHX_ ctx);
    ctx_open(aTHX_ ctx);
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_LISTEN, NULL, &opts);
    opts_check(aTHX_ &opts);
    ctx_open(aTHX_ ctx);
    Newxz(l, 1, ws_listener);
    l->rs = ews_listen(opts.core, &err);
    if (!l->rs) {
        Safefree(l);
        croak("Failed to create vhost for listening: %s", err.msg);
    }
    callbacks_copy(&l->cbs, &opts.cbs);
    l->ctx = ctx;
    l->next = ctx->listeners;
    ctx->listeners = l;
    ev_io_init(&l->io, listener_io_cb, ews_listener_fd(l->rs), EV_READ);
    ev_timer_init(&l->retry, listener_retry_cb, 0.1, 0.);
    ev_io_start(ctx->loop, &l->io);
    RETVAL = ews_listener_port(l->rs);
    TRACE("listening on port %d", (int)RETVAL);
OUTPUT:
    RETVAL

SV *
adopt(EV::Websockets::Context ctx, ...)
PREINIT:
    call_opts opts;
    ews_error err;
    ews_conn *rs;
    ws_conn *c;
    IO *io;
    SV *buffered;
    int fd, dup_fd, flag;
    socklen_t flag_len = sizeof flag;
    struct stat st;
CODE:
    ctx_pin(aTHX_ ctx);
    ctx_open(aTHX_ ctx);
    /* every option converted (Perl may run) before the handle is looked at:
     * that code could close it */
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_ADOPT, "fh", &opts);
    if (!opts.object)
        croak("fh parameter is required");
    opts_check(aTHX_ &opts);
    io = sv_2io(opts.object);      /* croaks "Bad filehandle: ..." */
    if (!io || !IoIFP(io) || (fd = PerlIO_fileno(IoIFP(io))) < 0)
        croak("Invalid filehandle");
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &flag, &flag_len) < 0 || fstat(fd, &st) < 0)
        croak("adopt: file handle is not a socket");
    flag_len = sizeof flag;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &flag, &flag_len) == 0 && flag)
        croak("adopt: file handle is a listening socket");
    ctx_open(aTHX_ ctx);
    /* The connection owns a duplicate; the Perl handle keeps its own fd
     * (held below until the connection is done), so neither is closed
     * twice. */
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        croak("adopt: cannot duplicate the file handle: %s", Strerror(errno));
    buffered = sv_2mortal(newSVpvs(""));
    handle_take_buffered(aTHX_ IoIFP(io), buffered);
    rs = ews_adopt(dup_fd, opts.core, SvPVX(buffered), SvCUR(buffered), &err);
    if (!rs) {
        handle_return_buffered(aTHX_ IoIFP(io), buffered);
        croak("%s", err.msg);
    }
    c = conn_new(aTHX_ ctx, rs, &opts.cbs, &RETVAL);
    c->server = 1;
    c->adopted_io = SvREFCNT_inc_simple_NN((SV *)io);
    c->adopted_dev = st.st_dev;
    c->adopted_ino = st.st_ino;
    TRACE("adopted fd %d", fd);
    /* A complete request in initial_data: on_connect may fire right here. */
    conn_settle(aTHX_ c, 0);
OUTPUT:
    RETVAL

void
shutdown(EV::Websockets::Context ctx, ...)
PREINIT:
    shutdown_opts opts;
CODE:
    ctx_pin(aTHX_ ctx);
    ctx_open(aTHX_ ctx);
    parse_shutdown_opts(aTHX_ &ST(1), items - 1, &opts);
    ctx_open(aTHX_ ctx);   /* converting the options may have shut it */
    ctx_shutdown(aTHX_ ctx, opts.code, opts.reason, opts.reason_len, opts.timeout, opts.cb);

IV
publish(EV::Websockets::Context ctx, SV *topic, SV *data, ...)
PREINIT:
    const char *t, *p;
    STRLEN tlen, len;
    int binary;
CODE:
    ctx_pin(aTHX_ ctx);
    t = owned_string(aTHX_ topic, &tlen);
    p = owned_string(aTHX_ data, &len);
    binary = publish_binary(aTHX_ &ST(3), items - 3);
    ctx_alive(aTHX_ ctx);   /* converting them may have destroyed it */
    RETVAL = hub_publish(aTHX_ ctx, t, tlen, NULL, binary, p, len);
OUTPUT:
    RETVAL

SV *
pubsub_stats(EV::Websockets::Context ctx)
PREINIT:
    ews_pubsub_stats s;
    HV *hv;
CODE:
    if (ctx->destroyed || !ews_hub_bridge_stats(ctx->hub, &s))
        XSRETURN_UNDEF;
    hv = newHV();
    (void)hv_stores(hv, "connected", newSViv(s.connected));
    (void)hv_stores(hv, "published", newSVuv((UV)s.published));
    (void)hv_stores(hv, "received", newSVuv((UV)s.received));
    (void)hv_stores(hv, "dropped", newSVuv((UV)s.dropped));
    (void)hv_stores(hv, "reconnects", newSVuv((UV)s.reconnects));
    (void)hv_stores(hv, "channels", newSVuv((UV)s.channels));
    RETVAL = newRV_noinc((SV *)hv);
OUTPUT:
    RETVAL

UV
subscribers(EV::Websockets::Context ctx, SV *topic)
PREINIT:
    const char *t;
    STRLEN tlen;
CODE:
    ctx_pin(aTHX_ ctx);
    t = owned_string(aTHX_ topic, &tlen);
    RETVAL = ctx->destroyed ? 0 : ews_hub_subscribers(ctx->hub, t, tlen);
OUTPUT:
    RETVAL

void
connections(EV::Websockets::Context ctx)
PREINIT:
    ws_conn *c;
    IV count = 0;
PPCODE:
    for (c = ctx->destroyed ? NULL : ctx->conns; c; c = c->next) {
        int state = conn_state(c);
        if (state != EWS_CONNECTED && state != EWS_CLOSING)
            continue;
        count++;
        if (GIMME_V == G_LIST)
            mXPUSHs(newRV_inc(c->self));
    }
    if (GIMME_V != G_LIST)
        mXPUSHi(count);

void
DESTROY(SV *self)
CODE:
    {
        /* quietly nothing for an object that never was a context */
        MAGIC *mg = SvROK(self) ? mg_findext(SvRV(self), PERL_MAGIC_ext, &ctx_vtbl) : NULL;
        if (mg && mg->mg_ptr)
            ctx_destroy(aTHX_ (ws_ctx *)mg->mg_ptr);
    }

int
CLONE_SKIP(...)
CODE:
    RETVAL = 1;
OUTPUT:
    RETVAL

MODULE = EV::Websockets   PACKAGE = EV::Websockets::Connection

SV *
send(SV *self, SV *data)
ALIAS:
    send_binary = EWS_BINARY
CODE:
    RETVAL = boolSV(conn_send(aTHX_ self, ix, 0, 1, data));
OUTPUT:
    RETVAL

void
send_ping(SV *self, SV *data = NULL)
ALIAS:
    send_pong = 1
CODE:
    conn_send(aTHX_ self, ix ? EWS_PONG : EWS_PING, 0, 1, data);

SV *
send_fragment(SV *self, SV *data, int is_binary = 0, int is_final = 1)
CODE:
    RETVAL = boolSV(conn_send(aTHX_ self, EWS_FRAGMENT, is_binary, is_final, data));
OUTPUT:
    RETVAL

void
close(SV *self, SV *code_sv = NULL, SV *reason = NULL)
PREINIT:
    ws_conn *c;
    ews_error err;
    NV code = 1000;   /* as given: the core rejects NaN, fractions, ... */
    const char *p = "";
    STRLEN len = 0;
CODE:
    /* arguments first: their magic may run Perl that frees the connection */
    if (code_sv) {
        SvGETMAGIC(code_sv);
        if (SvOK(code_sv))
            code = SvNV_nomg(code_sv);
    }
    p = string_arg(aTHX_ reason, &len);
    c = conn_from_sv(aTHX_ self);
    /* a connection already closed only checks the arguments */
    if (ews_conn_close(c->destroyed ? NULL : c->rs, code, p, len, &err))
        croak("%s", err.msg);
    conn_mark_dirty(aTHX_ c);

bool
subscribe(SV *self, SV *topic)
ALIAS:
    unsubscribe = 1
PREINIT:
    const char *t;
    STRLEN tlen;
    ws_conn *c;
    ews_conn *rs;
CODE:
    t = owned_string(aTHX_ topic, &tlen);
    c = conn_from_sv(aTHX_ self);
    rs = conn_open(aTHX_ c);
    RETVAL = ix ? ews_hub_unsubscribe(c->ctx->hub, rs, t, tlen)
                : ews_hub_subscribe(c->ctx->hub, rs, c, t, tlen);
    ctx_bridge_kick(aTHX_ c->ctx);
OUTPUT:
    RETVAL

void
topics(SV *self)
PREINIT:
    ws_conn *c;
    const char *t;
    size_t len, i;
PPCODE:
    c = conn_from_sv(aTHX_ self);
    if (c->rs && c->ctx && c->ctx->hub) {
        for (i = 0; ews_hub_topic(c->ctx->hub, c->rs, i, &t, &len); i++)
            if (GIMME_V == G_LIST)
                mXPUSHp(t, len);
        if (GIMME_V != G_LIST)
            mXPUSHu(i);
    } else if (GIMME_V != G_LIST) {
        mXPUSHu(0);
    }

IV
publish(SV *self, SV *topic, SV *data, ...)
PREINIT:
    const char *t, *p;
    STRLEN tlen, len;
    int binary;
    ws_conn *c;
    ews_conn *rs;
CODE:
    t = owned_string(aTHX_ topic, &tlen);
    p = owned_string(aTHX_ data, &len);
    binary = publish_binary(aTHX_ &ST(3), items - 3);
    c = conn_from_sv(aTHX_ self);
    rs = conn_open(aTHX_ c);
    RETVAL = hub_publish(aTHX_ c->ctx, t, tlen, rs, binary, p, len);
OUTPUT:
    RETVAL

void
pause_recv(SV *self)
ALIAS:
    resume_recv = 1
PREINIT:
    ws_conn *c;
CODE:
    c = conn_from_sv(aTHX_ self);
    if (c->rs) {
        ews_conn_set_paused(c->rs, !ix);
        conn_sync(aTHX_ c);
    }

UV
send_queue_size(SV *self)
CODE:
    {
        ws_conn *c = conn_from_sv(aTHX_ self);
        RETVAL = c->rs ? ews_conn_queued(c->rs) : 0;
    }
OUTPUT:
    RETVAL

UV
dropped_messages(SV *self)
CODE:
    {
        ws_conn *c = conn_from_sv(aTHX_ self);
        RETVAL = c->rs ? (UV)ews_conn_dropped(c->rs) : c->dropped;
    }
OUTPUT:
    RETVAL

SV *
stash(SV *self)
CODE:
    {
        ws_conn *c = conn_from_sv(aTHX_ self);
        if (c->destroyed)
            croak("Connection has been destroyed");
        if (!c->stash)
            c->stash = newHV();
        RETVAL = newRV_inc((SV *)c->stash);
    }
OUTPUT:
    RETVAL

SV *
get_protocol(SV *self)
CODE:
    {
        ws_conn *c = conn_from_sv(aTHX_ self);
        const char *p;
        size_t len;
        RETVAL = c->rs && ews_conn_protocol(c->rs, &p, &len)
            ? newSVpvn(p, len) : newSV(0);
    }
OUTPUT:
    RETVAL

SV *
peer_address(SV *self)
CODE:
    {
        ws_conn *c = conn_from_sv(aTHX_ self);
        char buf[64];
        size_t len = c->rs ? ews_conn_peer_address(c->rs, buf, sizeof buf) : 0;
        RETVAL = len ? newSVpvn(buf, len) : newSV(0);
    }
OUTPUT:
    RETVAL

const char *
state(SV *self)
CODE:
    {
        static const char *const names[] = { "connecting", "connected", "closing", "closed" };
        ws_conn *c = conn_from_sv(aTHX_ self);
        RETVAL = c->destroyed ? "destroyed" : names[conn_state(c)];
    }
OUTPUT:
    RETVAL

bool
is_connected(SV *self)
ALIAS:
    is_connecting = 1
CODE:
    {
        ws_conn *c = conn_from_sv(aTHX_ self);
        int want = ix ? EWS_CONNECTING : EWS_CONNECTED;
        RETVAL = !c->destroyed && conn_state(c) == want;
    }
OUTPUT:
    RETVAL

int
CLONE_SKIP(...)
CODE:
    RETVAL = 1;   /* a new thread gets no copy of a connection */
OUTPUT:
    RETVAL

void
DESTROY(SV *self)
CODE:
    {
        /* Never closes: an open connection holds its own object, so this
         * only marks one whose socket is already gone. */
        MAGIC *mg = SvROK(self) ? mg_findext(SvRV(self), PERL_MAGIC_ext, &conn_vtbl) : NULL;
        ws_conn *c = mg ? (ws_conn *)mg->mg_ptr : NULL;
        if (c && !c->rs)
            c->destroyed = 1;
    }
