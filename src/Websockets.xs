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

#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include "EVAPI.h"
#include "ev_websockets.h"

#include <stddef.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/socket.h>

#define CONN_CLASS "EV::Websockets::Connection"
#define CTX_CLASS  "EV::Websockets::Context"

static int ws_debug;

#define TRACE(...) STMT_START {                                        \
    if (ws_debug) {                                                    \
        PerlIO_printf(PerlIO_stderr(), "[EV::WS] " __VA_ARGS__);       \
        PerlIO_printf(PerlIO_stderr(), "\n");                          \
    }                                                                  \
} STMT_END

/* ---- callbacks --------------------------------------------------------- */

/* Every callback option, once: its id, its option name, and the <what> of
 * "exception in <what>" warnings.  (The core's options are in
 * src/options.rs; conn_deliver says which event calls which callback, and
 * with what arguments.) */
#define CALLBACKS(X)                                                    \
    X(CONNECT,   "on_connect",   "connect handler")                    \
    X(MESSAGE,   "on_message",   "message handler")                    \
    X(CLOSE,     "on_close",     "close handler")                      \
    X(ERROR,     "on_error",     "error handler")                      \
    X(PONG,      "on_pong",      "pong handler")                       \
    X(DRAIN,     "on_drain",     "drain handler")                      \
    X(HANDSHAKE, "on_handshake", "on_handshake")

#define CB_ID(id, name, what) CB_##id,
#define CB_NAME(id, name, what) name,
#define CB_WHAT(id, name, what) what,
enum { CALLBACKS(CB_ID) CB_COUNT };
static const char *const cb_name[CB_COUNT] = { CALLBACKS(CB_NAME) };
static const char *const cb_what[CB_COUNT] = { CALLBACKS(CB_WHAT) };

typedef struct { SV *cb[CB_COUNT]; } callbacks;

static void callbacks_copy(callbacks *dst, const callbacks *src)
{
    int i;
    for (i = 0; i < CB_COUNT; i++)
        dst->cb[i] = src->cb[i] ? SvREFCNT_inc_simple_NN(src->cb[i]) : NULL;
}

static void callbacks_free(pTHX_ callbacks *cbs)
{
    int i;
    for (i = 0; i < CB_COUNT; i++) {
        SV *cb = cbs->cb[i];
        cbs->cb[i] = NULL;
        SvREFCNT_dec(cb);
    }
}

/* Whether $@ holds something, told without running its overloading
 * (SvTRUE would call an exception object's bool, which may die). */
static int errsv_holds(pTHX)
{
    SV *e = ERRSV;
    if (SvROK(e))
        return 1;
    if (!SvOK(e))
        return 0;
    return SvPOK(e) ? SvCUR(e) > 0 : 1;
}

/* call_sv under G_EVAL with the nargs new SVs in args (taken over), so
 * that no die unwinds through the event loop's C frames.  The caller's $@
 * is left as it was (G_EVAL clears or sets it; it is copied only when it
 * holds something).  With want_result, returns a new copy of the scalar
 * result (or NULL after a die).  *died gets the exception, or NULL. */
static SV *call_caught(pTHX_ SV *cb, SV **args, int nargs, int want_result, SV **died)
{
    dSP;
    SV *result = NULL;
    SV *saved_error = errsv_holds(aTHX) ? newSVsv(ERRSV) : NULL;
    int i, count;

    *died = NULL;
    ENTER;
    SAVETMPS;
    SvREFCNT_inc_simple_void_NN(cb);  /* the callback may free its holder */
    SAVEFREESV(cb);

    PUSHMARK(SP);
    EXTEND(SP, nargs);
    for (i = 0; i < nargs; i++)
        PUSHs(sv_2mortal(args[i]));
    PUTBACK;

    count = call_sv(cb, (want_result ? G_SCALAR : G_VOID | G_DISCARD) | G_EVAL);

    SPAGAIN;
    if (errsv_holds(aTHX)) {
        *died = newSVsv(ERRSV);
        if (want_result && count)
            (void)POPs;
    } else if (want_result && count) {
        result = newSVsv(POPs);
    }
    PUTBACK;

    FREETMPS;
    LEAVE;

    if (saved_error) {
        sv_setsv(ERRSV, saved_error);
        SvREFCNT_dec(saved_error);
    } else if (errsv_holds(aTHX)) {
        sv_setpvs(ERRSV, "");
    }
    return result;
}

/* warn(text, detail) from inside the loop.  It goes through Perl
 * (EV::Websockets::_warn) under G_EVAL: a __WARN__ handler that dies, or a
 * detail whose stringification dies, is dropped, as EV drops a die in one
 * of its callbacks, instead of unwinding through the loop.  Takes over
 * both SVs. */
static void warn_caught(pTHX_ SV *text, SV *detail)
{
    SV *args[2], *died;
    CV *cv = get_cv("EV::Websockets::_warn", 0);
    args[0] = text;
    args[1] = detail;
    if (!cv) {   /* the module's Perl half is not loaded */
        SvREFCNT_dec(text);
        SvREFCNT_dec(detail);
        return;
    }
    call_caught(aTHX_ (SV *)cv, args, 2, 0, &died);
    SvREFCNT_dec(died);
}

/* Call a user callback: call_caught, with a die warned as
 * "EV::Websockets: exception in <what>: <the exception>". */
static SV *invoke(pTHX_ SV *cb, int which, SV **args, int nargs, int want_result)
{
    SV *died;
    SV *result = call_caught(aTHX_ cb, args, nargs, want_result, &died);
    if (died)
        warn_caught(aTHX_ newSVpvf("EV::Websockets: exception in %s: ", cb_what[which]), died);
    return result;
}

/* ---- structures -------------------------------------------------------- */

typedef struct ws_ctx ws_ctx;
typedef struct ws_conn ws_conn;
typedef struct ws_listener ws_listener;

struct ws_conn {
    ev_io io;                 /* first: the watcher callbacks cast back */
    ev_timer timer;
    ews_conn *rs;             /* Rust side; NULL once the socket is gone */
    ws_ctx *ctx;              /* NULL once detached from its context */
    SV *self;                 /* the blessed referent */
    int self_held;            /* we own a reference to self */
    int destroyed;            /* DESTROY ran after the socket was gone */
    callbacks cbs;
    HV *stash;
    SV *adopted_io;           /* adopt's Perl handle, kept while we serve */
    dev_t adopted_dev;        /* ... and the socket it held then */
    ino_t adopted_ino;
    ws_conn *prev, *next;     /* ctx->conns */
    ws_conn *next_dirty;      /* ctx->dirty */
    int dirty;
    int io_events;
    int resolving;
    uint32_t socket_gen, deadline_gen;
};

struct ws_listener {
    ev_io io;
    ev_timer retry;           /* accept paused after an error (EMFILE) */
    ews_listener *rs;
    ws_ctx *ctx;
    callbacks cbs;
    ws_listener *next;
};

struct ws_ctx {
    struct ev_loop *loop;
    SV *loop_sv;              /* keeps a non-default loop alive */
    ev_prepare prepare;       /* flush + deliver before the loop blocks */
    ev_async async;           /* resolver threads wake us */
    ews_waker *waker;
    ews_client *client;       /* TLS and proxies of its clients */
    ws_conn *conns;
    ws_conn *dirty;
    ws_listener *listeners;
    ev_idle idle;             /* keeps the loop from blocking: work left */
    int resolving;            /* connections waiting for DNS */
    int refs;
    int destroyed;
    pid_t pid;                /* the process that owns the sockets */
};

/* During global destruction EV's loops may already be gone: touch no
 * watcher then, only free memory. */
#define LOOP_USABLE (PL_phase != PERL_PHASE_DESTRUCT)

static void ctx_release(ws_ctx *ctx)
{
    if (--ctx->refs == 0)
        Safefree(ctx);
}

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
     * which took the list before flushing) */
    if (!ctx->dirty && !ctx->destroyed && LOOP_USABLE)
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
    } else if (!ctx->resolving && ev_is_active(&ctx->async) && LOOP_USABLE)
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

static void conn_unlink(ws_conn *c)
{
    ws_ctx *ctx = c->ctx;
    if (!ctx)
        return;
    if (c->prev) c->prev->next = c->next; else ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->ctx = NULL;
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
        if (abandon)
            ews_conn_abandon(c->rs);
        ews_conn_free(c->rs);
        c->rs = NULL;
    }
    conn_unlink(c);
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
        SV *cb;
        int which, nargs = 1;

        switch (ev.kind) {
        case EWS_EV_HANDSHAKE:
            conn_handshake(aTHX_ c);
            continue;
        case EWS_EV_CONNECTED:
            which = CB_CONNECT;
            break;
        case EWS_EV_MESSAGE:
            which = CB_MESSAGE;
            break;
        case EWS_EV_PONG:
            which = CB_PONG;
            break;
        case EWS_EV_DRAIN:
            which = CB_DRAIN;
            break;
        case EWS_EV_ERROR:
            which = CB_ERROR;
            TRACE("error: %.*s", (int)ev.len, ev.data);
            break;
        case EWS_EV_CLOSED:
            which = CB_CLOSE;
            TRACE("closed: %d", ev.code);
            break;
        default:
            continue;
        }
        cb = c->cbs.cb[which];
        if (!cb)
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
        conn_sync(aTHX_ conn_new(aTHX_ l->ctx, rs, &l->cbs, &rv));
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
    SV *loop_sv;
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
    }
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
    listeners = ctx->listeners;
    ctx->listeners = NULL;
    for (l = listeners; l; l = l->next)
        listener_detach(aTHX_ l);
    ctx->resolving = 0;
    loop_sv = ctx->loop_sv;
    ctx->loop_sv = NULL;

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

/* ---- options ----------------------------------------------------------- */

/* One call's options.  Callbacks, and the options that are Perl objects
 * (loop, fh), stay here; every other option belongs to the core's table
 * (src/options.rs), which says its shape and checks its value. */
typedef struct {
    ews_options *core;
    callbacks cbs;            /* borrowed from the mortal option values */
    SV *object;               /* `loop` (new) or `fh` (adopt): NULL if absent */
} call_opts;

static void options_free(pTHX_ void *core)
{
    ews_options_free((ews_options *)core);
}

/* A name, or an array ref of names, as a list for the core; the list and
 * copies of the names live until the end of the XS call. */
static ews_header *name_array(pTHX_ SV *value, const char *option, size_t *count)
{
    AV *av = SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVAV ? (AV *)SvRV(value) : NULL;
    SSize_t i, n = av ? av_top_index(av) + 1 : 1;
    ews_header *list;

    if (!av && SvROK(value))
        croak("%s must be a name or an array reference of names", option);
    Newxz(list, n ? n : 1, ews_header);
    SAVEFREEPV(list);
    for (i = 0; i < n; i++) {
        SV **elem = av ? av_fetch(av, i, 0) : &value;
        /* a copy: another element's magic cannot free its string */
        SV *name = elem ? sv_mortalcopy(*elem) : NULL;
        STRLEN len;
        if (!name || !SvOK(name) || (SvROK(name) && !SvAMAGIC(name)))
            croak("%s must be a name or an array reference of names", option);
        list[i].name = SvPV(name, len);
        list[i].name_len = len;
    }
    *count = n;
    return list;
}

/* Convert one option's value by the shape the core asks for, and set it. */
static void opt_set(pTHX_ ews_options *core, int index, int shape, const char *key, SV *value)
{
    ews_value v = { 0 };
    ews_error err;

    if (!SvOK(value)) {
        v.undef = 1;
    } else {
        switch (shape) {
        case EWS_SHAPE_NUMBER:
            /* a string that does not look like a number is not one */
            v.is_number = !(SvPOK(value) && !SvROK(value) && !looks_like_number(value));
            v.number = v.is_number ? SvNV(value) : 0;
            break;
        case EWS_SHAPE_TEXT: {
            STRLEN len;
            v.text = SvPV(value, len);
            v.len = len;
            break;
        }
        case EWS_SHAPE_BOOL:
            v.truth = SvTRUE(value);
            break;
        case EWS_SHAPE_NAMES:
            v.items = name_array(aTHX_ value, key, &v.n_items);
            break;
        case EWS_SHAPE_HEADERS:
            if (!(SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVHV))
                croak("%s must be a hash reference", key);
            v.items = header_array(aTHX_ value, &v.n_items);
            break;
        }
    }
    if (ews_options_set(core, index, &v, &err))
        croak("%s", err.msg);
}

/* key => value pairs of a call (an EWS_CALL_*) into *out.  `object`
 * names the call's Perl object option, if it has one; callbacks are
 * taken by every call but new.  Later duplicates win; unknown keys warn.
 * Every value is converted here, once, and converting may run Perl
 * (overloading, ties): callers look at the context only afterwards. */
static void parse_opts(pTHX_ SV **args, I32 n, int call, const char *object, call_opts *out)
{
    SV **own;
    I32 i;

    Zero(out, 1, call_opts);
    out->core = ews_options_new(call);
    SAVEDESTRUCTOR_X(options_free, out->core);
    if (n % 2)
        croak("odd number of options: key '%" SVf "' has no value", SVfARG(args[n - 1]));
    if (!n)
        return;
    /* Own every argument before any Perl code runs (a key's overloading,
     * a value's tie): that code may grow the stack under args, or free
     * the other arguments. */
    Newx(own, n, SV *);
    SAVEFREEPV(own);
    for (i = 0; i < n; i++)
        own[i] = sv_2mortal(SvREFCNT_inc_simple_NN(args[i]));
    for (i = 0; i < n; i += 2) {
        STRLEN key_len;
        const char *key = SvPV(own[i], key_len);
        SV *value = sv_mortalcopy(own[i + 1]);   /* runs get magic once */
        int j, shape, index;

        for (j = 0; call != EWS_CALL_NEW && j < CB_COUNT; j++)
            if (strEQ(key, cb_name[j]))
                break;
        if (call != EWS_CALL_NEW && j < CB_COUNT) {
            if (SvOK(value) && !(SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVCV))
                croak("%s must be a code reference", key);
            out->cbs.cb[j] = SvOK(value) ? SvRV(value) : NULL;
        } else if (object && strEQ(key, object)) {
            out->object = SvOK(value) ? value : NULL;
        } else if ((index = ews_options_find(out->core, key, key_len, &shape)) >= 0) {
            opt_set(aTHX_ out->core, index, shape, key, value);
        } else {
            warn("EV::Websockets: unknown option '%s'", key);
        }
    }
}

/* The checks that look at several options: croaks if one fails. */
static void opts_check(pTHX_ const call_opts *opts)
{
    ews_error err;
    if (ews_options_check(opts->core, &err))
        croak("%s", err.msg);
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

/* Queue a frame.  The data is read before the connection is looked at:
 * its magic may run Perl that closes or frees the connection. */
static void conn_send(pTHX_ SV *self, int kind, int binary, int fin, SV *data)
{
    ews_error err;
    STRLEN len;
    const char *p = string_arg(aTHX_ data, &len);
    ws_conn *c = conn_from_sv(aTHX_ self);
    if (ews_conn_send(conn_open(aTHX_ c), kind, binary, fin, p, len, &err))
        croak("%s", err.msg);
    conn_mark_dirty(aTHX_ c);
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
    ws_ctx *ctx;
    SV *obj;
CODE:
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_NEW, "loop", &opts);
    opts_check(aTHX_ &opts);
    if (opts.object) {
        if (!(SvROK(opts.object) && sv_derived_from(opts.object, "EV::Loop")))
            croak("loop must be an EV::Loop object");
        loop = INT2PTR(struct ev_loop *, SvIVX(SvRV(opts.object)));
    }
    client = ews_client_new(opts.core, &err);
    if (!client)
        croak("Failed to create context: %s", err.msg);
    Newxz(ctx, 1, ws_ctx);
    ctx->refs = 1;
    ctx->client = client;
    ctx->loop = loop ? loop : EV_DEFAULT;
    if (loop)
        ctx->loop_sv = SvREFCNT_inc_simple_NN(SvRV(opts.object));
    ev_prepare_init(&ctx->prepare, ctx_prepare_cb);
    ev_idle_init(&ctx->idle, ctx_idle_cb);
    ev_async_init(&ctx->async, ctx_async_cb);
    ctx->pid = getpid();
    ctx->waker = ews_waker_new(ctx_wake, ctx);
    obj = newSV_type(SVt_PVMG);
    sv_magicext(obj, NULL, PERL_MAGIC_ext, &ctx_vtbl, (const char *)ctx, 0);
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
    ctx_alive(aTHX_ ctx);
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_CONNECT, NULL, &opts);
    opts_check(aTHX_ &opts);
    ctx_alive(aTHX_ ctx);   /* converting the options may have destroyed it */
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
    ctx_alive(aTHX_ ctx);
    parse_opts(aTHX_ &ST(1), items - 1, EWS_CALL_LISTEN, NULL, &opts);
    opts_check(aTHX_ &opts);
    ctx_alive(aTHX_ ctx);
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
    int fd, dup_fd, flag;
    socklen_t flag_len = sizeof flag;
    struct stat st;
CODE:
    ctx_pin(aTHX_ ctx);
    ctx_alive(aTHX_ ctx);
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
    ctx_alive(aTHX_ ctx);
    /* The connection owns a duplicate; the Perl handle keeps its own fd
     * (held below until the connection is done), so neither is closed
     * twice. */
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        croak("adopt: cannot duplicate the file handle: %s", Strerror(errno));
    rs = ews_adopt(dup_fd, opts.core, &err);
    if (!rs)
        croak("%s", err.msg);
    c = conn_new(aTHX_ ctx, rs, &opts.cbs, &RETVAL);
    c->adopted_io = SvREFCNT_inc_simple_NN((SV *)io);
    c->adopted_dev = st.st_dev;
    c->adopted_ino = st.st_ino;
    TRACE("adopted fd %d", fd);
    /* A complete request in initial_data: on_connect may fire right here. */
    conn_settle(aTHX_ c, 0);
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

void
send(SV *self, SV *data)
ALIAS:
    send_binary = EWS_BINARY
CODE:
    conn_send(aTHX_ self, ix, 0, 1, data);

void
send_ping(SV *self, SV *data = NULL)
ALIAS:
    send_pong = 1
CODE:
    conn_send(aTHX_ self, ix ? EWS_PONG : EWS_PING, 0, 1, data);

void
send_fragment(SV *self, SV *data, int is_binary = 0, int is_final = 1)
CODE:
    conn_send(aTHX_ self, EWS_FRAGMENT, is_binary, is_final, data);

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
    if (!c->rs || c->destroyed) {
        if (ews_close_args_error(code, p, len, &err))
            croak("%s", err.msg);
        XSRETURN_EMPTY;
    }
    if (ews_conn_close(c->rs, code, p, len, &err))
        croak("%s", err.msg);
    conn_mark_dirty(aTHX_ c);

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
