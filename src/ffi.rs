//! The C ABI of `ev_websockets.h`: thin conversions between C types and the
//! core.  Every entry point runs inside [`guard`], so a Rust panic becomes
//! a return value instead of unwinding into C and Perl.
//!
//! Pointer contract (from the header): every `*mut`/`*const` object pointer
//! was returned by the matching constructor here and not yet freed; string
//! pointers are valid for their lengths for the duration of the call.

use std::ffi::{c_char, c_double, c_int, c_void};
use std::os::fd::FromRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::handshake;
use crate::client::proxy::{Proxy, ProxyKind, ProxySettings};
use crate::client::resolver::Waker;
use crate::connection::{Bind, Listener};
use crate::connection::{
    ClientOptions, Connection, Event, SendKind, ServerSettings, SessionSettings, State,
};
use crate::net::os_error;
use crate::net::tls::{self, ClientTls};

pub struct EwsConn(Connection);
pub struct EwsTls(Arc<ClientTls>);
pub struct EwsProxies(Arc<ProxySettings>);
pub struct EwsListener(Listener);
/// The loop's wake-up call, shared with resolver threads; `None` once the
/// context is gone.
pub struct EwsWaker {
    target: Arc<Mutex<Option<WakeTarget>>>,
    waker: Waker,
}

struct WakeTarget {
    wake: extern "C" fn(*mut c_void),
    data: *mut c_void,
}

// SAFETY: `data` is only passed back to `wake`, which the binding documents
// as callable from any thread (it only calls ev_async_send); the pointer is
// never dereferenced on the Rust side.
unsafe impl Send for WakeTarget {}

#[repr(C)]
pub struct EwsError {
    msg: [c_char; 512],
}

#[repr(C)]
pub struct EwsHeader {
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
}

#[repr(C)]
pub struct EwsConnectOpts {
    url: *const c_char,
    url_len: usize,
    protocol: *const c_char,
    protocol_len: usize,
    headers: *const EwsHeader,
    n_headers: usize,
    connect_timeout: c_double,
    ssl_verify: c_int,
    compression: c_int,
    session: EwsSessionOpts,
}

#[repr(C)]
pub struct EwsSessionOpts {
    max_message: u64,
    close_timeout: c_double,
    ping_interval: c_double,
    ping_timeout: c_double,
}

/// `max_message` when the option was not given.
const MAX_MESSAGE_UNSET: u64 = u64::MAX;

impl EwsSessionOpts {
    /// The settings, with `default_max_message` when `max_message` was not
    /// given (0 given means unlimited).
    fn settings(&self, default_max_message: usize) -> SessionSettings {
        let defaults = SessionSettings::default();
        SessionSettings {
            max_message: match self.max_message {
                MAX_MESSAGE_UNSET => default_max_message,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            },
            close_timeout: seconds(self.close_timeout).unwrap_or(defaults.close_timeout),
            ping_interval: seconds(self.ping_interval),
            ping_timeout: seconds(self.ping_timeout),
        }
    }
}

#[repr(C)]
pub struct EwsServerOpts {
    protocols: *const EwsHeader,
    n_protocols: usize,
    headers: *const EwsHeader,
    n_headers: usize,
    handshake_timeout: c_double,
    max_header_size: u64,
    compression: c_int,
    context_takeover: c_int,
    session: EwsSessionOpts,
}

#[repr(C)]
pub struct EwsListenOpts {
    host: *const c_char,
    host_len: usize,
    port: u16,
    reuse_port: c_int,
    ssl_cert: *const c_char,
    ssl_key: *const c_char,
    ssl_ca: *const c_char,
    server: EwsServerOpts,
}

#[repr(C)]
pub struct EwsInterest {
    fd: c_int,
    socket_gen: u32,
    deadline_gen: u32,
    read: u8,
    write: u8,
    prepare: u8,
    resolving: u8,
    finished: u8,
}

#[repr(C)]
pub struct EwsEvent {
    kind: c_int,
    binary: c_int,
    code: c_int,
    has_reason: c_int,
    data: *const c_char,
    len: usize,
}

const EV_NONE: c_int = 0;
const EV_HANDSHAKE: c_int = 1;
const EV_CONNECTED: c_int = 2;
const EV_MESSAGE: c_int = 3;
const EV_PONG: c_int = 4;
const EV_DRAIN: c_int = 5;
const EV_ERROR: c_int = 6;
const EV_CLOSED: c_int = 7;

const SEND_TEXT: c_int = 0;
const SEND_BINARY: c_int = 1;
const SEND_PING: c_int = 2;
const SEND_PONG: c_int = 3;

/// Run `f`; a panic becomes `fallback` (the panic hook has printed where it
/// happened).  Every entry point goes through this or one of the two
/// guards below: a panic must not unwind into perl's C frames.
fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// As [`guard`], for a call that reports errors: a panic also fills `err`
/// with [`panic_text`], for the binding to croak with.
fn guard_err<R>(err: *mut EwsError, fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        set_error(err, &panic_text(payload.as_ref()));
        fallback
    })
}

/// As [`guard_err`], for a call that acts on a connection (`err` may be
/// null): after a panic the connection also ends at once, its `on_error`
/// carrying [`panic_text`].
fn guard_conn<R>(
    conn: &mut Connection,
    err: *mut EwsError,
    fallback: R,
    f: impl FnOnce(&mut Connection) -> R,
) -> R {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *conn))) {
        Ok(r) => r,
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            set_error(err, &text);
            // A second panic here leaves the connection as it is.
            let _ = catch_unwind(AssertUnwindSafe(|| conn.fail_internal(text)));
            fallback
        }
    }
}

/// The fixed message for a caught panic, with what it said.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let said = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("internal error in EV::Websockets (please report it): {said}")
}

/// A deliberate panic inside the guard, so that the test suite can see a
/// panic end as the guard's fallback (-1) and its message in `err`, rather
/// than as a crash.
///
/// # Safety
/// `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_selftest_panic(err: *mut EwsError) -> c_int {
    guard_err(err, -1, || panic!("ews_selftest_panic: a deliberate panic"))
}

fn set_error(err: *mut EwsError, text: &str) {
    if err.is_null() {
        return;
    }
    // SAFETY: a non-null `err` points to a caller-owned ews_error.
    let msg = unsafe { &mut (*err).msg };
    let n = text.len().min(msg.len() - 1);
    for (dst, src) in msg.iter_mut().zip(&text.as_bytes()[..n]) {
        *dst = *src as c_char;
    }
    msg[n] = 0;
}

/// Borrow a (pointer, length) pair as bytes.
///
/// # Safety
/// `ptr` is null (then `len` is ignored) or valid for `len` bytes for `'a`.
unsafe fn bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr.cast(), len) }
    }
}

/// # Safety
/// `list` is null or valid for `n` headers whose strings are valid.
unsafe fn header_list(list: *const EwsHeader, n: usize) -> Vec<(String, Vec<u8>)> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let list = unsafe { std::slice::from_raw_parts(list, n) };
    list.iter()
        .map(|h| {
            // SAFETY: each header's strings are valid, per the caller.
            let (name, value) = unsafe { (bytes(h.name, h.name_len), bytes(h.value, h.value_len)) };
            (String::from_utf8_lossy(name).into_owned(), value.to_vec())
        })
        .collect()
}

/// Seconds from C; zero, negative or absurd values mean "not set".
fn seconds(s: c_double) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero())
}

/// # Safety
/// `c` is a live connection from this module.
unsafe fn conn<'a>(c: *const EwsConn) -> &'a Connection {
    // SAFETY: guaranteed by the caller.
    unsafe { &(*c).0 }
}

/// # Safety
/// `c` is a live connection from this module, not otherwise borrowed.
unsafe fn conn_mut<'a>(c: *mut EwsConn) -> &'a mut Connection {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut (*c).0 }
}

// ---- waker ------------------------------------------------------------------

#[unsafe(no_mangle)]
pub extern "C" fn ews_waker_new(
    wake: extern "C" fn(*mut c_void),
    data: *mut c_void,
) -> *mut EwsWaker {
    guard(std::ptr::null_mut(), || {
        let target = Arc::new(Mutex::new(Some(WakeTarget { wake, data })));
        let shared = Arc::clone(&target);
        let waker: Waker = Arc::new(move || {
            if let Some(t) = shared.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                (t.wake)(t.data);
            }
        });
        Box::into_raw(Box::new(EwsWaker { target, waker }))
    })
}

/// # Safety
/// `w` came from `ews_waker_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_waker_free(w: *mut EwsWaker) {
    guard((), || {
        // SAFETY: guaranteed by the caller.
        let w = unsafe { Box::from_raw(w) };
        // Under the lock: a resolver thread mid-wake finishes first.
        *w.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
    })
}

/// A NUL-terminated file name, or None for NULL.
///
/// # Safety
/// `name` is null or a valid NUL-terminated string.
unsafe fn file_name(name: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let name = unsafe { std::ffi::CStr::from_ptr(name) };
    Some(name.to_string_lossy().into_owned())
}

// ---- TLS --------------------------------------------------------------------

/// # Safety
/// Each name is null or a valid NUL-terminated string; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_tls_new(
    cert: *const c_char,
    key: *const c_char,
    ca: *const c_char,
    err: *mut EwsError,
) -> *mut EwsTls {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller.
        let (cert, key, ca) = unsafe { (file_name(cert), file_name(key), file_name(ca)) };
        match ClientTls::new(cert.as_deref(), key.as_deref(), ca.as_deref()) {
            Ok(t) => Box::into_raw(Box::new(EwsTls(Arc::new(t)))),
            Err(text) => {
                set_error(err, &text);
                std::ptr::null_mut()
            }
        }
    })
}

/// # Safety
/// `t` came from `ews_tls_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_tls_free(t: *mut EwsTls) {
    // SAFETY: guaranteed by the caller.
    guard((), || drop(unsafe { Box::from_raw(t) }))
}

// ---- proxies ----------------------------------------------------------------

/// # Safety
/// `host` is null or valid for `host_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_proxies_new(
    host: *const c_char,
    host_len: usize,
    port: u16,
    use_env: c_int,
) -> *mut EwsProxies {
    guard(std::ptr::null_mut(), || {
        let from_env = ProxySettings::from_env();
        let settings = if !host.is_null() {
            // SAFETY: guaranteed by the caller.
            let host = String::from_utf8_lossy(unsafe { bytes(host, host_len) }).into_owned();
            ProxySettings {
                proxy: Some(Proxy {
                    kind: ProxyKind::Http,
                    host,
                    port,
                    auth: None,
                }),
                bypass: from_env.bypass,
            }
        } else if use_env != 0 {
            from_env
        } else {
            ProxySettings::default()
        };
        Box::into_raw(Box::new(EwsProxies(Arc::new(settings))))
    })
}

/// # Safety
/// `p` came from `ews_proxies_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_proxies_free(p: *mut EwsProxies) {
    // SAFETY: guaranteed by the caller.
    guard((), || drop(unsafe { Box::from_raw(p) }))
}

// ---- client -----------------------------------------------------------------

/// # Safety
/// `opts` and its strings are valid; `w` is a live waker; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_connect(
    opts: *const EwsConnectOpts,
    w: *const EwsWaker,
    tls: *const EwsTls,
    proxies: *const EwsProxies,
    err: *mut EwsError,
) -> *mut EwsConn {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller.
        let (o, waker) = unsafe { (&*opts, &(*w).waker) };
        // SAFETY: the option strings are valid for their lengths.
        let url = unsafe { bytes(o.url, o.url_len) };
        let mut options = ClientOptions::new(&String::from_utf8_lossy(url));
        if !o.protocol.is_null() {
            // SAFETY: as above.
            let p = unsafe { bytes(o.protocol, o.protocol_len) };
            options.protocol = Some(String::from_utf8_lossy(p).into_owned());
        }
        // SAFETY: as above.
        options.headers = unsafe { header_list(o.headers, o.n_headers) };
        options.connect_timeout = seconds(o.connect_timeout).unwrap_or(options.connect_timeout);
        options.session = o.session.settings(SessionSettings::default().max_message);
        options.verify = o.ssl_verify != 0;
        options.compression = o.compression != 0;
        // SAFETY: `tls` is null or a live TLS handle, per the caller.
        options.tls = unsafe { tls.as_ref() }.map(|t| Arc::clone(&t.0));
        // SAFETY: `proxies` is null or a live proxies handle, per the caller.
        if let Some(p) = unsafe { proxies.as_ref() } {
            options.proxies = Arc::clone(&p.0);
        }
        match Connection::connect(&options, waker) {
            Ok(c) => Box::into_raw(Box::new(EwsConn(c))),
            Err(text) => {
                set_error(err, &text);
                std::ptr::null_mut()
            }
        }
    })
}

// ---- loop entry points ------------------------------------------------------

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_on_io(c: *mut EwsConn, readable: c_int, writable: c_int) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), (), |c| {
        if writable != 0 {
            c.on_writable();
        }
        if readable != 0 {
            c.on_readable();
        }
    })
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_on_timer(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), (), |c| c.on_timer())
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_on_lookup(c: *mut EwsConn) -> c_int {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), 0, |c| {
        let before = c.interest().resolving;
        c.on_lookup();
        c_int::from(before && !c.interest().resolving)
    })
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_flush(c: *mut EwsConn) -> c_int {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), 1, |c| c_int::from(c.flush()))
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_set_drain_wanted(c: *mut EwsConn, wanted: c_int) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), (), |c| {
        c.set_drain_wanted(wanted != 0)
    })
}

/// # Safety
/// `c` is a live connection; `ev` is valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_next_event(c: *mut EwsConn, ev: *mut EwsEvent) -> c_int {
    // SAFETY: guaranteed by the caller.
    let (c, ev) = unsafe { (conn_mut(c), &mut *ev) };
    guard_conn(c, std::ptr::null_mut(), 0, |c| {
        *ev = EwsEvent {
            kind: EV_NONE,
            binary: 0,
            code: 0,
            has_reason: 0,
            data: std::ptr::null(),
            len: 0,
        };
        let Some(event) = c.next_event() else {
            return 0;
        };
        let with_data = |ev: &mut EwsEvent, kind, data: &[u8]| {
            ev.kind = kind;
            ev.data = data.as_ptr().cast();
            ev.len = data.len();
        };
        match event {
            Event::Handshake => ev.kind = EV_HANDSHAKE,
            Event::Connected => ev.kind = EV_CONNECTED,
            Event::Message { binary, data } => {
                with_data(ev, EV_MESSAGE, data);
                ev.binary = c_int::from(binary);
            }
            Event::Pong(data) => with_data(ev, EV_PONG, data),
            Event::Drain => ev.kind = EV_DRAIN,
            Event::Error(text) => with_data(ev, EV_ERROR, text.as_bytes()),
            Event::Closed { code, reason } => {
                with_data(ev, EV_CLOSED, reason.unwrap_or_default());
                ev.code = c_int::from(code);
                ev.has_reason = c_int::from(reason.is_some());
            }
        }
        1
    })
}

/// # Safety
/// `c` is a live connection; `out` is valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_header(
    c: *const EwsConn,
    i: usize,
    out: *mut EwsHeader,
) -> c_int {
    guard(0, || {
        // SAFETY: guaranteed by the caller.
        let (c, out) = unsafe { (conn(c), &mut *out) };
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

/// # Safety
/// `c` is a live connection; `out` is valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_interest(c: *const EwsConn, out: *mut EwsInterest) {
    guard((), || {
        // SAFETY: guaranteed by the caller.
        let (c, out) = unsafe { (conn(c), &mut *out) };
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

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_deadline_in(c: *const EwsConn) -> c_double {
    guard(-1.0, || {
        // SAFETY: guaranteed by the caller.
        let c = unsafe { conn(c) };
        c.deadline_in().map_or(-1.0, |d| d.as_secs_f64())
    })
}

// ---- user actions -----------------------------------------------------------

/// # Safety
/// `c` is a live connection; `data` is valid for `len` bytes; `err` valid.
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
    let (c, data) = unsafe { (conn_mut(c), bytes(data, len)) };
    guard_conn(c, err, -1, |c| {
        let kind = match kind {
            SEND_TEXT => SendKind::Text,
            SEND_BINARY => SendKind::Binary,
            SEND_PING => SendKind::Ping,
            SEND_PONG => SendKind::Pong,
            _ => SendKind::Fragment {
                binary: binary != 0,
                fin: fin != 0,
            },
        };
        match c.send(kind, data) {
            Ok(()) => 0,
            Err(e) => {
                set_error(err, &e.to_string());
                -1
            }
        }
    })
}

/// # Safety
/// `c` is a live connection; `reason` is valid for `len` bytes; `err` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_close(
    c: *mut EwsConn,
    code: c_double,
    reason: *const c_char,
    len: usize,
    err: *mut EwsError,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let (c, reason) = unsafe { (conn_mut(c), bytes(reason, len)) };
    guard_conn(c, err, -1, |c| match c.close(code, reason) {
        Ok(()) => 0,
        Err(text) => {
            set_error(err, &text);
            -1
        }
    })
}

/// Check close() arguments without a connection (for objects already
/// closed).
///
/// # Safety
/// `reason` is valid for `len` bytes; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_close_args_error(
    code: c_double,
    reason: *const c_char,
    len: usize,
    err: *mut EwsError,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let reason = unsafe { bytes(reason, len) };
    guard_err(err, -1, || {
        match crate::connection::check_close_args(code, reason) {
            Ok(_) => 0,
            Err(text) => {
                set_error(err, &text);
                -1
            }
        }
    })
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_set_paused(c: *mut EwsConn, paused: c_int) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), (), |c| c.set_paused(paused != 0))
}

/// Accept the pending upgrade with `extra` headers; -1 (with the reason in
/// `err`) when one of them may not be sent and the client got a 500.
///
/// # Safety
/// `c` is a live connection; `extra` is null or valid for `n` headers;
/// `err` is null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_accept_upgrade(
    c: *mut EwsConn,
    extra: *const EwsHeader,
    n: usize,
    err: *mut EwsError,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let (c, extra) = unsafe { (conn_mut(c), header_list(extra, n)) };
    guard_conn(c, err, -1, |c| {
        set_error(err, "");
        match c.accept_upgrade(&extra) {
            Ok(()) => 0,
            Err(text) => {
                set_error(err, &text);
                -1
            }
        }
    })
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_reject_upgrade(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), (), |c| c.reject_upgrade())
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_abandon(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { conn_mut(c) };
    guard_conn(c, std::ptr::null_mut(), (), |c| c.abandon())
}

/// # Safety
/// `c` came from this module and is not used afterwards; the binding has
/// stopped its watchers on the socket (which closes here).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_free(c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    guard((), || drop(unsafe { Box::from_raw(c) }))
}

// ---- accessors --------------------------------------------------------------

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_state(c: *const EwsConn) -> c_int {
    // SAFETY: guaranteed by the caller.
    guard(3, || match unsafe { conn(c) }.state() {
        State::Connecting => 0,
        State::Connected => 1,
        State::Closing => 2,
        State::Closed => 3,
    })
}

/// # Safety
/// `c` is a live connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_queued(c: *const EwsConn) -> usize {
    guard(0, || {
        // SAFETY: guaranteed by the caller.
        let c = unsafe { conn(c) };
        c.queued()
    })
}

/// # Safety
/// `c` is a live connection; `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_peer_address(
    c: *const EwsConn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    guard(0, || {
        // SAFETY: guaranteed by the caller.
        let Some(ip) = unsafe { conn(c) }.peer_ip() else {
            return 0;
        };
        let text = ip.to_string();
        if text.len() > len {
            return 0;
        }
        // SAFETY: `buf` holds `len` >= text.len() bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), text.len()) };
        out.copy_from_slice(text.as_bytes());
        text.len()
    })
}

/// # Safety
/// `c` is a live connection; `p` and `len` are valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_conn_protocol(
    c: *const EwsConn,
    p: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    guard(0, || {
        // SAFETY: guaranteed by the caller.
        let Some(proto) = unsafe { conn(c) }.protocol() else {
            return 0;
        };
        // SAFETY: guaranteed by the caller.
        unsafe {
            *p = proto.as_ptr().cast();
            *len = proto.len();
        }
        1
    })
}

// ---- server -----------------------------------------------------------------

/// Server settings from listen/adopt options; the error text on failure.
///
/// # Safety
/// The option lists in `o` are valid for their lengths.
unsafe fn server_settings(o: &EwsServerOpts) -> Result<ServerSettings, String> {
    let mut settings = ServerSettings::default();
    // SAFETY: guaranteed by the caller.
    let (protocols, headers) = unsafe {
        (
            header_list(o.protocols, o.n_protocols),
            header_list(o.headers, o.n_headers),
        )
    };
    settings.policy.protocols = protocols.into_iter().map(|(name, _)| name).collect();
    settings.policy.headers = headers;
    for p in &settings.policy.protocols {
        crate::protocol::wire::check_protocol(p).map_err(|why| format!("protocol: {why}"))?;
    }
    handshake::validate_user_headers(&settings.policy.headers)?;
    settings.handshake_timeout = seconds(o.handshake_timeout).unwrap_or(settings.handshake_timeout);
    if o.max_header_size > 0 {
        settings.policy.max_head = usize::try_from(o.max_header_size).unwrap_or(usize::MAX);
    }
    settings.session = o.session.settings(settings.session.max_message);
    settings.policy.compression = o.compression != 0;
    settings.policy.context_takeover = o.context_takeover != 0;
    Ok(settings)
}

/// # Safety
/// `opts` and its strings are valid; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listen(
    opts: *const EwsListenOpts,
    err: *mut EwsError,
) -> *mut EwsListener {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller.
        let o = unsafe { &*opts };
        // SAFETY: the strings and lists in `o` are valid for their lengths.
        let (host, settings) = unsafe { (bytes(o.host, o.host_len), server_settings(&o.server)) };
        // SAFETY: the file names are null or NUL-terminated, per the caller.
        let (cert, key, ca) = unsafe {
            (
                file_name(o.ssl_cert),
                file_name(o.ssl_key),
                file_name(o.ssl_ca),
            )
        };
        let settings = settings.and_then(|mut s| {
            if let (Some(cert), Some(key)) = (&cert, &key) {
                s.tls = Some(tls::server_config(cert, key, ca.as_deref())?);
            }
            Ok(s)
        });
        let bind = Bind {
            host: match std::str::from_utf8(host).map(str::parse) {
                _ if o.host.is_null() => None,
                Ok(Ok(ip)) => Some(ip),
                _ => {
                    let host = String::from_utf8_lossy(host);
                    set_error(err, &format!("host must be an IP address, not '{host}'"));
                    return std::ptr::null_mut();
                }
            },
            port: o.port,
            reuse_port: o.reuse_port != 0,
        };
        match settings.and_then(|s| Listener::bind(bind, s).map_err(|e| os_error::text(&e))) {
            Ok(l) => Box::into_raw(Box::new(EwsListener(l))),
            Err(text) => {
                set_error(err, &text);
                std::ptr::null_mut()
            }
        }
    })
}

/// Take over a connected socket as the server side of a WebSocket.
///
/// # Safety
/// `fd` is an open socket the caller hands over (it is closed when the
/// connection is freed); `data` is valid for `len` bytes; `opts` and its
/// strings are valid; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_adopt(
    fd: c_int,
    data: *const c_char,
    len: usize,
    opts: *const EwsServerOpts,
    err: *mut EwsError,
) -> *mut EwsConn {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: the caller hands over ownership of the open socket `fd`.
        let socket = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        // SAFETY: guaranteed by the caller.
        let (initial, settings) = unsafe { (bytes(data, len), server_settings(&*opts)) };
        let settings = match (settings, socket.set_nonblocking(true)) {
            (Ok(s), Ok(())) => s,
            (Err(text), _) => {
                set_error(err, &text);
                return std::ptr::null_mut();
            }
            (_, Err(e)) => {
                set_error(err, &format!("adopt: {}", os_error::text(&e)));
                return std::ptr::null_mut();
            }
        };
        let socket = mio::net::TcpStream::from_std(socket);
        let conn = Connection::adopt(socket, Arc::new(settings), initial);
        Box::into_raw(Box::new(EwsConn(conn)))
    })
}

/// # Safety
/// `l` is a live listener.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_fd(l: *const EwsListener) -> c_int {
    // SAFETY: guaranteed by the caller.
    guard(-1, || unsafe { &(*l).0 }.fd())
}

/// # Safety
/// `l` is a live listener.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_port(l: *const EwsListener) -> u16 {
    // SAFETY: guaranteed by the caller.
    guard(0, || unsafe { &(*l).0 }.port())
}

/// # Safety
/// `l` is a live listener; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_accept(
    l: *mut EwsListener,
    err: *mut EwsError,
) -> *mut EwsConn {
    guard_err(err, std::ptr::null_mut(), || {
        set_error(err, "");
        // SAFETY: guaranteed by the caller.
        match unsafe { &(*l).0 }.accept() {
            Ok(Some(c)) => Box::into_raw(Box::new(EwsConn(c))),
            Ok(None) => std::ptr::null_mut(),
            Err(e) => {
                set_error(err, &os_error::text(&e));
                std::ptr::null_mut()
            }
        }
    })
}

/// # Safety
/// `l` came from `ews_listen` and is not used afterwards; the binding has
/// stopped its watcher.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_free(l: *mut EwsListener) {
    // SAFETY: guaranteed by the caller.
    guard((), || drop(unsafe { Box::from_raw(l) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text(err: &EwsError) -> String {
        let bytes: Vec<u8> = err
            .msg
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as u8)
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn max_message_default_applies_only_when_not_given() {
        let opts = |max_message| EwsSessionOpts {
            max_message,
            close_timeout: 0.0,
            ping_interval: 0.0,
            ping_timeout: 0.0,
        };
        let server = crate::connection::DEFAULT_SERVER_MAX_MESSAGE;
        assert_eq!(server, 16 * 1024 * 1024);
        assert_eq!(ServerSettings::default().session.max_message, server);
        assert_eq!(opts(MAX_MESSAGE_UNSET).settings(server).max_message, server);
        assert_eq!(opts(MAX_MESSAGE_UNSET).settings(0).max_message, 0);
        assert_eq!(opts(0).settings(server).max_message, 0);
        assert_eq!(opts(1000).settings(server).max_message, 1000);
    }

    #[test]
    fn a_panic_becomes_the_fallback_and_a_fixed_message() {
        let mut err = EwsError { msg: [0; 512] };
        // SAFETY: `err` is a valid error buffer.
        assert_eq!(unsafe { ews_selftest_panic(&mut err) }, -1);
        assert_eq!(
            error_text(&err),
            "internal error in EV::Websockets (please report it): ews_selftest_panic: a deliberate panic"
        );
        assert_eq!(guard(7, || 8), 8);
    }

    #[test]
    fn a_panic_on_a_connection_ends_it_with_the_message() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        let socket = mio::net::TcpStream::from_std(socket);
        let mut conn = Connection::adopt(socket, Arc::new(ServerSettings::default()), b"");
        let mut err = EwsError { msg: [0; 512] };
        let got = guard_conn(&mut conn, &mut err, 7, |_| -> i32 { panic!("boom") });
        assert_eq!(got, 7);
        let text = "internal error in EV::Websockets (please report it): boom";
        assert_eq!(error_text(&err), text);
        assert_eq!(conn.state(), State::Closed);
        assert!(matches!(conn.next_event(), Some(Event::Error(t)) if t == text));
        assert!(conn.interest().finished);
    }
}
