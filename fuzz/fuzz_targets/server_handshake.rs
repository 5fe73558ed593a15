//! The server's reading of an upgrade request: any bytes give a verdict,
//! a refusal or "incomplete", never a panic, and a complete head lies
//! within the input.
#![no_main]

use ev_websockets::protocol::handshake::{MAX_HEAD, Parsed};
use ev_websockets::server::handshake::{self, ServerPolicy, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, request @ ..] = data else {
        return;
    };
    let policy = ServerPolicy {
        protocols: vec!["chat".into(), "superchat".into()],
        headers: Vec::new(),
        max_head: MAX_HEAD,
        compression: flags & 1 != 0,
        context_takeover: flags & 2 != 0,
    };
    if let Parsed::Complete(used, verdict) = handshake::read_request(request, &policy) {
        assert!(used <= request.len());
        if let Verdict::Upgrade(upgrade) = verdict {
            let mut out = Vec::new();
            upgrade
                .write_response(&policy, &[], &mut out)
                .expect("the policy's headers can be sent");
            assert!(out.starts_with(b"HTTP/1.1 101 "));
        }
    }
});
