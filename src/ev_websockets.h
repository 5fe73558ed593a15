/* The C ABI between the XS glue (Websockets.xs) and the Rust core (ffi.rs).
 *
 * Rust objects are opaque pointers owned by the caller until the matching
 * *_free.  Strings are (pointer, length) pairs and are never NUL-terminated
 * unless said so.  Data a call hands out (event payloads, headers) stays
 * valid only until the next call on the same object: copy it first.
 * Functions that can fail fill an ews_error with a message to croak with.
 */
#ifndef EV_WEBSOCKETS_H
#define EV_WEBSOCKETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ews_conn ews_conn;         /* a connection (Rust Connection)  */
typedef struct ews_listener ews_listener; /* a listening socket              */
typedef struct ews_waker ews_waker;       /* wakes the loop from a thread    */
typedef struct ews_tls ews_tls;           /* a context's TLS client settings */
typedef struct ews_proxies ews_proxies;   /* a context's proxy settings      */

#define EWS_ERROR_MAX 512
typedef struct { char msg[EWS_ERROR_MAX]; } ews_error;

typedef struct {
    const char *name;  size_t name_len;
    const char *value; size_t value_len;
} ews_header;

/* per-connection settings of both sides; seconds <= 0 mean "not set" */
typedef struct {
    uint64_t max_message;                       /* 0: unlimited; UINT64_MAX:
                                                   not given (server 16 MiB,
                                                   client unlimited)        */
    double close_timeout;                       /* default 5 s              */
    double ping_interval;                       /* not set: no keepalive    */
    double ping_timeout;                        /* not set: ping_interval   */
} ews_session_opts;

typedef struct {
    const char *url; size_t url_len;
    const char *protocol; size_t protocol_len;  /* protocol NULL: none      */
    const ews_header *headers; size_t n_headers;
    double connect_timeout;                     /* default 30 s             */
    int ssl_verify;                             /* 0: accept any server     */
    int compression;                            /* offer permessage-deflate */
    ews_session_opts session;
} ews_connect_opts;

/* server side of listen and adopt */
typedef struct {
    const ews_header *protocols; size_t n_protocols;  /* names in name/len  */
    const ews_header *headers; size_t n_headers;      /* added to every 101 */
    double handshake_timeout;                   /* default 10 s             */
    uint64_t max_header_size;                   /* request head; 0: 16 KiB  */
    int compression;                            /* accept permessage-deflate */
    int context_takeover;                       /* keep deflate context     */
    ews_session_opts session;
} ews_server_opts;

typedef struct {
    const char *host; size_t host_len;          /* NULL: all, dual-stack    */
    uint16_t port;
    int reuse_port;
    /* TLS: PEM file names, NUL-terminated; NULL: not given */
    const char *ssl_cert, *ssl_key, *ssl_ca;
    ews_server_opts server;
} ews_listen_opts;

/* What the connection needs from the loop (see Connection::interest). */
typedef struct {
    int fd;                 /* -1: no socket */
    uint32_t socket_gen;
    uint32_t deadline_gen;
    uint8_t read, write, prepare, resolving, finished;
} ews_interest;

enum ews_event_kind {
    EWS_EV_NONE = 0,
    EWS_EV_HANDSHAKE,   /* server: decide with accept/reject_upgrade      */
    EWS_EV_CONNECTED,   /* headers via ews_conn_header                    */
    EWS_EV_MESSAGE,     /* data, binary                                   */
    EWS_EV_PONG,        /* data                                           */
    EWS_EV_DRAIN,
    EWS_EV_ERROR,       /* data: the message text                         */
    EWS_EV_CLOSED       /* code; data only when has_reason                */
};

typedef struct {
    int kind;
    int binary;
    int code;
    int has_reason;
    const char *data; size_t len;
} ews_event;

enum ews_state { EWS_CONNECTING, EWS_CONNECTED, EWS_CLOSING, EWS_CLOSED };

enum ews_send_kind { EWS_TEXT, EWS_BINARY, EWS_PING, EWS_PONG, EWS_FRAGMENT };

/* waker: wake(data) is called from a resolver thread */
ews_waker *ews_waker_new(void (*wake)(void *), void *data);
int  ews_selftest_panic(ews_error *err);  /* -1: a panic was caught, err says */
void ews_waker_free(ews_waker *w);   /* disables it first: no call after */

/* TLS settings of a context (file names NUL-terminated, NULL: not given) */
ews_tls *ews_tls_new(const char *cert, const char *key, const char *ca, ews_error *err);
void ews_tls_free(ews_tls *t);

/* proxies of a context: from the environment (host NULL, use_env 1), none
 * (host NULL, use_env 0), or an HTTP CONNECT proxy at host:port */
ews_proxies *ews_proxies_new(const char *host, size_t host_len, uint16_t port, int use_env);
void ews_proxies_free(ews_proxies *p);

/* client */
ews_conn *ews_connect(const ews_connect_opts *opts, const ews_waker *w,
                      const ews_tls *tls, const ews_proxies *proxies, ews_error *err);

/* loop entry points */
void ews_conn_on_io(ews_conn *c, int readable, int writable);
void ews_conn_on_timer(ews_conn *c);
int  ews_conn_on_lookup(ews_conn *c);   /* 1 when the lookup answered */
int  ews_conn_flush(ews_conn *c);        /* 1 when events wait */
void ews_conn_set_drain_wanted(ews_conn *c, int wanted);
int  ews_conn_next_event(ews_conn *c, ews_event *ev);
int  ews_conn_header(const ews_conn *c, size_t i, ews_header *out);
void ews_conn_interest(const ews_conn *c, ews_interest *out);
double ews_conn_deadline_in(const ews_conn *c);   /* < 0: no deadline */

/* user actions */
int  ews_conn_send(ews_conn *c, int kind, int binary, int fin,
                   const char *data, size_t len, ews_error *err);
int  ews_conn_close(ews_conn *c, double code, const char *reason, size_t len,
                    ews_error *err);
/* check close() arguments without a connection; -1: invalid */
int  ews_close_args_error(double code, const char *reason, size_t len, ews_error *err);
void ews_conn_set_paused(ews_conn *c, int paused);
/* -1 (err set, err may be NULL): a header in extra may not be sent; the
 * client was answered 500 instead */
int  ews_conn_accept_upgrade(ews_conn *c, const ews_header *extra, size_t n,
                             ews_error *err);
void ews_conn_reject_upgrade(ews_conn *c);
void ews_conn_abandon(ews_conn *c);
void ews_conn_free(ews_conn *c);

/* accessors */
int    ews_conn_state(const ews_conn *c);
size_t ews_conn_queued(const ews_conn *c);
size_t ews_conn_peer_address(const ews_conn *c, char *buf, size_t len); /* 0: none */
int    ews_conn_protocol(const ews_conn *c, const char **p, size_t *len);

/* server */
ews_listener *ews_listen(const ews_listen_opts *opts, ews_error *err);
/* fd: a connected socket handed over (closed when the connection is freed) */
ews_conn *ews_adopt(int fd, const char *data, size_t len,
                    const ews_server_opts *opts, ews_error *err);
int      ews_listener_fd(const ews_listener *l);
uint16_t ews_listener_port(const ews_listener *l);
ews_conn *ews_listener_accept(ews_listener *l, ews_error *err); /* NULL: none or error (err set) */
void     ews_listener_free(ews_listener *l);

#endif
