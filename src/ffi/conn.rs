//! A connection's entry points: the loop's calls (I/O, timers, lookups,
//! flushing), the events it hands back, the user's actions and the
//! accessors.  Connections are made by `ews_connect` here and by the
//! server entry points.

use std::ffi::{c_char, c_double, c_int};
use std::sync::Arc;

use super::context::{EwsClient, EwsOptions, EwsWaker};
use super::{
    EwsConn, EwsError, EwsHeader, bytes, free, guard, guard_conn, guard_err, header_list, status,
};
use crate::connection::{Connection, Event, SendKind, State};

/// What the connection needs from the loop (see `Connection::interest`).
#[repr(C)]
pub struct EwsInterest {
    /// -1: no socket.
    pub fd: c_int,
    /// Changes when the socket is replaced (redirects, address fallback).
    pub socket_gen: u32,
    /// Changes when the deadline moves.
    pub deadline_gen: u32,
    pub read: u8,
    pub write: u8,
    /// Output is queued: flush before the loop blocks.
    pub prepare: u8,
    /// A name lookup runs on a resolver thread.
    pub resolving: u8,
    /// Nothing more will happen: the binding lets the connection go.
    pub finished: u8,
}

/// One event for the binding to deliver (`ews_conn_next_event`).
#[repr(C)]
pub struct EwsEvent {
    /// An `EWS_EV_*`.
    pub kind: c_int,
    pub binary: c_int,
    pub code: c_int,
    pub has_reason: c_int,
    pub data: *const c_char,
    pub len: usize,
}

pub const EWS_EV_NONE: c_int = 0;
/// Server: decide with `ews_conn_accept_upgrade` or `ews_conn_reject_upgrade`.
pub const EWS_EV_HANDSHAKE: c_int = 1;
/// Headers via `ews_conn_header`.
pub const EWS_EV_CONNECTED: c_int = 2;
/// `data`, `binary`.
pub const EWS_EV_MESSAGE: c_int = 3;
/// `data`.
pub const EWS_EV_PONG: c_int = 4;
pub const EWS_EV_DRAIN: c_int = 5;
/// `data`: the message text.
pub const EWS_EV_ERROR: c_int = 6;
/// `code`; `data` only when `has_reason`.
pub const EWS_EV_CLOSED: c_int = 7;

/// `ews_conn_state`.
pub const EWS_CONNECTING: c_int = 0;
pub const EWS_CONNECTED: c_int = 1;
pub const EWS_CLOSING: c_int = 2;
pub const EWS_CLOSED: c_int = 3;

/// `ews_conn_send`'s `kind`.
pub const EWS_TEXT: c_int = 0;
pub const EWS_BINARY: c_int = 1;
pub const EWS_PING: c_int = 2;
pub const EWS_PONG: c_int = 3;
pub const EWS_FRAGMENT: c_int = 4;

/// Run `f` on connection `c` under [`guard_conn`].
///
/// # Safety
/// `c` is live (see the module's contract) and not otherwise borrowed;
/// `err` is null or valid.
unsafe fn acting<R>(
    c: *mut EwsConn,
    err: *mut EwsError,
    fallback: R,
    f: impl FnOnce(&mut Connection) -> R,
) -> R {
    // SAFETY: guaranteed by the caller.
    let conn = unsafe { &mut (*c).0 };
    guard_conn(conn, err, fallback, f)
}

/// Read connection `c` under [`guard`].
///
/// # Safety
/// `c` is live.
unsafe fn reading<R>(c: *const EwsConn, fallback: R, f: impl FnOnce(&Connection) -> R) -> R {
    // SAFETY: guaranteed by the caller.
    let conn = unsafe { &(*c).0 };
    guard(fallback, || f(conn))
}

/// Start a client connection with `connect`'s options `o`; NULL: the
/// options are invalid, `err` says why.
///
/// # Safety
/// `o`, `w` and `client` are live; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_connect(
    o: *const EwsOptions,
    w: *const EwsWaker,
    client: *const EwsClient,
    err: *mut EwsError,
) -> *mut EwsConn {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller.
        let (o, waker, client) = unsafe { (&(*o).0, &(*w).waker, &*client) };
        let mut options = o.client.clone();
        options.tls = Some(Arc::clone(&client.tls));
        options.proxies = Arc::clone(&client.proxies);
        super::boxed(err, Connection::connect(&options, waker).map(EwsConn))
    })
}

// ---- the loop's calls ---------------------------------------------------

/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_on_io(c: *mut EwsConn, readable: c_int, writable: c_int) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        acting(c, std::ptr::null_mut(), (), |c| {
            if writable != 0 {
                c.on_writable();
            }
            if readable != 0 {
                c.on_readable();
            }
        })
    }
}

/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_on_timer(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, std::ptr::null_mut(), (), Connection::on_timer) }
}

/// A resolver thread woke the loop: 1 when this connection's lookup has
/// answered.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_on_lookup(c: *mut EwsConn) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe {
        acting(c, std::ptr::null_mut(), 0, |c| {
            let before = c.interest().resolving;
            c.on_lookup();
            c_int::from(before && !c.interest().resolving)
        })
    }
}

/// Write what is queued; 1 when events wait.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_flush(c: *mut EwsConn) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, std::ptr::null_mut(), 1, |c| c_int::from(c.flush())) }
}

/// Whether the binding has an on_drain to call.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_set_drain_wanted(c: *mut EwsConn, wanted: c_int) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        acting(c, std::ptr::null_mut(), (), |c| {
            c.set_drain_wanted(wanted != 0)
        })
    }
}

/// The next event into `*ev`; 0 when there is none.  Its data stays valid
/// until the next call on `c`.
///
/// # Safety
/// `c` is live; `ev` is valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_next_event(c: *mut EwsConn, ev: *mut EwsEvent) -> c_int {
    // SAFETY: guaranteed by the caller.
    let ev = unsafe { &mut *ev };
    *ev = EwsEvent {
        kind: EWS_EV_NONE,
        binary: 0,
        code: 0,
        has_reason: 0,
        data: std::ptr::null(),
        len: 0,
    };
    // SAFETY: guaranteed by the caller.
    unsafe {
        acting(c, std::ptr::null_mut(), 0, |c| {
            let Some(event) = c.next_event() else {
                return 0;
            };
            let (kind, data): (c_int, &[u8]) = match event {
                Event::Handshake => (EWS_EV_HANDSHAKE, &[]),
                Event::Connected => (EWS_EV_CONNECTED, &[]),
                Event::Message { binary, data } => {
                    ev.binary = c_int::from(binary);
                    (EWS_EV_MESSAGE, data)
                }
                Event::Pong(data) => (EWS_EV_PONG, data),
                Event::Drain => (EWS_EV_DRAIN, &[]),
                Event::Error(text) => (EWS_EV_ERROR, text.as_bytes()),
                Event::Closed { code, reason } => {
                    ev.code = c_int::from(code);
                    ev.has_reason = c_int::from(reason.is_some());
                    (EWS_EV_CLOSED, reason.unwrap_or_default())
                }
            };
            ev.kind = kind;
            ev.data = data.as_ptr().cast();
            ev.len = data.len();
            1
        })
    }
}

/// The loop's watchers for `c`, into `*out`.
///
/// # Safety
/// `c` is live; `out` is valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_interest(c: *const EwsConn, out: *mut EwsInterest) {
    // SAFETY: guaranteed by the caller.
    let out = unsafe { &mut *out };
    // SAFETY: guaranteed by the caller.
    unsafe {
        reading(c, (), |c| {
            let i = c.interest();
            *out = EwsInterest {
                fd: i.fd.unwrap_or(-1),
                socket_gen: i.socket_gen,
                deadline_gen: i.deadline_gen,
                read: u8::from(i.read),
                write: u8::from(i.write),
                prepare: u8::from(i.prepare),
                resolving: u8::from(i.resolving),
                finished: u8::from(i.finished),
            };
        })
    }
}

/// Seconds until `c`'s timer should fire; < 0: no deadline.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_deadline_in(c: *const EwsConn) -> c_double {
    // SAFETY: guaranteed by the caller.
    unsafe {
        reading(c, -1.0, |c| {
            c.deadline_in().map_or(-1.0, |d| d.as_secs_f64())
        })
    }
}

// ---- the user's actions -------------------------------------------------

/// Queue a message, ping, pong or fragment (`kind`: an `EWS_*` send kind;
/// `binary` and `fin` for fragments): 1 queued, 0 dropped by
/// `max_backpressure`, -1: `err` says why not.
///
/// # Safety
/// `c` is live; `data` is valid for `len` bytes; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_send(
    c: *mut EwsConn,
    kind: c_int,
    binary: c_int,
    fin: c_int,
    data: *const c_char,
    len: usize,
    err: *mut EwsError,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let data = unsafe { bytes(data, len) };
    let kind = match kind {
        EWS_TEXT => SendKind::Text,
        EWS_BINARY => SendKind::Binary,
        EWS_PING => SendKind::Ping,
        EWS_PONG => SendKind::Pong,
        EWS_FRAGMENT => SendKind::Fragment {
            binary: binary != 0,
            fin: fin != 0,
        },
        _ => return status(err, Err("unknown send kind")),
    };
    // SAFETY: guaranteed by the caller.
    unsafe {
        acting(c, err, -1, |c| match c.send(kind, data) {
            Ok(queued) => c_int::from(queued),
            Err(e) => status(err, Err(e)),
        })
    }
}

/// Start the closing handshake with `code` (as Perl gave it: checked here)
/// and `reason`; with `c` NULL (an object already closed), only check
/// them.  -1: `err` says why not.
///
/// # Safety
/// `c` is null or live; `reason` is valid for `len` bytes; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_close(
    c: *mut EwsConn,
    code: c_double,
    reason: *const c_char,
    len: usize,
    err: *mut EwsError,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let reason = unsafe { bytes(reason, len) };
    if c.is_null() {
        let checked = || {
            status(
                err,
                crate::connection::check_close_args(code, reason).map(drop),
            )
        };
        return guard_err(err, -1, checked);
    }
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, err, -1, |c| status(err, c.close(code, reason))) }
}

/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_set_paused(c: *mut EwsConn, paused: c_int) {
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, std::ptr::null_mut(), (), |c| c.set_paused(paused != 0)) }
}

/// Accept the pending upgrade with `extra` headers; -1 (with the reason in
/// `err`) when one of them may not be sent and the client got a 500.
///
/// # Safety
/// `c` is live; `extra` is null or valid for `n` headers; `err` is null or
/// valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_accept_upgrade(
    c: *mut EwsConn,
    extra: *const EwsHeader,
    n: usize,
    err: *mut EwsError,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let extra = unsafe { header_list(extra, n) };
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, err, -1, |c| status(err, c.accept_upgrade(&extra))) }
}

/// Refuse the pending upgrade (403).
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_reject_upgrade(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, std::ptr::null_mut(), (), Connection::reject_upgrade) }
}

/// Drop the socket at once, without a closing handshake or events.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_abandon(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    unsafe { acting(c, std::ptr::null_mut(), (), Connection::abandon) }
}

/// # Safety
/// `c` is live and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_free(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    unsafe { free(c) }
}

// ---- accessors ----------------------------------------------------------

/// An `EWS_CONNECTING` .. `EWS_CLOSED`.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_state(c: *const EwsConn) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe {
        reading(c, EWS_CLOSED, |c| match c.state() {
            State::Connecting => EWS_CONNECTING,
            State::Connected => EWS_CONNECTED,
            State::Closing => EWS_CLOSING,
            State::Closed => EWS_CLOSED,
        })
    }
}

/// Bytes queued and not yet written.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_queued(c: *const EwsConn) -> usize {
    // SAFETY: guaranteed by the caller.
    unsafe { reading(c, 0, Connection::queued) }
}

/// Messages `c`'s backpressure limit dropped.
///
/// # Safety
/// `c` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_dropped(c: *const EwsConn) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { reading(c, 0, Connection::dropped_messages) }
}

/// Header `i` of the handshake (the request's on a server, the response's
/// on a client) into `*out`; 0 past the last.
///
/// # Safety
/// `c` is live; `out` is valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_header(
    c: *const EwsConn,
    i: usize,
    out: *mut EwsHeader,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let out = unsafe { &mut *out };
    // SAFETY: guaranteed by the caller.
    unsafe {
        reading(c, 0, |c| {
            let Some((name, value)) = c.headers().get(i) else {
                return 0;
            };
            *out = EwsHeader {
                name: name.as_ptr().cast(),
                name_len: name.len(),
                value: value.as_ptr().cast(),
                value_len: value.len(),
            };
            1
        })
    }
}

/// The peer's IP address as text into `buf`; its length, 0: none (or
/// `buf` too small).
///
/// # Safety
/// `c` is live; `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_peer_address(
    c: *const EwsConn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    // SAFETY: guaranteed by the caller.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    // SAFETY: guaranteed by the caller.
    unsafe {
        reading(c, 0, |c| {
            let Some(ip) = c.peer_ip() else {
                return 0;
            };
            let text = ip.to_string();
            let Some(out) = buf.get_mut(..text.len()) else {
                return 0;
            };
            out.copy_from_slice(text.as_bytes());
            text.len()
        })
    }
}

/// The agreed subprotocol into `*p`, `*len`; 0: none.
///
/// # Safety
/// `c` is live; `p` and `len` are valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_protocol(
    c: *const EwsConn,
    p: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let (p, len) = unsafe { (&mut *p, &mut *len) };
    // SAFETY: guaranteed by the caller.
    unsafe {
        reading(c, 0, |c| {
            let Some(proto) = c.protocol() else {
                return 0;
            };
            *p = proto.as_ptr().cast();
            *len = proto.len();
            1
        })
    }
}
