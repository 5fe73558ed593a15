#ifndef EWS_BINDING_H
#define EWS_BINDING_H

/* What the parts of the Perl binding share: its structures, the list of
 * callbacks, and tracing.  The parts (callbacks.c, connection.c,
 * pubsub.c, context.c, options.c) are included into Websockets.xs, one translation
 * unit: EV's API pointer (GEVAPI in EVAPI.h) is static to it, and the hot
 * path stays inlinable. */

#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include "EVAPI.h"
#include "ev_websockets.h"   /* generated from src/ffi by build.rs */

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

/* Every callback, once: its id, its option name, the <what> of its
 * "exception in <what>" warnings, and the core's event that calls it.
 * (The core's options are in src/options/mod.rs; conn_deliver builds each
 * callback's arguments.) */
#define CALLBACKS(X)                                                        \
    X(CONNECT,   "on_connect",   "connect handler", EWS_EV_CONNECTED)      \
    X(MESSAGE,   "on_message",   "message handler", EWS_EV_MESSAGE)        \
    X(CLOSE,     "on_close",     "close handler",   EWS_EV_CLOSED)         \
    X(ERROR,     "on_error",     "error handler",   EWS_EV_ERROR)          \
    X(PONG,      "on_pong",      "pong handler",    EWS_EV_PONG)           \
    X(DRAIN,     "on_drain",     "drain handler",   EWS_EV_DRAIN)          \
    X(HANDSHAKE, "on_handshake", "on_handshake",    EWS_EV_HANDSHAKE)

#define CB_ID(id, name, what, event) CB_##id,
#define CB_NAME(id, name, what, event) name,
#define CB_WHAT(id, name, what, event) what,
#define CB_OF_EVENT(id, name, what, event) [event] = CB_##id + 1,
enum { CALLBACKS(CB_ID) CB_COUNT };
static const char *const cb_name[CB_COUNT] = { CALLBACKS(CB_NAME) };
static const char *const cb_what[CB_COUNT] = { CALLBACKS(CB_WHAT) };
/* by event kind: the callback's id + 1, or 0 for none */
static const unsigned char cb_of_event[] = { CALLBACKS(CB_OF_EVENT) };

typedef struct { SV *cb[CB_COUNT]; } callbacks;

/* ---- structures -------------------------------------------------------- */

typedef struct ws_ctx ws_ctx;
typedef struct ws_conn ws_conn;
typedef struct ws_listener ws_listener;

struct ws_conn {
    ev_io io;                 /* first: the watcher callbacks cast back */
    ev_timer timer;
    ews_conn *rs;             /* Rust side; NULL once the socket is gone */
    UV dropped;               /* its dropped_messages, kept when rs goes */
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
    int server;               /* accepted or adopted, not connected out */
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

/* One of pubsub's two Redis connections: its watcher, and whose it is. */
typedef struct {
    ev_io io;                 /* first: the watcher callback casts back */
    ws_ctx *ctx;
    int side;                 /* EWS_PUBSUB_SUBSCRIBER or _PUBLISHER */
} ws_bridge_io;

/* pubsub's callbacks (ws_ctx.bridge_cb) */
enum { PUBSUB_ON_CONNECT, PUBSUB_ON_ERROR, PUBSUB_CBS };

/* ws_ctx.shut: where shutdown() is */
enum { SHUT_NONE, SHUT_PENDING, SHUT_DONE };

struct ws_ctx {
    struct ev_loop *loop;
    SV *self;                 /* its object's referent (not a reference) */
    SV *loop_sv;              /* keeps a non-default loop alive */
    ev_prepare prepare;       /* flush + deliver before the loop blocks */
    ev_async async;           /* resolver threads wake us */
    ews_waker *waker;
    ews_client *client;       /* TLS and proxies of its clients */
    ews_hub *hub;             /* its topics; NULL once destroyed */
    ws_conn *conns;
    ws_conn *dirty;
    ws_listener *listeners;
    ev_idle idle;             /* keeps the loop from blocking: work left */
    ev_timer shutdown;        /* shutdown()'s deadline; 0 once all closed */
    SV *shutdown_cb;          /* shutdown()'s cb, until it is called */
    int shut;                 /* a SHUT_* */
    int resolving;            /* connections waiting for DNS */
    int refs;
    int destroyed;
    pid_t pid;                /* the process that owns the sockets */
    int bridged;              /* pubsub's bridge to Redis is running */
    ws_bridge_io bridge_io[2];
    ev_timer bridge_timer;    /* its deadline: retry, connect timeout */
    SV *bridge_cb[PUBSUB_CBS];
};

/* During global destruction EV's loops may already be gone: touch no
 * watcher then, only free memory. */
#define LOOP_USABLE (PL_phase != PERL_PHASE_DESTRUCT)

static void ctx_release(ws_ctx *ctx)
{
    if (--ctx->refs == 0)
        Safefree(ctx);
}

#endif
