//! The C ABI the XS binding calls: thin conversions between C types and
//! the core.  build.rs generates `ev_websockets.h` from these modules
//! (cbindgen), so the Rust here is the one definition of every type and
//! constant the binding uses.
//!
//! Pointer contract: every object pointer an entry point takes was
//! returned by the matching constructor here and not yet freed, and is not
//! used from another thread meanwhile; string pointers are valid for their
//! lengths during the call; data a call hands out (event payloads,
//! headers) stays valid only until the next call on the same object.
//! Functions that can fail fill an `ews_error` with the message to croak
//! with.  Every entry point runs inside [`guard`] or one of its variants,
//! so a Rust panic becomes a return value instead of unwinding into C.

use std::ffi::{c_char, c_int};
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::connection::Connection;

#[cfg(not(any(test, fuzzing)))]
mod boot;
mod conn;
mod context;
mod hub;
mod pubsub;
mod server;

/// Size of an `ews_error`'s message buffer, terminating NUL included.
pub const EWS_ERROR_MAX: usize = 512;

/// A message to croak with, NUL-terminated.
#[repr(C)]
pub struct EwsError {
    pub msg: [c_char; EWS_ERROR_MAX],
}

/// A header (name, value), or a name alone (value NULL): strings are
/// (pointer, length), not NUL-terminated.
#[repr(C)]
pub struct EwsHeader {
    pub name: *const c_char,
    pub name_len: usize,
    pub value: *const c_char,
    pub value_len: usize,
}

/// A connection (the core's `Connection`).
pub struct EwsConn(Connection);

/// Run `f`; a panic becomes `fallback` (the panic hook has printed where
/// it happened): a panic must not unwind into perl's C frames.
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

/// 0 for `Ok`; -1 with the message in `err` for `Err`.
fn status(err: *mut EwsError, result: Result<(), impl Display>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(e) => {
            set_error(err, &e.to_string());
            -1
        }
    }
}

/// A new object for C to own, or NULL with the message in `err`.
fn boxed<T>(err: *mut EwsError, result: Result<T, String>) -> *mut T {
    match result {
        Ok(value) => Box::into_raw(Box::new(value)),
        Err(text) => {
            set_error(err, &text);
            std::ptr::null_mut()
        }
    }
}

/// Free an object made by [`boxed`].
///
/// # Safety
/// `p` came from [`boxed`] (or `Box::into_raw`) and is not used afterwards.
unsafe fn free<T>(p: *mut T) {
    // SAFETY: guaranteed by the caller.
    guard((), || drop(unsafe { Box::from_raw(p) }))
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

/// Copy `n` headers (names only when a value is NULL).
///
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

#[cfg(test)]
fn error_text(err: &EwsError) -> String {
    let bytes: Vec<u8> = err
        .msg
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8)
        .collect();
    String::from_utf8(bytes).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Event, ServerSettings, State};
    use std::sync::Arc;

    #[test]
    fn a_panic_becomes_the_fallback_and_a_fixed_message() {
        let mut err = EwsError {
            msg: [0; EWS_ERROR_MAX],
        };
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
        let mut err = EwsError {
            msg: [0; EWS_ERROR_MAX],
        };
        let got = guard_conn(&mut conn, &mut err, 7, |_| -> i32 { panic!("boom") });
        assert_eq!(got, 7);
        let text = "internal error in EV::Websockets (please report it): boom";
        assert_eq!(error_text(&err), text);
        assert_eq!(conn.state(), State::Closed);
        assert!(matches!(conn.next_event(), Some(Event::Error(t)) if t == text));
        assert!(conn.interest().finished);
    }
}
