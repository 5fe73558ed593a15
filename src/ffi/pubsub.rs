//! The bridge to Redis (a context's `pubsub`): its settings, the loop's
//! calls into it, and what it reports.  The bridge lives in the context's
//! hub, whose fan-out takes each message from Redis: no Perl code runs
//! per message or per recipient.

use std::ffi::{c_char, c_double, c_int, c_void};
use std::time::Instant;

use super::context::EwsWaker;
use super::hub::{EwsHub, fan_out};
use super::{EwsError, EwsHeader, boxed, bytes, free, guard, guard_err};
use crate::pubsub::{Bridge, Event, Settings, Side};

/// The bridge's two connections (`ews_hub_bridge_interest`'s `side`).
pub const EWS_PUBSUB_SUBSCRIBER: c_int = 0;
pub const EWS_PUBSUB_PUBLISHER: c_int = 1;

/// What `ews_hub_bridge_event` reports.
pub const EWS_PUBSUB_NONE: c_int = 0;
pub const EWS_PUBSUB_CONNECTED: c_int = 1;
pub const EWS_PUBSUB_ERROR: c_int = 2;

/// `pubsub`'s settings, checked (`ews_pubsub_settings` to
/// `ews_hub_bridge_start` or `ews_pubsub_settings_free`).
pub struct EwsPubsub(Settings);

/// The bridge's counters (`pubsub_stats`).
#[repr(C)]
pub struct EwsPubsubStats {
    pub connected: c_int,
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub channels: usize,
}

/// The settings of `pubsub`'s `n` pairs in `items` (a value NULL: not a
/// string); NULL: `err` says what is wrong.
///
/// # Safety
/// `items` is valid for `n` headers whose strings are valid; `err` is
/// valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_pubsub_settings(
    items: *const EwsHeader,
    n: usize,
    err: *mut EwsError,
) -> *mut EwsPubsub {
    guard_err(err, std::ptr::null_mut(), || {
        let items = if items.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(items, n) }
        };
        let pairs: Vec<(&[u8], Option<&[u8]>)> = items
            .iter()
            .map(|h| {
                // SAFETY: each header's strings are valid, per the caller.
                let name = unsafe { bytes(h.name, h.name_len) };
                // SAFETY: as above.
                let value = (!h.value.is_null()).then(|| unsafe { bytes(h.value, h.value_len) });
                (name, value)
            })
            .collect();
        boxed(err, Settings::from_pairs(&pairs).map(EwsPubsub))
    })
}

/// # Safety
/// `p` is live and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_pubsub_settings_free(p: *mut EwsPubsub) {
    // SAFETY: guaranteed by the caller.
    unsafe { free(p) }
}

/// Give hub `h` a bridge with `settings` (taken over), which starts
/// connecting now; `w` wakes the loop when a name lookup answers.
///
/// # Safety
/// `h`, `settings` and `w` are live; `settings` is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_start(
    h: *mut EwsHub,
    settings: *mut EwsPubsub,
    w: *const EwsWaker,
) {
    // SAFETY: guaranteed by the caller.
    let (hub, settings, waker) = unsafe { (&mut *h, Box::from_raw(settings), &*w) };
    guard((), || {
        let now = Instant::now();
        hub.bridge = Some(Bridge::new(settings.0, waker.waker.clone(), now));
    })
}

/// Run the bridge: readiness of connection `side` (-1: none; then only
/// lookups, deadlines and output), each message from another process
/// fanned out to this hub's subscribers, `queued` called for each
/// connection it was queued on.
///
/// # Safety
/// `h` is live (and its connections, per the hub's contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_poll(
    h: *mut EwsHub,
    side: c_int,
    readable: c_int,
    writable: c_int,
    queued: extern "C" fn(*mut c_void),
) {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &mut *h };
    guard((), || {
        let EwsHub { topics, bridge, .. } = hub;
        let Some(bridge) = bridge else { return };
        let io = side_of(side).map(|s| (s, readable != 0, writable != 0));
        bridge.poll(io, Instant::now(), &mut |topic, binary, data| {
            fan_out(topics, topic, std::ptr::null(), binary, data, queued);
        });
    })
}

fn side_of(side: c_int) -> Option<Side> {
    match side {
        EWS_PUBSUB_SUBSCRIBER => Some(Side::Subscriber),
        EWS_PUBSUB_PUBLISHER => Some(Side::Publisher),
        _ => None,
    }
}

/// Connection `side`'s socket in `*fd` (-1: none now) and the readiness
/// it waits for in `*read`, `*write`.
///
/// # Safety
/// `h` is live; the out pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_interest(
    h: *const EwsHub,
    side: c_int,
    fd: *mut c_int,
    read: *mut c_int,
    write: *mut c_int,
) {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &*h };
    let i = guard(Default::default(), || match (&hub.bridge, side_of(side)) {
        (Some(b), Some(s)) => b.interest(s),
        _ => Default::default(),
    });
    // SAFETY: guaranteed by the caller.
    unsafe {
        *fd = i.fd.unwrap_or(-1);
        *read = c_int::from(i.read);
        *write = c_int::from(i.write);
    }
}

/// Seconds until the bridge must be polled though no socket is ready;
/// -1: no deadline.
///
/// # Safety
/// `h` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_timeout(h: *const EwsHub) -> c_double {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &*h };
    guard(-1.0, || {
        match hub.bridge.as_ref().and_then(Bridge::deadline) {
            Some(at) => at.saturating_duration_since(Instant::now()).as_secs_f64(),
            None => -1.0,
        }
    })
}

/// The bridge's next report (an `EWS_PUBSUB_*`); for an error, its text
/// in `*msg`, `*len` (valid until the next call on the hub).
///
/// # Safety
/// `h` is live; `msg` and `len` are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_event(
    h: *mut EwsHub,
    msg: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &mut *h };
    guard(EWS_PUBSUB_NONE, || {
        let Some(bridge) = &mut hub.bridge else {
            return EWS_PUBSUB_NONE;
        };
        match bridge.next_event() {
            None => EWS_PUBSUB_NONE,
            Some(Event::Connected) => EWS_PUBSUB_CONNECTED,
            Some(Event::Error(text)) => {
                let text = hub.last_error.insert(text);
                // SAFETY: guaranteed by the caller.
                unsafe {
                    *msg = text.as_ptr().cast();
                    *len = text.len();
                }
                EWS_PUBSUB_ERROR
            }
        }
    })
}

/// The bridge's counters in `*out`: 0 if the hub has no bridge.
///
/// # Safety
/// `h` is live; `out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_stats(h: *const EwsHub, out: *mut EwsPubsubStats) -> c_int {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &*h };
    guard(0, || {
        let Some(s) = hub.bridge.as_ref().map(Bridge::stats) else {
            return 0;
        };
        // SAFETY: guaranteed by the caller.
        unsafe {
            *out = EwsPubsubStats {
                connected: c_int::from(s.connected),
                published: s.published,
                received: s.received,
                dropped: s.dropped,
                reconnects: s.reconnects,
                channels: s.channels,
            };
        }
        1
    })
}

/// Close the bridge's connections for good (with `flush`, after a last
/// write of what is queued); its counters stay readable.
///
/// # Safety
/// `h` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ews_hub_bridge_stop(h: *mut EwsHub, flush: c_int) {
    // SAFETY: guaranteed by the caller.
    let hub = unsafe { &mut *h };
    guard((), || {
        if let Some(b) = &mut hub.bridge {
            b.stop(flush != 0);
        }
    })
}
