//! A context's topics (publish and subscribe): the registry of which
//! connection subscribes to what, and publish's fan-out, which builds a
//! message once and queues it on every open subscriber with no call back
//! into Perl.  With `pubsub`, the hub also owns the bridge to Redis
//! (src/ffi/pubsub.rs): it tells it of each topic's first and last
//! subscriber and of each publish.

use std::ffi::{c_char, c_int, c_void};

use super::{EwsConn, EwsError, bytes, free, guard, guard_conn, guard_err, set_error};
use crate::protocol::prepared::Prepared;
use crate::protocol::utf8;
use crate::pubsub::Bridge;
use crate::topics::{TopicName, Topics};

/// The croak for a text publish that is not UTF-8.
const NOT_UTF8: &str = "publish: text message is not valid UTF-8 (use binary => 1 for bytes)";

/// One context's subscriptions (`ews_hub_new` to `ews_hub_free`).
///
/// Soundness contract: every connection pointer held here is live.  The
/// binding removes a connection (`ews_hub_remove`) before it frees it
/// (`ews_conn_free`, in `conn_detach`), and frees the hub only after all
/// its connections are detached (`ctx_destroy`).
pub struct EwsHub {
    /// Subscribers with their C handles, passed to publish's `queued`.
    pub(super) topics: Topics<*mut EwsConn, *mut c_void>,
    /// The bridge to Redis, with `pubsub`.
    pub(super) bridge: Option<Bridge>,
    /// The text of the bridge's last error event, while C reads it.
    pub(super) last_error: Option<String>,
}

#[unsafe(no_mangle)]
pub extern "C" fn ews_hub_new() -> *mut EwsHub {
    guard(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(EwsHub {
            topics: Topics::default(),
            bridge: None,
            last_error: None,
        }))
    })
}

/// # Safety
/// `h` is live (see the module's contract) and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_free(h: *mut EwsHub) {
    // SAFETY: guaranteed by the caller.
    unsafe { free(h) }
}

/// Subscribe `c` (whose C handle is `handle`) to `topic`: 1 if newly
/// subscribed, 0 if it already was.
///
/// # Safety
/// `h` and `c` are live; `topic` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_subscribe(
    h: *mut EwsHub,
    c: *mut EwsConn,
    handle: *mut c_void,
    topic: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let (hub, topic) = unsafe { (&mut *h, bytes(topic, len)) };
    guard(0, || {
        let new = hub.topics.subscribe(c, handle, topic);
        if new
            && hub.topics.subscribers(topic).len() == 1
            && let Some(b) = &mut hub.bridge
        {
            b.subscribe(topic);
        }
        c_int::from(new)
    })
}

/// Unsubscribe `c` from `topic`: 1 if it was subscribed.
///
/// # Safety
/// `h` is live; `topic` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_unsubscribe(
    h: *mut EwsHub,
    c: *mut EwsConn,
    topic: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let (hub, topic) = unsafe { (&mut *h, bytes(topic, len)) };
    guard(0, || {
        let was = hub.topics.unsubscribe(c, topic);
        if was
            && hub.topics.subscribers(topic).is_empty()
            && let Some(b) = &mut hub.bridge
        {
            b.unsubscribe(topic);
        }
        c_int::from(was)
    })
}

/// End every subscription of `c`: it is about to be freed.
///
/// # Safety
/// `h` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_remove(h: *mut EwsHub, c: *mut EwsConn) {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &mut *h };
    guard((), || {
        let bridge = &mut hub.bridge;
        hub.topics.remove(c, |topic| {
            if let Some(b) = bridge {
                b.unsubscribe(topic);
            }
        });
    })
}

/// The `i`th topic of `c` (in subscription order) in `*name`, `*len`: 0
/// past the last.  Valid until the hub next changes.
///
/// # Safety
/// `h` is live; `name` and `len` are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_topic(
    h: *const EwsHub,
    c: *mut EwsConn,
    i: usize,
    name: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &*h };
    guard(0, || {
        let Some(topic): Option<&TopicName> = hub.topics.topics_of(c).get(i) else {
            return 0;
        };
        // SAFETY: guaranteed by the caller.
        unsafe {
            *name = topic.as_ptr().cast();
            *len = topic.len();
        }
        1
    })
}

/// How many connections subscribe to `topic`.
///
/// # Safety
/// `h` is live; `topic` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_subscribers(
    h: *const EwsHub,
    topic: *const c_char,
    len: usize,
) -> usize {
    // SAFETY: guaranteed by the caller.
    let (hub, topic) = unsafe { (&*h, bytes(topic, len)) };
    guard(0, || hub.topics.subscribers(topic).len())
}

/// Queue `data` (one text or binary message) on every open subscriber of
/// `topic` but `except` (NULL: none), calling `queued` with the handle of
/// each one it was queued on (which only marks it for the next flush: no
/// Perl code), and hand it to the bridge, if any.  The number queued
/// locally, or -1 with `err` saying why not.
///
/// # Safety
/// `h` is live; `except` is null or any pointer (only compared); `topic`
/// and `data` are valid for their lengths; `err` is valid.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ews_hub_publish(
    h: *mut EwsHub,
    topic: *const c_char,
    topic_len: usize,
    except: *const EwsConn,
    binary: c_int,
    data: *const c_char,
    len: usize,
    queued: extern "C" fn(*mut c_void),
    err: *mut EwsError,
) -> isize {
    // SAFETY: guaranteed by the caller.
    let (hub, topic, data) = unsafe { (&mut *h, bytes(topic, topic_len), bytes(data, len)) };
    guard_err(err, -1, || {
        let binary = binary != 0;
        if !binary && !utf8::is_valid(data) {
            set_error(err, NOT_UTF8);
            return -1;
        }
        let count = fan_out(&hub.topics, topic, except, binary, data, queued);
        if let Some(b) = &mut hub.bridge {
            b.publish(topic, binary, data);
        }
        count
    })
}

/// Queue one message on every open subscriber of `topic` but `except`:
/// the number queued.  `data` is valid UTF-8 unless `binary`.
pub(super) fn fan_out(
    topics: &Topics<*mut EwsConn, *mut c_void>,
    topic: &[u8],
    except: *const EwsConn,
    binary: bool,
    data: &[u8],
    queued: extern "C" fn(*mut c_void),
) -> isize {
    let members = topics.subscribers(topic);
    if members.iter().all(|&(m, _)| std::ptr::eq(m, except)) {
        return 0;
    }
    let mut msg = Prepared::new(binary, data);
    let mut count = 0;
    for &(member, handle) in members {
        if std::ptr::eq(member, except) {
            continue;
        }
        // SAFETY: the hub's members are live and not otherwise borrowed
        // during this call (EwsHub's contract); `queued` runs no code
        // that touches the hub or frees a connection.
        let conn = unsafe { &mut (*member).0 };
        if guard_conn(conn, std::ptr::null_mut(), false, |c| {
            c.queue_prepared(&mut msg)
        }) {
            count += 1;
            queued(handle);
        }
    }
    count
}
