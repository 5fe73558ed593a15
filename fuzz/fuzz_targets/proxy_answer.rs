//! What an HTTP CONNECT or SOCKS5 proxy answers, fed in pieces as a
//! connection would: every step stays within the input.
#![no_main]

use ev_websockets::client::proxy::{Proxy, Tunnel, TunnelStep};
use libfuzzer_sys::fuzz_target;

const PROXIES: [&str; 4] = [
    "http://127.0.0.1:3128",
    "http://user:secret@127.0.0.1:3128",
    "socks5://127.0.0.1:1080",
    "socks5h://user:secret@127.0.0.1:1080",
];

fuzz_target!(|data: &[u8]| {
    let [which, piece, answer @ ..] = data else {
        return;
    };
    let proxy = Proxy::parse(PROXIES[usize::from(which % 4)]).expect("a valid proxy URL");
    let (mut tunnel, _greeting) =
        Tunnel::start(&proxy, "example.com", 443).expect("sendable credentials");
    let piece = usize::from(*piece).max(1);
    let (mut buffered, mut offered) = (Vec::new(), 0);
    while offered < answer.len() {
        let end = (offered + piece).min(answer.len());
        buffered.extend_from_slice(&answer[offered..end]);
        offered = end;
        loop {
            match tunnel.advance(&buffered) {
                TunnelStep::NeedMore => break,
                TunnelStep::Send { used, .. } => {
                    assert!(used <= buffered.len());
                    buffered.drain(..used);
                }
                TunnelStep::Open(used) => {
                    assert!(used <= buffered.len());
                    return;
                }
                TunnelStep::Failed(_) => return,
            }
        }
    }
});
