//! The client's check of a server's answer to its upgrade request.
#![no_main]

use ev_websockets::client::endpoint;
use ev_websockets::client::handshake::ClientHandshake;
use ev_websockets::protocol::handshake::Parsed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, answer @ ..] = data else {
        return;
    };
    let endpoint = endpoint::parse("ws://127.0.0.1:9/chat").expect("a valid URL");
    let protocol = (flags & 1 != 0).then_some("chat, superchat");
    let mut request = Vec::new();
    let handshake =
        ClientHandshake::write_request(&endpoint, protocol, flags & 2 != 0, &[], &mut request)
            .expect("a valid request");
    if let Ok(Parsed::Complete(used, _)) = handshake.read_response(answer) {
        assert!(used <= answer.len());
    }
});
