/* A connection's C side: its watchers mirror what the core wants, its
 * life ends in two phases (detach, then release), and its events are
 * delivered to the callbacks. */

/* ---- watcher mirroring ------------------------------------------------- */

/* The one test of whether c may start a watcher (its own or the
 * context's prepare and async): it has a socket, and its context is alive
 * and has a loop.  After a context's destruction began, nothing restarts
 * a watcher, whatever Perl code (a DESTROY) calls. */
static int conn_may_arm(pTHX_ const ws_conn *c)
{
    return c->rs && c->ctx && !c->ctx->destroyed && LOOP_USABLE;
}

static void conn_mark_dirty(pTHX_ ws_conn *c)
{
    ws_ctx *ctx = c->ctx;
    if (c->dirty || !conn_may_arm(aTHX_ c))
        return;
    c->dirty = 1;
    c->next_dirty = ctx->dirty;
    ctx->dirty = c;
    if (!ev_is_active(&ctx->prepare))
        ev_prepare_start(ctx->loop, &ctx->prepare);
}

/* The bridge to Redis has output to write (a publish, a SUBSCRIBE): the
 * prepare watcher writes it before the loop blocks. */
static void ctx_bridge_kick(pTHX_ ws_ctx *ctx)
{
    if (ctx && ctx->bridged && !ctx->destroyed && LOOP_USABLE
        && !ev_is_active(&ctx->prepare))
        ev_prepare_start(ctx->loop, &ctx->prepare);
}

static void conn_unmark_dirty(pTHX_ ws_conn *c)
{
    ws_ctx *ctx = c->ctx;
    ws_conn **p;
    if (!c->dirty || !ctx)
        return;
    for (p = &ctx->dirty; *p; p = &(*p)->next_dirty)
        if (*p == c) {
            *p = c->next_dirty;
            break;
        }
    c->dirty = 0;
    c->next_dirty = NULL;
    /* nothing left for the prepare watcher (a no-op inside its callback,
     * which took the list before flushing); the bridge to Redis may still
     * have output for it */
    if (!ctx->dirty && !ctx->bridged && !ctx->destroyed && LOOP_USABLE)
        ev_prepare_stop(ctx->loop, &ctx->prepare);
}

static void conn_set_resolving(pTHX_ ws_conn *c, int resolving)
{
    ws_ctx *ctx = c->ctx;
    if (c->resolving == resolving || !ctx || (resolving && !conn_may_arm(aTHX_ c)))
        return;
    c->resolving = resolving;
    ctx->resolving += resolving ? 1 : -1;
    if (ctx->resolving && !ev_is_active(&ctx->async)) {
        ev_async_start(ctx->loop, &ctx->async);
        /* an answer may have come before the watcher was started */
        ev_async_send(ctx->loop, &ctx->async);
    } else if (!ctx->resolving && !ctx->bridged && ev_is_active(&ctx->async) && LOOP_USABLE)
        ev_async_stop(ctx->loop, &ctx->async);
}

static void conn_stop_watchers(pTHX_ ws_conn *c)
{
    if (c->ctx && LOOP_USABLE) {
        ev_io_stop(c->ctx->loop, &c->io);
        ev_timer_stop(c->ctx->loop, &c->timer);
    }
    c->io_events = 0;
    conn_unmark_dirty(aTHX_ c);
    conn_set_resolving(aTHX_ c, 0);
}

/* Leave the context.  The last connection of a context that is shutting
 * down makes its shutdown timer fire at once: cb runs from the loop, never
 * here (no Perl code runs while a connection detaches). */
static void conn_unlink(pTHX_ ws_conn *c)
{
    ws_ctx *ctx = c->ctx;
    if (!ctx)
        return;
    if (c->prev) c->prev->next = c->next; else ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->ctx = NULL;
    if (!ctx->conns && ctx->shut == SHUT_PENDING && !ctx->destroyed && LOOP_USABLE) {
        ev_timer_stop(ctx->loop, &ctx->shutdown);
        ev_timer_set(&ctx->shutdown, 0., 0.);
        ev_timer_start(ctx->loop, &ctx->shutdown);
    }
}

/* Whether an adopted handle's descriptor is still the socket it was.  Some
 * servers (Feersum 1.41 with psgix.io) close that descriptor themselves
 * once the request is done; its number may then belong to another socket,
 * which the handle would close when freed. */
static int adopted_fd_intact(pTHX_ ws_conn *c, IO *io)
{
    struct stat st;
    int fd = IoIFP(io) ? PerlIO_fileno(IoIFP(io)) : -1;
    if (fd < 0)
        return 1;   /* Perl closed it already: nothing left to close */
    return fstat(fd, &st) == 0 && st.st_dev == c->adopted_dev && st.st_ino == c->adopted_ino;
}

/* Take the bytes the handle's PerlIO layers read from the socket and
 * nobody consumed: a buffered read leaves the rest of what it read there,
 * and Feersum pushes back (PerlIO_unread) what it read past the request
 * head when it hands out psgix.io or $req->io.  The connection reads the
 * socket itself, so these would be lost.  Appended to `into`, layer by
 * layer from the top (a pushed-back "pending" layer holds the earliest
 * bytes).  Runs no Perl code. */
static void handle_take_buffered(pTHX_ PerlIO *fp, SV *into)
{
    while (PerlIO_has_cntptr(fp)) {
        SSize_t cnt = PerlIO_get_cnt(fp);
        STDCHAR *ptr = cnt > 0 ? PerlIO_get_ptr(fp) : NULL;
        if (!ptr)
            return;
        sv_catpvn(into, (const char *)ptr, cnt);
        PerlIO_set_ptrcnt(fp, ptr + cnt, 0);
        if (PerlIO_get_ptr(fp) == ptr && PerlIO_get_cnt(fp) == cnt)
            return;   /* a layer that would not let go: stop, not spin */
    }
}

/* Give back what handle_take_buffered took (adopt failed after all). */
static void handle_return_buffered(pTHX_ PerlIO *fp, SV *taken)
{
    if (SvCUR(taken))
        PerlIO_unread(fp, SvPVX(taken), SvCUR(taken));
}

/* Let go of adopt's Perl handle.  One whose descriptor was closed behind
 * Perl's back is kept (a small, bounded leak) rather than freed, since
 * freeing it would close a descriptor that is not its own. */
static void conn_release_io(pTHX_ ws_conn *c)
{
    IO *io = (IO *)c->adopted_io;
    c->adopted_io = NULL;
    if (!io)
        return;
    if (!adopted_fd_intact(aTHX_ c, io)) {
        TRACE("adopted handle's descriptor was closed elsewhere: keeping the handle");
        return;
    }
    SvREFCNT_dec((SV *)io);
}

/* Ending a connection takes two phases, so that no Perl code ever runs
 * against a half-freed connection or context:
 *
 * conn_detach: stop its watchers, free the Rust side (closing the socket)
 * and leave the context.  Runs no Perl code.
 *
 * conn_release: let go of the Perl values it holds (callbacks, adopt's
 * handle, the hold on its own object).  Freeing them may run Perl
 * (DESTROY of a closure's captures or of a stashed object), which then
 * finds a connection with no socket: methods croak or do nothing, and
 * none can start a watcher (conn_may_arm).  May free c.
 *
 * Every way a connection ends goes through these two: its socket closing
 * (conn_end), its object being freed (conn_magic_free) and its context
 * being destroyed (ctx_destroy). */
static void conn_detach(pTHX_ ws_conn *c, int abandon)
{
    conn_stop_watchers(aTHX_ c);
    if (c->rs) {
        /* out of its topics before it is freed: the hub holds c->rs */
        if (c->ctx && c->ctx->hub) {
            ews_hub_remove(c->ctx->hub, c->rs);
            ctx_bridge_kick(aTHX_ c->ctx);   /* an UNSUBSCRIBE, maybe */
        }
        if (abandon)
            ews_conn_abandon(c->rs);
        c->dropped = (UV)ews_conn_dropped(c->rs);
        ews_conn_free(c->rs);
        c->rs = NULL;
    }
    conn_unlink(aTHX_ c);
}

static void conn_release(pTHX_ ws_conn *c)
{
    callbacks_free(aTHX_ &c->cbs);
    conn_release_io(aTHX_ c);
    if (c->self_held) {
        c->self_held = 0;
        SvREFCNT_dec(c->self);
    }
}

/* How a connection dropped by the binding (not by the core) learns it:
 * see conn_tell_end. */
enum { END_QUIET, END_CLOSE, END_ERROR };

/* What a connection that was open or closing (END_CLOSE: on_close 1006, no
 * reason, as for a lost connection) or a client still connecting
 * (END_ERROR: on_error with text) hears after it was detached.  c->self
 * must be pinned by the caller. */
static void conn_tell_end(pTHX_ ws_conn *c, int end, const char *text)
{
    SV *args[3], *cb;
    if (end == END_CLOSE && (cb = c->cbs.cb[CB_CLOSE])) {
        args[0] = newRV_inc(c->self);
        args[1] = newSViv(1006);
        args[2] = newSV(0);
        invoke(aTHX_ cb, CB_CLOSE, args, 3, 0);
    } else if (end == END_ERROR && (cb = c->cbs.cb[CB_ERROR])) {
        args[0] = newRV_inc(c->self);
        args[1] = newSVpv(text, 0);
        invoke(aTHX_ cb, CB_ERROR, args, 2, 0);
    }
}

/* The socket is gone.  Callers must not touch c afterwards unless they
 * pinned c->self. */
static void conn_end(pTHX_ ws_conn *c)
{
    TRACE("connection %p torn down", (void *)c);
    conn_detach(aTHX_ c, 0);
    conn_release(aTHX_ c);
}

/* Mirror what the Rust side wants into the watchers. */
static void conn_sync(pTHX_ ws_conn *c)
{
    ews_interest in;
    struct ev_loop *loop;
    int events;

    if (!conn_may_arm(aTHX_ c))
        return;
    ews_conn_interest(c->rs, &in);
    if (in.finished) {
        if (in.prepare) {
            /* events are still queued (e.g. a method was called inside a
             * callback): deliver them on the next prepare, then tear down */
            ev_io_stop(c->ctx->loop, &c->io);
            ev_timer_stop(c->ctx->loop, &c->timer);
            c->io_events = 0;
            conn_mark_dirty(aTHX_ c);
            return;
        }
        conn_end(aTHX_ c);
        return;
    }
    loop = c->ctx->loop;
    events = in.fd < 0 ? 0 : (in.read ? EV_READ : 0) | (in.write ? EV_WRITE : 0);
    if (events != c->io_events || in.socket_gen != c->socket_gen) {
        ev_io_stop(loop, &c->io);
        if (events) {
            ev_io_set(&c->io, in.fd, events);
            ev_io_start(loop, &c->io);
        }
        c->io_events = events;
        c->socket_gen = in.socket_gen;
    }
    if (in.deadline_gen != c->deadline_gen) {
        double after = ews_conn_deadline_in(c->rs);
        c->deadline_gen = in.deadline_gen;
        ev_timer_stop(loop, &c->timer);
        if (after >= 0) {
            ev_timer_set(&c->timer, after, 0.);
            ev_timer_start(loop, &c->timer);
        }
    }
    conn_set_resolving(aTHX_ c, in.resolving);
    if (in.prepare)
        conn_mark_dirty(aTHX_ c);
}

/* ---- connection objects ------------------------------------------------ */

static int conn_magic_free(pTHX_ SV *sv, MAGIC *mg);

static MGVTBL conn_vtbl = { NULL, NULL, NULL, NULL, conn_magic_free, NULL, NULL, NULL };

static int conn_magic_free(pTHX_ SV *sv, MAGIC *mg)
{
    ws_conn *c = (ws_conn *)mg->mg_ptr;
    HV *stash;
    PERL_UNUSED_ARG(sv);
    if (!c)
        return 0;
    mg->mg_ptr = NULL;
    c->self_held = 0;        /* the object is going regardless */
    conn_detach(aTHX_ c, 0);
    conn_release(aTHX_ c);
    stash = c->stash;
    c->stash = NULL;
    SvREFCNT_dec((SV *)stash);
    Safefree(c);
    return 0;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* A new connection and its object; *rv gets a new reference to the
 * object.  The connection holds another while its socket lives. */
static ws_conn *conn_new(pTHX_ ws_ctx *ctx, ews_conn *rs, const callbacks *cbs, SV **rv)
{
    ws_conn *c;
    SV *obj;

    Newxz(c, 1, ws_conn);
    ev_init(&c->io, conn_io_cb);
    ev_init(&c->timer, conn_timer_cb);
    c->rs = rs;
    c->ctx = ctx;
    callbacks_copy(&c->cbs, cbs);
    ews_conn_set_drain_wanted(rs, cbs->cb[CB_DRAIN] != NULL);
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;

    obj = newSV_type(SVt_PVMG);
    sv_magicext(obj, NULL, PERL_MAGIC_ext, &conn_vtbl, (const char *)c, 0);
    /* looked up per call, not cached: a static would hold one
     * interpreter's stash and bless into it from another thread */
    *rv = sv_bless(newRV_noinc(obj), gv_stashpvs(CONN_CLASS, GV_ADD));
    c->self = obj;
    c->self_held = 1;
    SvREFCNT_inc_simple_void_NN(obj);
    return c;
}

static ws_conn *conn_from_sv(pTHX_ SV *sv)
{
    MAGIC *mg;
    if (SvROK(sv) && SvOBJECT(SvRV(sv))
        && (mg = mg_findext(SvRV(sv), PERL_MAGIC_ext, &conn_vtbl)) && mg->mg_ptr)
        return (ws_conn *)mg->mg_ptr;
    croak("self is not of type " CONN_CLASS);
}

/* A live connection for send-like methods, or the documented croak. */
static ews_conn *conn_open(pTHX_ ws_conn *c)
{
    if (c->destroyed)
        croak("Connection has been destroyed");
    if (!c->rs)
        croak("Connection is not open");
    return c->rs;
}

static SV *headers_hv(pTHX_ ews_conn *rs)
{
    HV *hv = newHV();
    ews_header h;
    size_t i;
    for (i = 0; ews_conn_header(rs, i, &h); i++)
        (void)hv_store(hv, h.name, (I32)h.name_len, newSVpvn(h.value, h.value_len), 0);
    return newRV_noinc((SV *)hv);
}

/* A hash ref of headers -> an array for Rust.  The strings are copied
 * into mortals first (a tied hash yields temporaries), so they stay valid
 * until the end of the XS call, as does the array. */
static ews_header *header_array(pTHX_ SV *hash_ref, size_t *count)
{
    HV *hv;
    HE *he;
    ews_header *list = NULL;
    size_t n = 0, size = 0;

    *count = 0;
    if (!hash_ref)
        return NULL;
    hv = (HV *)SvRV(hash_ref);
    hv_iterinit(hv);
    while ((he = hv_iternext(hv))) {
        SV *name = sv_mortalcopy(hv_iterkeysv(he));
        SV *value = sv_mortalcopy(hv_iterval(hv, he));
        STRLEN len;
        if (n == size) {
            size = size ? 2 * size : 8;
            Renew(list, size, ews_header);
        }
        list[n].name = SvPV(name, len);
        list[n].name_len = len;
        list[n].value = SvPV(value, len);
        list[n].value_len = len;
        n++;
    }
    if (list)
        SAVEFREEPV(list);
    *count = n;
    return list;
}

/* on_handshake's verdict: accept (adding a returned hash's pairs) or
 * reject with 403; a pair that may not be sent rejects with 500 and warns. */
static void conn_handshake(pTHX_ ws_conn *c)
{
    SV *cb = c->cbs.cb[CB_HANDSHAKE];
    SV *verdict;
    size_t n = 0;
    ews_header *extra = NULL;
    int accepted, refused = 0;
    ews_error err;

    if (!cb) {
        ews_conn_accept_upgrade(c->rs, NULL, 0, NULL);
        return;
    }
    {
        SV *arg = headers_hv(aTHX_ c->rs);
        verdict = invoke(aTHX_ cb, CB_HANDSHAKE, &arg, 1, 1);
    }
    /* Looking at the verdict may run Perl (overloading, ties): do it all
     * before c->rs is trusted again. */
    ENTER;
    SAVETMPS;
    accepted = verdict && SvTRUE(verdict);
    if (accepted && SvROK(verdict) && SvTYPE(SvRV(verdict)) == SVt_PVHV)
        extra = header_array(aTHX_ verdict, &n);
    if (c->rs && accepted) {
        refused = ews_conn_accept_upgrade(c->rs, extra, n, &err) < 0;
    } else if (c->rs) {
        TRACE("handshake rejected");
        ews_conn_reject_upgrade(c->rs);
    }
    FREETMPS;
    LEAVE;
    SvREFCNT_dec(verdict);
    if (refused)
        warn_caught(aTHX_ newSVpvs("EV::Websockets: on_handshake returned an invalid header: "),
                    newSVpv(err.msg, 0));
}

/* Deliver every queued event to the user's callbacks.  c->self must be
 * pinned by the caller. */
static void conn_deliver(pTHX_ ws_conn *c)
{
    ews_event ev;
    SV *args[4];

    while (c->rs && ews_conn_next_event(c->rs, &ev)) {
        int which = (size_t)ev.kind < sizeof cb_of_event ? cb_of_event[ev.kind] - 1 : -1;
        int nargs = 1;
        SV *cb;

        if (ev.kind == EWS_EV_ERROR)
            TRACE("error: %.*s", (int)ev.len, ev.data);
        else if (ev.kind == EWS_EV_CLOSED)
            TRACE("closed: %d", ev.code);
        if (ev.kind == EWS_EV_HANDSHAKE) {
            conn_handshake(aTHX_ c);   /* a verdict, not just a call */
            continue;
        }
        if (which < 0 || !(cb = c->cbs.cb[which]))
            continue;

        /* copy everything before Perl runs: ev points into Rust memory */
        args[0] = newRV_inc(c->self);
        switch (ev.kind) {
        case EWS_EV_CONNECTED:
            /* adopted connections get undef, as the original did */
            args[nargs++] = c->adopted_io ? newSV(0) : headers_hv(aTHX_ c->rs);
            break;
        case EWS_EV_MESSAGE:
            args[nargs++] = newSVpvn(ev.data, ev.len);
            args[nargs++] = newSViv(ev.binary);
            args[nargs++] = newSViv(1);
            break;
        case EWS_EV_PONG:
        case EWS_EV_ERROR:
            args[nargs++] = newSVpvn(ev.data, ev.len);
            break;
        case EWS_EV_CLOSED:
            args[nargs++] = newSViv(ev.code);
            args[nargs++] = ev.has_reason ? newSVpvn(ev.data, ev.len) : newSV(0);
            break;
        }
        invoke(aTHX_ cb, which, args, nargs, 0);
    }
}

/* After Rust acted on c: deliver its events and mirror its interest.
 * With write_replies, what the callbacks queued on c (an echo, a pong)
 * goes out now, in one write, rather than at the prepare watcher: a reply
 * to a read costs one loop stage less.  Pins c->self for the duration; c
 * may be freed when this returns. */
static void conn_settle(pTHX_ ws_conn *c, int write_replies)
{
    SV *self = c->self;
    SvREFCNT_inc_simple_void_NN(self);
    conn_deliver(aTHX_ c);
    if (write_replies && c->dirty && conn_may_arm(aTHX_ c)) {
        conn_unmark_dirty(aTHX_ c);
        if (ews_conn_flush(c->rs))
            conn_deliver(aTHX_ c);
    }
    conn_sync(aTHX_ c);
    SvREFCNT_dec(self);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ws_conn *c = (ws_conn *)w;
    dTHX;
    PERL_UNUSED_ARG(loop);
    if (c->rs)
        ews_conn_on_io(c->rs, revents & EV_READ, revents & EV_WRITE);
    conn_settle(aTHX_ c, 1);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ws_conn *c = (ws_conn *)((char *)w - offsetof(ws_conn, timer));
    dTHX;
    PERL_UNUSED_ARG(loop);
    PERL_UNUSED_ARG(revents);
    if (c->rs)
        ews_conn_on_timer(c->rs);
    conn_settle(aTHX_ c, 0);
}

static int conn_state(ws_conn *c)
{
    return c->rs ? ews_conn_state(c->rs) : EWS_CLOSED;
}

/* A string argument's bytes ("" for undef or absent), get magic run once. */
static const char *string_arg(pTHX_ SV *sv, STRLEN *len)
{
    *len = 0;
    if (!sv)
        return "";
    SvGETMAGIC(sv);
    return SvOK(sv) ? SvPV_nomg(sv, *len) : "";
}

/* publish's call for each connection a message was queued on: mark it
 * for the prepare watcher's flush.  Runs no Perl code. */
static void conn_queued_cb(void *handle)
{
    dTHX;
    conn_mark_dirty(aTHX_ (ws_conn *)handle);
}


/* publish's key => value pairs after the data (binary => 0|1), each
 * converted once; unknown keys warn, later duplicates win. */
static int publish_binary(pTHX_ SV **args, I32 n)
{
    int binary = 0;
    I32 i;
    if (n % 2)
        croak("odd number of options: key '%" SVf "' has no value", SVfARG(args[n - 1]));
    for (i = 0; i < n; i++)
        args[i] = sv_mortalcopy(args[i]);   /* runs get magic once */
    for (i = 0; i < n; i += 2) {
        const char *key = SvPV_nolen(args[i]);
        if (strEQ(key, "binary"))
            binary = SvTRUE(args[i + 1]) ? 1 : 0;
        else
            warn("EV::Websockets: unknown option '%s'", key);
    }
    return binary;
}

/* A topic or message argument's bytes, in a mortal copy (get magic and
 * overloading run once; the bytes stay valid for the XS call whatever
 * Perl code runs while the other arguments are converted). */
static const char *owned_string(pTHX_ SV *sv, STRLEN *len)
{
    SV *own = sv_mortalcopy(sv);
    if (!SvOK(own)) {
        *len = 0;
        return "";
    }
    return SvPV(own, *len);
}

/* Publish on ctx's hub, to all subscribers but except: the count.  The
 * arguments are already converted. */
static IV hub_publish(pTHX_ ws_ctx *ctx, const char *t, STRLEN tlen, ews_conn *except,
                      int binary, const char *p, STRLEN len)
{
    ews_error err;
    intptr_t n = ews_hub_publish(ctx->hub, t, tlen, except, binary, p, len,
                                 conn_queued_cb, &err);
    if (n < 0)
        croak("%s", err.msg);
    ctx_bridge_kick(aTHX_ ctx);
    return (IV)n;
}

/* Queue a frame; returns 1 when queued, 0 when max_backpressure dropped
 * it.  The data is read before the connection is looked at: its magic may
 * run Perl that closes or frees the connection. */
static int conn_send(pTHX_ SV *self, int kind, int binary, int fin, SV *data)
{
    ews_error err;
    STRLEN len;
    const char *p = string_arg(aTHX_ data, &len);
    ws_conn *c = conn_from_sv(aTHX_ self);
    int queued = ews_conn_send(conn_open(aTHX_ c), kind, binary, fin, p, len, &err);
    if (queued < 0)
        croak("%s", err.msg);
    conn_mark_dirty(aTHX_ c);
    return queued;
}
