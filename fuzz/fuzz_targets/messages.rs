//! The frame and message layer as a connection drives it: bytes arrive in
//! pieces, frames are parsed, fragments reassembled and inflated.  Whatever
//! arrives, what comes out respects the protocol: ranges lie in the buffer,
//! messages stay within the size limit, text is UTF-8, close codes are
//! valid, control payloads are short.
#![no_main]

use ev_websockets::protocol::deflate::Decompressor;
use ev_websockets::protocol::frame::{self, Role};
use ev_websockets::protocol::inbound::{InBuf, Inbound, MessageReader, Payload, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, piece, stream @ ..] = data else {
        return;
    };
    let role = if flags & 1 != 0 {
        Role::Server
    } else {
        Role::Client
    };
    let max_message = [0, 125, 1000, 64 * 1024][usize::from(flags >> 1 & 3)];
    let mut reader = MessageReader::new(role, max_message);
    if flags & 8 != 0 {
        reader.enable_inflation(Decompressor::new(8 + (flags >> 4) % 8, flags & 0x80 != 0));
    }
    let mut inbuf = InBuf::default();
    for chunk in stream.chunks(usize::from(*piece).max(1)) {
        inbuf.extend(chunk);
        loop {
            let (used, step) = reader.next(inbuf.data_mut());
            assert!(used <= inbuf.data().len());
            match step {
                Step::NeedMore(n) => {
                    assert!(n > 0);
                    inbuf.consume(used);
                    inbuf.settle();
                    break;
                }
                Step::Violation(v) => {
                    assert!([1002, 1007, 1009].contains(&v.code), "{v:?}");
                    return;
                }
                Step::Frame(event) => {
                    check(&reader, inbuf.data(), used, event, max_message);
                    inbuf.consume(used);
                }
            }
        }
    }
});

fn check(reader: &MessageReader, buf: &[u8], used: usize, event: Inbound, max_message: usize) {
    match event {
        Inbound::Message { binary, payload } => {
            let data = match payload {
                Payload::Buffered(range) => {
                    assert!(range.end <= used);
                    &buf[range]
                }
                Payload::Reassembled => reader.reassembled(),
            };
            assert!(max_message == 0 || data.len() <= max_message);
            assert!(binary || std::str::from_utf8(data).is_ok());
        }
        Inbound::Ping(range) | Inbound::Pong(range) => {
            assert!(range.end <= used && range.len() <= frame::MAX_CONTROL_PAYLOAD);
        }
        Inbound::Close { code, reason } => {
            assert!(code == 1005 || frame::is_valid_close_code(code));
            assert!(reason.end <= used && std::str::from_utf8(&buf[reason]).is_ok());
        }
    }
}
