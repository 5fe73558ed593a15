//! Name resolution off the event loop: a helper thread runs the blocking
//! lookup and wakes the loop when the answer is ready.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread;

/// Called from the lookup thread once its answer is stored; it must be
/// safe to call from any thread (the binding uses `ev_async_send`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

type Answer = io::Result<Vec<SocketAddr>>;

/// A lookup under way.  Dropping it abandons the answer.
#[derive(Debug)]
pub struct Lookup {
    answer: Arc<Mutex<Option<Answer>>>,
}

impl Lookup {
    pub fn start(host: &str, port: u16, waker: Waker) -> io::Result<Lookup> {
        let answer = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&answer);
        let host = host.to_string();
        thread::Builder::new()
            .name("ev-ws-resolve".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let result = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                waker();
            })?;
        Ok(Lookup { answer })
    }

    /// The answer, once the thread has stored it.
    pub fn take(&self) -> Option<Answer> {
        self.answer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn resolves_localhost_and_wakes() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let waker: Waker = Arc::new(move || tx.lock().unwrap().send(()).unwrap());
        let lookup = Lookup::start("localhost", 80, waker).unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        let addrs = lookup.take().unwrap().unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert!(lookup.take().is_none());
    }
}
