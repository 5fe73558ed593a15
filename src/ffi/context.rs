//! A context's parts: the option table of each call, the settings its
//! clients share (TLS, proxies), and the waker resolver threads use.

use std::ffi::{c_char, c_double, c_int, c_void};
use std::sync::{Arc, Mutex};

use super::{EwsError, EwsHeader, bytes, free, guard, guard_err, header_list, set_error, status};
use crate::client::proxy::ProxySettings;
use crate::client::resolver::Waker;
use crate::net::tls::ClientTls;
use crate::options::{Call, Options, Shape, Value};

/// The options of one call, being gathered (`ews_options_new`'s `call`).
pub const EWS_CALL_NEW: c_int = 0;
pub const EWS_CALL_CONNECT: c_int = 1;
pub const EWS_CALL_LISTEN: c_int = 2;
pub const EWS_CALL_ADOPT: c_int = 3;

/// How the binding converts an option's Perl value (`ews_options_find`).
pub const EWS_SHAPE_NUMBER: c_int = 0; // number, is_number
pub const EWS_SHAPE_TEXT: c_int = 1; // text, len
pub const EWS_SHAPE_BOOL: c_int = 2; // truth
pub const EWS_SHAPE_NAMES: c_int = 3; // items: names (a name or an array ref)
pub const EWS_SHAPE_HEADERS: c_int = 4; // items: pairs (a hash ref)

/// An option's value, converted by its shape; with `undef` set, nothing
/// else is read.
#[repr(C)]
pub struct EwsValue {
    pub undef: c_int,
    pub number: c_double,
    /// 0: not a number (a string that does not look like one).
    pub is_number: c_int,
    pub truth: c_int,
    pub text: *const c_char,
    pub len: usize,
    pub items: *const EwsHeader,
    pub n_items: usize,
}

/// The options of one call (`ews_options_new` to `ews_options_free`).
pub struct EwsOptions(pub(super) Options);

/// What a context's clients share: TLS settings and proxies.
pub struct EwsClient {
    pub(super) tls: Arc<ClientTls>,
    pub(super) proxies: Arc<ProxySettings>,
}

/// The loop's wake-up call, shared with resolver threads; `None` once the
/// context is gone.
pub struct EwsWaker {
    target: Arc<Mutex<Option<WakeTarget>>>,
    pub(super) waker: Waker,
}

struct WakeTarget {
    wake: extern "C" fn(*mut c_void),
    data: *mut c_void,
}

// SAFETY: `data` is only passed back to `wake`, which the binding documents
// as callable from any thread (it only calls ev_async_send); the pointer is
// never dereferenced on the Rust side.
unsafe impl Send for WakeTarget {}

// ---- options ------------------------------------------------------------

/// An empty option set for `call` (an `EWS_CALL_*`); NULL for another
/// number.
#[unsafe(no_mangle)]
pub extern "C" fn ews_options_new(call: c_int) -> *mut EwsOptions {
    let call = match call {
        EWS_CALL_NEW => Call::New,
        EWS_CALL_CONNECT => Call::Connect,
        EWS_CALL_LISTEN => Call::Listen,
        EWS_CALL_ADOPT => Call::Adopt,
        _ => return std::ptr::null_mut(),
    };
    guard(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(EwsOptions(Options::new(call))))
    })
}

/// # Safety
/// `o` is live (see the module's contract) and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_options_free(o: *mut EwsOptions) {
    // SAFETY: guaranteed by the caller.
    unsafe { free(o) }
}

/// The index of option `name` of this call, and in `*shape` its
/// `EWS_SHAPE_*`; -1 when the call has no such option.
///
/// # Safety
/// `o` is live; `name` is valid for `len` bytes; `shape` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_options_find(
    o: *const EwsOptions,
    name: *const c_char,
    len: usize,
    shape: *mut c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: guaranteed by the caller.
        let (o, name) = unsafe { (&(*o).0, bytes(name, len)) };
        let Some(i) = o.find(name) else {
            return -1;
        };
        let code = match crate::options::OPTIONS[i].shape {
            Shape::Number => EWS_SHAPE_NUMBER,
            Shape::Text => EWS_SHAPE_TEXT,
            Shape::Bool => EWS_SHAPE_BOOL,
            Shape::Names => EWS_SHAPE_NAMES,
            Shape::Headers => EWS_SHAPE_HEADERS,
        };
        // SAFETY: guaranteed by the caller.
        unsafe { *shape = code };
        c_int::try_from(i).unwrap_or(-1)
    })
}

/// Set option `index` (from `ews_options_find`) to `value`, read as its
/// shape says; -1: the value is invalid, `err` says why.
///
/// # Safety
/// `o` is live; `value` is valid, with the strings its shape uses valid;
/// `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_options_set(
    o: *mut EwsOptions,
    index: c_int,
    value: *const EwsValue,
    err: *mut EwsError,
) -> c_int {
    guard_err(err, -1, || {
        // SAFETY: guaranteed by the caller.
        let (o, v) = unsafe { (&mut (*o).0, &*value) };
        let Some(spec) = usize::try_from(index)
            .ok()
            .and_then(|i| crate::options::OPTIONS.get(i))
        else {
            set_error(err, "no such option");
            return -1;
        };
        let value = if v.undef != 0 {
            Value::Undef
        } else {
            match spec.shape {
                Shape::Number => Value::Number((v.is_number != 0).then_some(v.number)),
                // SAFETY: a text value's string is valid, per the caller.
                Shape::Text => Value::Text(unsafe { bytes(v.text, v.len) }),
                Shape::Bool => Value::Bool(v.truth != 0),
                Shape::Names | Shape::Headers => {
                    // SAFETY: a list value's items are valid, per the caller.
                    Value::List(unsafe { header_list(v.items, v.n_items) })
                }
            }
        };
        status(err, o.set(index as usize, value))
    })
}

/// The checks that look at several options, once all are set; -1: `err`
/// says what is wrong.
///
/// # Safety
/// `o` is live; `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_options_check(o: *const EwsOptions, err: *mut EwsError) -> c_int {
    // SAFETY: guaranteed by the caller.
    guard_err(err, -1, || status(err, unsafe { &(*o).0 }.check()))
}

// ---- a context's clients ------------------------------------------------

/// The TLS settings and proxies of `new`'s options `o` (files are read
/// now); NULL: `err` says why.
///
/// # Safety
/// `o` is live (options of `EWS_CALL_NEW`); `err` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_client_new(
    o: *const EwsOptions,
    err: *mut EwsError,
) -> *mut EwsClient {
    guard_err(err, std::ptr::null_mut(), || {
        // SAFETY: guaranteed by the caller.
        let o = unsafe { &(*o).0 };
        super::boxed(
            err,
            o.client_tls().map(|tls| EwsClient {
                tls: Arc::new(tls),
                proxies: Arc::new(o.proxies()),
            }),
        )
    })
}

/// # Safety
/// `c` is live and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_client_free(c: *mut EwsClient) {
    // SAFETY: guaranteed by the caller.
    unsafe { free(c) }
}

// ---- waker --------------------------------------------------------------

/// A waker that calls `wake(data)`, from a resolver thread, when a lookup
/// has answered.
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

/// Disables the waker, then frees it: `wake` is not called afterwards.
///
/// # Safety
/// `w` is live and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_waker_free(w: *mut EwsWaker) {
    guard((), || {
        // SAFETY: guaranteed by the caller.
        let w = unsafe { Box::from_raw(w) };
        // Under the lock: a resolver thread mid-wake finishes first.
        *w.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
    })
}
