//! A connection's byte path: its socket, the TLS session over it, and the
//! buffers of what was read and what waits to be written.

use std::any::Any;
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::transport;
use crate::protocol::inbound::InBuf;
use crate::protocol::outbound::Outbound;

pub struct Link {
    pub socket: Option<TcpStream>,
    /// What the binding may still be watching (a failed connect attempt's
    /// socket, the poll of a race of attempts): closed on the next call,
    /// after the binding has moved its watcher, so that no descriptor is
    /// closed (and its number reused) under a watcher.
    pub retired: Vec<Retired>,
    /// Changes whenever the socket is replaced (another address tried).
    pub socket_gen: u32,
    pub peer: Option<SocketAddr>,
    /// The TLS session, when the connection is wss://.
    pub tls: Option<Box<rustls::Connection>>,
    pub inbuf: InBuf,
    /// Bytes the parser needs before the next frame is complete.
    pub need: usize,
    pub out: Outbound,
    /// The kernel took less than was offered: wait for the socket to be
    /// writable.
    pub write_blocked: bool,
    /// The peer closed its side, or reading failed (with this text).
    pub eof: Option<Option<String>>,
}

/// Something with a descriptor, kept open for a while (see
/// [`Link::retired`]).
pub type Retired = Box<dyn Any + Send>;

impl Link {
    /// No socket yet; `masked`: what we send is masked (a client's).
    pub fn new(masked: bool) -> Link {
        Link {
            socket: None,
            retired: Vec::new(),
            socket_gen: 0,
            peer: None,
            tls: None,
            inbuf: InBuf::default(),
            need: 0,
            out: Outbound::new(masked),
            write_blocked: false,
            eof: None,
        }
    }

    /// Nothing waits to be written: the send queue is empty and so is the
    /// TLS session's buffer of records (an empty queue alone means only
    /// that the session took the bytes).
    pub fn all_written(&self) -> bool {
        self.out.is_empty() && !self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// The end of the socket's use.  It is shut down at once, so the peer
    /// sees FIN even while another descriptor of it lives (an adopted
    /// handle); the descriptor itself closes when the owner drops it.
    pub fn shut_down(&mut self) {
        if let Some(socket) = self.socket.as_mut() {
            if let Some(tls) = self.tls.as_deref_mut() {
                transport::close_notify(socket, tls);
            }
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Keep `old` open until the next call.
    pub fn retire(&mut self, old: Retired) {
        self.retired.push(old);
    }

    /// Start over on a new socket (a client following a redirect): the old
    /// one is retired, its session and buffers dropped.
    pub fn restart(&mut self) {
        if let Some(old) = self.socket.take() {
            self.retire(Box::new(old));
        }
        self.tls = None;
        self.inbuf.consume(self.inbuf.data().len());
        self.out = Outbound::new(true);
        self.write_blocked = false;
        self.eof = None;
        self.peer = None;
    }
}
