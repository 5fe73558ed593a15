//! The server's entry points: listening sockets, the connections they
//! accept, and sockets adopted from another server.

use std::borrow::Cow;
use std::ffi::{c_char, c_int};
use std::os::fd::FromRawFd;
use std::sync::Arc;

use super::context::EwsOptions;
use super::{EwsConn, EwsError, boxed, bytes, free, guard, guard_err, set_error};
use crate::connection::{Connection, Listener};
use crate::net::os_error;

/// A listening socket.
pub struct EwsListener(Listener);

/// Listen with `listen`'s options `o`; NULL: `err` says why not.
///
/// # Safety
/// `o` is live; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listen(o: *const EwsOptions, err: *mut EwsError) -> *mut EwsListener {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller.
        let o = unsafe { &(*o).0 };
        let listener = o.bind().and_then(|bind| {
            let settings = o.server_settings()?;
            Listener::bind(bind, settings).map_err(|e| os_error::text(&e))
        });
        boxed(err, listener.map(EwsListener))
    })
}

/// Serve the connected socket `fd` (owned from now on, closed when the
/// connection is freed) with `adopt`'s options `o`; NULL: `err` says why
/// not (`fd` is closed then too).  `buffered`/`buffered_len`: bytes that
/// were read from the socket before it was handed over and that nobody
/// consumed (what the Perl handle buffered); they follow `initial_data`.
/// Any connected stream socket will do (a Unix socketpair too): only
/// reads and writes are made on it.
///
/// # Safety
/// `fd` is an open socket nothing else closes; `o` is live; `buffered`
/// is null or valid for `buffered_len` bytes; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_adopt(
    fd: c_int,
    o: *const EwsOptions,
    buffered: *const c_char,
    buffered_len: usize,
    err: *mut EwsError,
) -> *mut EwsConn {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller: the descriptor is ours to own.
        let socket = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        // SAFETY: guaranteed by the caller.
        let o = unsafe { &(*o).0 };
        // SAFETY: guaranteed by the caller.
        let buffered = unsafe { bytes(buffered, buffered_len) };
        let arrived: Cow<[u8]> = if buffered.is_empty() {
            Cow::Borrowed(&o.initial_data)
        } else {
            Cow::Owned([&o.initial_data[..], buffered].concat())
        };
        let conn = o.server_settings().and_then(|settings| {
            socket
                .set_nonblocking(true)
                .map_err(|e| format!("adopt: {}", os_error::text(&e)))?;
            let socket = mio::net::TcpStream::from_std(socket);
            Ok(EwsConn(Connection::adopt(
                socket,
                Arc::new(settings),
                &arrived,
            )))
        });
        boxed(err, conn)
    })
}

/// The listening socket's descriptor, for the binding's watcher.
///
/// # Safety
/// `l` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_fd(l: *const EwsListener) -> c_int {
    // SAFETY: guaranteed by the caller.
    guard(-1, || unsafe { &(*l).0 }.fd())
}

/// The port it listens on (the one chosen, for port 0).
///
/// # Safety
/// `l` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_port(l: *const EwsListener) -> u16 {
    // SAFETY: guaranteed by the caller.
    guard(0, || unsafe { &(*l).0 }.port())
}

/// The next waiting connection; NULL: none waits, or accepting failed
/// (then `err` is not empty).
///
/// # Safety
/// `l` is live; `err` is valid.
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
/// `l` is live and not used afterwards; the binding has stopped its
/// watcher.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_listener_free(l: *mut EwsListener) {
    // SAFETY: guaranteed by the caller.
    unsafe { free(l) }
}
