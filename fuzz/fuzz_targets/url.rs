//! URL parsing: client endpoints, redirect targets and proxy URLs.
#![no_main]

use ev_websockets::client::{endpoint, proxy::Proxy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = endpoint::parse(text) {
        let _ = (e.origin(), e.ip_literal());
    }
    let (current, location) = text.split_once('\n').unwrap_or((text, "/"));
    if let Some(target) = endpoint::redirect_target(current, location) {
        let _ = endpoint::parse(&target);
    }
    let _ = Proxy::parse(text);
});
