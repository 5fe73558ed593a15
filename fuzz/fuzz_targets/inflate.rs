//! permessage-deflate inflation of hostile data: bounded by the limit
//! (one byte past it at most), never a panic.
#![no_main]

use ev_websockets::protocol::deflate::Decompressor;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let window_bits = 8 + flags % 8;
    let mut inflater = Decompressor::new(window_bits, flags & 8 != 0);
    // The input is one or more messages, each in one or more frames.
    for message in rest.split(|&b| b == 0xFF).take(8) {
        let mut out = Vec::new();
        let mut result = Ok(());
        for frame in message.chunks(usize::from(flags >> 4).max(1) * 16) {
            result = inflater.inflate(frame, &mut out, LIMIT);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = inflater.finish_message(&mut out, LIMIT);
        }
        assert!(out.len() <= LIMIT + 1, "inflated past the limit");
        if result.is_err() {
            return;
        }
    }
});
