/* A context's bridge to Redis (pubsub): the io watchers of its two
 * connections and its deadline timer mirror what the core wants, and its
 * on_connect and on_error run after the core has returned.  Messages from
 * Redis never come here: the core fans them out to the subscribers. */

/* ---- pubsub ------------------------------------------------------------ */

/* Mirror the bridge's interest into its watchers.  A socket replaced
 * within one poll is made before the old one closes, so the same fd with
 * the same events is the same socket. */
static void bridge_sync(pTHX_ ws_ctx *ctx)
{
    NV after;
    int i;

    if (!ctx->bridged || ctx->destroyed || !LOOP_USABLE)
        return;
    for (i = 0; i < 2; i++) {
        ev_io *w = &ctx->bridge_io[i].io;
        int fd, r, wr, events;
        ews_hub_bridge_interest(ctx->hub, i, &fd, &r, &wr);
        events = fd < 0 ? 0 : (r ? EV_READ : 0) | (wr ? EV_WRITE : 0);
        if (ev_is_active(w) && w->fd == fd && (w->events & (EV_READ | EV_WRITE)) == events)
            continue;
        ev_io_stop(ctx->loop, w);
        if (events) {
            ev_io_set(w, fd, events);
            ev_io_start(ctx->loop, w);
        }
    }
    ev_timer_stop(ctx->loop, &ctx->bridge_timer);
    after = ews_hub_bridge_timeout(ctx->hub);
    if (after >= 0) {
        ev_timer_set(&ctx->bridge_timer, after, 0.);
        ev_timer_start(ctx->loop, &ctx->bridge_timer);
    }
}

/* Call on_connect or on_error for each report of the bridge.  Any of them
 * may destroy or shut down the context: looked at before each. */
static void bridge_tell(pTHX_ ws_ctx *ctx)
{
    const char *msg;
    size_t len;
    int kind;

    while (ctx->bridged && !ctx->destroyed
           && (kind = ews_hub_bridge_event(ctx->hub, &msg, &len)) != EWS_PUBSUB_NONE) {
        int which = kind == EWS_PUBSUB_CONNECTED ? PUBSUB_ON_CONNECT : PUBSUB_ON_ERROR;
        SV *cb = ctx->bridge_cb[which], *args[2], *died;
        if (!cb)
            continue;
        args[0] = newRV_inc(ctx->self);
        args[1] = which == PUBSUB_ON_ERROR ? newSVpvn(msg, len) : NULL;
        call_caught(aTHX_ cb, args, which == PUBSUB_ON_ERROR ? 2 : 1, 0, &died);
        if (died)
            warn_caught(aTHX_ newSVpvf("EV::Websockets: exception in pubsub %s handler: ",
                                       which == PUBSUB_ON_ERROR ? "on_error" : "on_connect"),
                        died);
    }
}

/* Poll the bridge (readiness `revents` of connection `side`, or -1), then
 * mirror its interest and tell its reports. */
static void bridge_run(pTHX_ ws_ctx *ctx, int side, int revents)
{
    ctx->refs++;
    ews_hub_bridge_poll(ctx->hub, side, !!(revents & EV_READ), !!(revents & EV_WRITE),
                        conn_queued_cb);
    bridge_sync(aTHX_ ctx);
    bridge_tell(aTHX_ ctx);
    ctx_release(ctx);
}

static void bridge_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ws_bridge_io *b = (ws_bridge_io *)w;
    dTHX;
    PERL_UNUSED_ARG(loop);
    bridge_run(aTHX_ b->ctx, b->side, revents);
}

static void bridge_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ws_ctx *ctx = (ws_ctx *)((char *)w - offsetof(ws_ctx, bridge_timer));
    dTHX;
    PERL_UNUSED_ARG(loop);
    PERL_UNUSED_ARG(revents);
    bridge_run(aTHX_ ctx, -1, 0);
}

/* Start the bridge with `settings` (taken over) and the callbacks in cbs
 * (borrowed); its first attempt runs from the loop, so no callback runs
 * inside new. */
static void bridge_start(pTHX_ ws_ctx *ctx, ews_pubsub *settings, SV *const *cbs)
{
    int i;
    for (i = 0; i < PUBSUB_CBS; i++)
        ctx->bridge_cb[i] = cbs[i] ? SvREFCNT_inc_simple_NN(cbs[i]) : NULL;
    for (i = 0; i < 2; i++) {
        ev_io_init(&ctx->bridge_io[i].io, bridge_io_cb, 0, 0);
        ctx->bridge_io[i].ctx = ctx;
        ctx->bridge_io[i].side = i;
    }
    ev_timer_init(&ctx->bridge_timer, bridge_timer_cb, 0., 0.);
    ews_hub_bridge_start(ctx->hub, settings, ctx->waker);
    ctx->bridged = 1;
    /* a lookup of the server's name wakes us through the async watcher */
    if (!ev_is_active(&ctx->async))
        ev_async_start(ctx->loop, &ctx->async);
    bridge_sync(aTHX_ ctx);
}

/* Phase one of the bridge's end (destroy, shutdown): stop its watchers
 * and close its sockets, after a last write of what is queued when this
 * process owns them.  No Perl code runs. */
static void bridge_detach(pTHX_ ws_ctx *ctx, int owner)
{
    int i;
    if (!ctx->bridged)
        return;
    ctx->bridged = 0;
    if (LOOP_USABLE) {
        for (i = 0; i < 2; i++)
            ev_io_stop(ctx->loop, &ctx->bridge_io[i].io);
        ev_timer_stop(ctx->loop, &ctx->bridge_timer);
        if (!ctx->resolving)
            ev_async_stop(ctx->loop, &ctx->async);
    }
    ews_hub_bridge_stop(ctx->hub, owner);
}

/* Phase two: let go of the callbacks (which may run Perl). */
static void bridge_release(pTHX_ ws_ctx *ctx)
{
    int i;
    for (i = 0; i < PUBSUB_CBS; i++) {
        SV *cb = ctx->bridge_cb[i];
        ctx->bridge_cb[i] = NULL;
        SvREFCNT_dec(cb);
    }
}
