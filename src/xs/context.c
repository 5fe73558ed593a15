/* A context's C side: the prepare watcher that flushes and delivers, the
 * resolver wake-up, listening sockets, and destruction in two phases. */

/* ---- context ----------------------------------------------------------- */

/* Flush each connection with pending output once, then deliver its
 * events.  A connection that becomes dirty again meanwhile (a send from
 * on_drain) waits for the next loop iteration, which the idle watcher
 * keeps from blocking: a busy producer cannot starve the loop. */
static void ctx_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    ws_ctx *ctx = (ws_ctx *)((char *)w - offsetof(ws_ctx, prepare));
    ws_conn *on_stack[16], **batch = on_stack;
    ws_conn *c;
    size_t n = 0, i;
    dTHX;
    PERL_UNUSED_ARG(revents);

    ctx->refs++;
    for (c = ctx->dirty; c; c = c->next_dirty)
        n++;
    if (n > sizeof on_stack / sizeof *on_stack)
        Newx(batch, n, ws_conn *);
    /* take the list; pin each connection, since callbacks may drop any */
    for (i = 0; (c = ctx->dirty); i++) {
        ctx->dirty = c->next_dirty;
        c->next_dirty = NULL;
        c->dirty = 0;
        SvREFCNT_inc_simple_void_NN(c->self);
        batch[i] = c;
    }
    for (i = 0; i < n; i++) {
        c = batch[i];
        if (!ctx->destroyed) {
            if (c->rs)
                ews_conn_flush(c->rs);
            conn_settle(aTHX_ c, 0);
        }
        SvREFCNT_dec(c->self);
    }
    if (batch != on_stack)
        Safefree(batch);
    if (ctx->bridged && !ctx->destroyed)
        bridge_run(aTHX_ ctx, -1, 0);   /* write what was published */
    if (!ctx->destroyed) {
        if (ctx->dirty)
            ev_idle_start(loop, &ctx->idle);
        else
            ev_prepare_stop(loop, w);
    }
    ctx_release(ctx);
}

/* Its only job was to make the loop poll instead of block. */
static void ctx_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    PERL_UNUSED_ARG(revents);
    ev_idle_stop(loop, w);
}

/* A resolver thread answered: let each waiting connection look. */
static void ctx_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    ws_ctx *ctx = (ws_ctx *)((char *)w - offsetof(ws_ctx, async));
    ws_conn *c;
    dTHX;
    PERL_UNUSED_ARG(loop);
    PERL_UNUSED_ARG(revents);

    ctx->refs++;
    if (ctx->bridged)
        bridge_run(aTHX_ ctx, -1, 0);   /* its lookup may have answered */
again:
    for (c = ctx->conns; c && !ctx->destroyed; c = c->next)
        if (c->resolving && c->rs && ews_conn_on_lookup(c->rs)) {
            conn_settle(aTHX_ c, 0);
            goto again;   /* callbacks may have changed the list */
        }
    ctx_release(ctx);
}

/* From a resolver thread: only ev_async_send is safe here. */
static void ctx_wake(void *data)
{
    ws_ctx *ctx = (ws_ctx *)data;
    ev_async_send(ctx->loop, &ctx->async);
}

/* Accept what is pending (a bounded batch per wake-up).  On an error such
 * as EMFILE, pause accepting briefly instead of spinning on a listening
 * socket that stays readable. */
static void listener_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ws_listener *l = (ws_listener *)w;
    int i;
    dTHX;
    PERL_UNUSED_ARG(revents);

    for (i = 0; i < 64; i++) {
        ews_error err;
        ews_conn *rs = ews_listener_accept(l->rs, &err);
        ws_conn *c;
        SV *rv;
        if (!rs) {
            if (err.msg[0]) {
                TRACE("accept failed: %s", err.msg);
                ev_io_stop(loop, &l->io);
                ev_timer_start(loop, &l->retry);
            }
            break;
        }
        TRACE("accepted a connection");
        c = conn_new(aTHX_ l->ctx, rs, &l->cbs, &rv);
        c->server = 1;
        conn_sync(aTHX_ c);
        SvREFCNT_dec(rv);   /* the connection holds its own object */
    }
}

static void listener_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ws_listener *l = (ws_listener *)((char *)w - offsetof(ws_listener, retry));
    PERL_UNUSED_ARG(revents);
    ev_io_start(loop, &l->io);
}

/* A listener's two phases, as a connection's (conn_detach). */
static void listener_detach(pTHX_ ws_listener *l)
{
    if (LOOP_USABLE) {
        ev_io_stop(l->ctx->loop, &l->io);
        ev_timer_stop(l->ctx->loop, &l->retry);
    }
    ews_listener_free(l->rs);
    l->rs = NULL;
}

static void listener_release(pTHX_ ws_listener *l)
{
    callbacks_free(aTHX_ &l->cbs);
    Safefree(l);
}

/* Detach everything without firing callbacks: open peers get a
 * best-effort 1001, listening sockets close.  Two phases: first every
 * watcher stops and every socket goes (no Perl code runs), then the Perl
 * values are released; a DESTROY that runs then finds a destroyed context
 * ("Context has been destroyed") and connections without sockets. */
static void ctx_destroy(pTHX_ ws_ctx *ctx)
{
    ws_conn **conns = NULL, *c;
    ws_listener *listeners, *l;
    SV *loop_sv, *shutdown_cb;
    size_t n = 0, i;
    /* A forked child only closes its copies of the descriptors: the
     * connections still belong to the parent. */
    int owner = getpid() == ctx->pid;

    if (ctx->destroyed)
        return;
    ctx->destroyed = 1;
    /* Releasing Perl values may free the context's object (a closure held
     * its last reference) and with it our caller's hold on ctx: keep one
     * of our own until the end. */
    ctx->refs++;
    TRACE("context %p destroyed", (void *)ctx);

    /* phase one: stop and close; no Perl code runs */
    if (LOOP_USABLE) {
        ev_prepare_stop(ctx->loop, &ctx->prepare);
        ev_idle_stop(ctx->loop, &ctx->idle);
        ev_async_stop(ctx->loop, &ctx->async);
        ev_timer_stop(ctx->loop, &ctx->shutdown);
    }
    bridge_detach(aTHX_ ctx, owner);
    ews_waker_free(ctx->waker);   /* no more wake-ups from resolver threads */
    ctx->waker = NULL;
    ews_client_free(ctx->client);   /* connections keep what they use */
    ctx->client = NULL;
    while ((c = ctx->dirty)) {
        ctx->dirty = c->next_dirty;
        c->dirty = 0;
        c->next_dirty = NULL;
    }
    for (c = ctx->conns; c; c = c->next)
        n++;
    if (n)
        Newx(conns, n, ws_conn *);
    for (i = 0; (c = ctx->conns); i++) {
        SvREFCNT_inc_simple_void_NN(c->self);   /* c lives through phase two */
        conns[i] = c;
        conn_detach(aTHX_ c, c->rs && owner);   /* unlinks c */
    }
    ews_hub_free(ctx->hub);   /* after the detaches: each left the hub */
    ctx->hub = NULL;
    listeners = ctx->listeners;
    ctx->listeners = NULL;
    for (l = listeners; l; l = l->next)
        listener_detach(aTHX_ l);
    ctx->resolving = 0;
    loop_sv = ctx->loop_sv;
    ctx->loop_sv = NULL;
    shutdown_cb = ctx->shutdown_cb;   /* a shutdown under way never calls it */
    ctx->shutdown_cb = NULL;

    /* phase two: release what Perl code may hang on */
    for (i = 0; i < n; i++) {
        conn_release(aTHX_ conns[i]);
        SvREFCNT_dec(conns[i]->self);
    }
    Safefree(conns);
    while ((l = listeners)) {
        listeners = l->next;
        listener_release(aTHX_ l);
    }
    bridge_release(aTHX_ ctx);
    SvREFCNT_dec(shutdown_cb);
    SvREFCNT_dec(loop_sv);
    ctx_release(ctx);
}

static int ctx_magic_free(pTHX_ SV *sv, MAGIC *mg)
{
    ws_ctx *ctx = (ws_ctx *)mg->mg_ptr;
    PERL_UNUSED_ARG(sv);
    if (!ctx)
        return 0;
    mg->mg_ptr = NULL;
    ctx_destroy(aTHX_ ctx);
    ctx_release(ctx);
    return 0;
}

static MGVTBL ctx_vtbl = { NULL, NULL, NULL, NULL, ctx_magic_free, NULL, NULL, NULL };

/* The typemap's check for Context methods. */
static ws_ctx *ctx_from_sv(pTHX_ SV *sv, const char *func)
{
    MAGIC *mg;
    if (SvROK(sv) && sv_derived_from(sv, CTX_CLASS)
        && (mg = mg_findext(SvRV(sv), PERL_MAGIC_ext, &ctx_vtbl)) && mg->mg_ptr)
        return (ws_ctx *)mg->mg_ptr;
    croak("%s: %s is not of type %s", func, "self", CTX_CLASS);
}

static ws_ctx *ctx_alive(pTHX_ ws_ctx *ctx)
{
    if (ctx->destroyed)
        croak("Context has been destroyed");
    return ctx;
}

/* Alive and taking new connections: not shut down. */
static ws_ctx *ctx_open(pTHX_ ws_ctx *ctx)
{
    ctx_alive(aTHX_ ctx);
    if (ctx->shut != SHUT_NONE)
        croak("Context is shutting down");
    return ctx;
}

static void ctx_unpin(pTHX_ void *ctx)
{
    ctx_release((ws_ctx *)ctx);
}

/* Keep the context's memory until the XS call ends (even by croak):
 * converting the options may run Perl that destroys the context. */
static void ctx_pin(pTHX_ ws_ctx *ctx)
{
    ctx->refs++;
    SAVEDESTRUCTOR_X(ctx_unpin, ctx);
}

/* ---- shutdown ---------------------------------------------------------- */

/* Drop the connections of ctx (only those still connecting, with
 * connecting_only) in two phases: detach them all (no Perl code runs; the
 * owner's sockets get a last best-effort write, so a closing one's close
 * frame still goes out), then tell each its end (conn_tell_end: on_close
 * 1006 for one open or closing, on_error for a client still connecting,
 * nothing for a server connection before its upgrade, nor in a forked
 * child) and release it.  Nothing is told once the context is destroyed. */
static void ctx_drop_conns(pTHX_ ws_ctx *ctx, int connecting_only)
{
    ws_conn **list, *c, *next;
    int *ends;
    size_t n = 0, i;
    int owner = getpid() == ctx->pid;

    for (c = ctx->conns; c; c = c->next)
        n++;
    if (!n)
        return;
    Newx(list, n, ws_conn *);
    Newx(ends, n, int);
    /* phase one */
    for (n = 0, c = ctx->conns; c; c = next) {
        int state = conn_state(c);
        next = c->next;   /* detaching c runs no Perl: next stays listed */
        if (connecting_only && state != EWS_CONNECTING)
            continue;
        ends[n] = !owner ? END_QUIET
            : state == EWS_CONNECTED || state == EWS_CLOSING ? END_CLOSE
            : state == EWS_CONNECTING && !c->server ? END_ERROR
            : END_QUIET;
        SvREFCNT_inc_simple_void_NN(c->self);   /* c lives through phase two */
        list[n++] = c;
        conn_detach(aTHX_ c, c->rs && owner);   /* unlinks c */
    }
    /* phase two */
    for (i = 0; i < n; i++) {
        c = list[i];
        if (!ctx->destroyed)
            conn_tell_end(aTHX_ c, ends[i], "context is shutting down");
        conn_release(aTHX_ c);
        SvREFCNT_dec(c->self);
    }
    Safefree(list);
    Safefree(ends);
}

/* The shutdown is over (every connection gone, or the timeout passed):
 * drop what is left, then call cb, once.  The caller holds a reference to
 * ctx. */
static void ctx_shutdown_finish(pTHX_ ws_ctx *ctx)
{
    SV *cb, *died;
    if (ctx->shut != SHUT_PENDING || ctx->destroyed)
        return;
    ctx->shut = SHUT_DONE;   /* no connection restarts the timer now */
    if (LOOP_USABLE)
        ev_timer_stop(ctx->loop, &ctx->shutdown);
    ctx_drop_conns(aTHX_ ctx, 0);
    cb = ctx->shutdown_cb;
    ctx->shutdown_cb = NULL;   /* called once; no cycle through a closure */
    if (cb && !ctx->destroyed) {
        SV *arg = newRV_inc(ctx->self);
        call_caught(aTHX_ cb, &arg, 1, 0, &died);
        if (died)
            warn_caught(aTHX_ newSVpvs("EV::Websockets: exception in shutdown handler: "), died);
    }
    SvREFCNT_dec(cb);
}

static void ctx_shutdown_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ws_ctx *ctx = (ws_ctx *)((char *)w - offsetof(ws_ctx, shutdown));
    dTHX;
    PERL_UNUSED_ARG(loop);
    PERL_UNUSED_ARG(revents);
    ctx->refs++;
    ctx_shutdown_finish(aTHX_ ctx);
    ctx_release(ctx);
}

/* shutdown(): stop accepting, start the closing handshake of every open
 * connection, fail the ones still connecting, and arm the timer that ends
 * it all (after `timeout` seconds, or at once with no connection left).
 * The arguments were checked; the caller pinned ctx. */
static void ctx_shutdown(pTHX_ ws_ctx *ctx, NV code, const char *reason, STRLEN len,
                         NV timeout, SV *cb)
{
    ws_listener *listeners = ctx->listeners, *l;
    ws_conn *c;
    ews_error err;
    int owner = getpid() == ctx->pid;

    TRACE("context %p shutting down", (void *)ctx);
    ctx->shut = SHUT_PENDING;
    ctx->shutdown_cb = cb ? SvREFCNT_inc_simple_NN(cb) : NULL;
    /* no Perl code runs until the connecting ones are told */
    ctx->listeners = NULL;
    for (l = listeners; l; l = l->next)
        listener_detach(aTHX_ l);
    bridge_detach(aTHX_ ctx, owner);
    /* a forked child leaves the parent's peers alone: ctx_drop_conns
     * closes its copies of their sockets */
    for (c = ctx->conns; c && owner; c = c->next)
        if (conn_state(c) == EWS_CONNECTED) {
            (void)ews_conn_close(c->rs, code, reason, len, &err);   /* checked */
            conn_mark_dirty(aTHX_ c);
        }
    ctx_drop_conns(aTHX_ ctx, owner);   /* the child's: all of them */
    while ((l = listeners)) {
        listeners = l->next;
        listener_release(aTHX_ l);
    }
    bridge_release(aTHX_ ctx);
    if (ctx->destroyed || ctx->shut != SHUT_PENDING)
        return;
    if (!LOOP_USABLE) {
        /* global destruction: no loop to wait in */
        ctx_shutdown_finish(aTHX_ ctx);
        return;
    }
    ev_timer_stop(ctx->loop, &ctx->shutdown);
    ev_timer_set(&ctx->shutdown, ctx->conns ? timeout : 0., 0.);
    ev_timer_start(ctx->loop, &ctx->shutdown);
}
