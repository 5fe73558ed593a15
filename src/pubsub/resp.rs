//! One RESP2 connection to Redis over a non-blocking socket: commands
//! queued as bytes, written when the socket takes them, and replies parsed
//! from what it has read (by the `redis-protocol` crate), handed out as
//! ranges into the read buffer, without a copy.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use mio::net::TcpStream;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, RangeFrame};

/// Read at most this much per readiness event: the loop's other watchers
/// get their turn while a busy channel floods us.
const READ_BUDGET: usize = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;

/// The largest reply taken from Redis (a message and its envelope): what
/// a server that misbehaves can make the process buffer.
pub const MAX_REPLY: usize = 64 << 20;

/// A reply, its strings as ranges into [`RespStream::reply_bytes`].
pub type Reply = RangeFrame;

#[derive(Debug)]
pub struct RespStream {
    socket: TcpStream,
    addr: SocketAddr,
    connected: bool,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    /// How much of `input` the replies handed out so far took.
    parsed: usize,
}

impl RespStream {
    /// Start connecting (without blocking) to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<RespStream> {
        Ok(RespStream {
            socket: TcpStream::connect(addr)?,
            addr,
            connected: false,
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            parsed: 0,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Queue a command (an array of bulk strings).
    pub fn command(&mut self, args: &[&[u8]]) {
        let items: Vec<BorrowedFrame<'_>> =
            args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        let frame = BorrowedFrame::Array(&items);
        let start = self.out.len();
        self.out.resize(start + frame.encode_len(false), 0);
        // The buffer was sized by the encoder's own count: it cannot be short.
        let n = encode_borrowed(&mut self.out[start..], &frame, false)
            .expect("a RESP command fits the space it asked for");
        self.out.truncate(start + n);
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len() - self.written
    }

    /// Whether the socket's write readiness matters: still connecting, or
    /// output left.
    pub fn wants_write(&self) -> bool {
        !self.connected || self.queued() > 0
    }

    /// Write readiness: the end of connecting (an error if it failed),
    /// then what is queued.
    pub fn on_writable(&mut self) -> io::Result<()> {
        if !self.connected {
            if let Some(e) = self.socket.take_error()? {
                return Err(e);
            }
            match self.socket.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
            self.socket.set_nodelay(true)?;
        }
        self.flush()
    }

    /// Write what the socket takes now.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.connected && self.written < self.out.len() {
            match self.socket.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }

    /// Read what the socket has (up to a budget); false at end of stream.
    pub fn read(&mut self) -> io::Result<bool> {
        self.input.drain(..self.parsed);
        self.parsed = 0;
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let start = self.input.len();
            self.input.resize(start + READ_CHUNK, 0);
            let got = self.socket.read(&mut self.input[start..]);
            self.input.truncate(start + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return Ok(false),
                Ok(n) => budget = budget.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The next complete reply read, if any; an error if the server's
    /// bytes are not RESP.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, String> {
        let pending = &self.input[self.parsed..];
        match decode_range(pending) {
            Ok(Some((_, used))) if used > MAX_REPLY => Err(too_large()),
            Ok(Some((frame, used))) => {
                let frame = shift(frame, self.parsed);
                self.parsed += used;
                Ok(Some(frame))
            }
            Ok(None) if pending.len() > MAX_REPLY => Err(too_large()),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("Redis sent a malformed reply: {e}")),
        }
    }

    /// What the ranges of the replies handed out since the last read
    /// refer to.
    pub fn reply_bytes(&self) -> &[u8] {
        &self.input
    }
}

fn too_large() -> String {
    format!("Redis sent a reply larger than {} MiB", MAX_REPLY >> 20)
}

/// A frame parsed at offset `by` of the buffer, its ranges made absolute.
fn shift(frame: RangeFrame, by: usize) -> RangeFrame {
    let moved = |(a, b): (usize, usize)| (a + by, b + by);
    match frame {
        RangeFrame::SimpleString(r) => RangeFrame::SimpleString(moved(r)),
        RangeFrame::Error(r) => RangeFrame::Error(moved(r)),
        RangeFrame::BulkString(r) => RangeFrame::BulkString(moved(r)),
        RangeFrame::Array(items) => {
            RangeFrame::Array(items.into_iter().map(|f| shift(f, by)).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Drive `s` until `done` holds (bounded): a tiny poll loop.
    fn until(s: &mut RespStream, mut done: impl FnMut(&mut RespStream) -> bool) {
        let start = Instant::now();
        while !done(s) {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            s.on_writable().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn text(s: &RespStream, r: (usize, usize)) -> Vec<u8> {
        s.reply_bytes()[r.0..r.1].to_vec()
    }

    #[test]
    fn commands_go_out_as_resp_and_replies_come_back_as_ranges() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = RespStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        s.command(&[b"PUBLISH", b"ch", b"a\r\nb"]);
        assert!(s.wants_write());
        until(&mut s, |s| s.queued() == 0);
        assert!(s.is_connected() && !s.wants_write());
        let want = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n";
        let mut got = vec![0; want.len()];
        server.read_exact(&mut got).unwrap();
        assert_eq!(got, want);

        // a reply split across reads, then two at once
        server
            .write_all(b"*3\r\n$7\r\nmessage\r\n$2\r\nch")
            .unwrap();
        until(&mut s, |s| s.read().unwrap() && s.reply_bytes().len() >= 23);
        assert_eq!(s.next_reply().unwrap(), None);
        server
            .write_all(b"\r\n$3\r\nhey\r\n:1\r\n-ERR no\r\n")
            .unwrap();
        let mut replies = Vec::new();
        until(&mut s, |s| {
            s.read().unwrap();
            while let Some(r) = s.next_reply().unwrap() {
                replies.push(r);
            }
            replies.len() == 3
        });
        let RangeFrame::Array(items) = &replies[0] else {
            panic!("{:?}", replies[0])
        };
        let RangeFrame::BulkString(payload) = items[2] else {
            panic!()
        };
        assert_eq!(text(&s, payload), b"hey");
        assert_eq!(replies[1], RangeFrame::Integer(1));
        let RangeFrame::Error(e) = replies[2] else {
            panic!()
        };
        assert_eq!(text(&s, e), b"ERR no");

        server.write_all(b"?bad\r\n").unwrap();
        until(&mut s, |s| s.read().unwrap() && !s.reply_bytes().is_empty());
        assert!(s.next_reply().is_err());
        drop(server);
        until(&mut s, |s| !s.read().unwrap());
    }

    #[test]
    fn a_reply_past_the_limit_is_an_error_before_it_is_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = RespStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let writer = std::thread::spawn(move || {
            let header = format!("${}\r\n", MAX_REPLY + 10);
            server.write_all(header.as_bytes()).unwrap();
            // the reader stops taking bytes at the error: so may we
            let _ = server.write_all(&vec![b'x'; MAX_REPLY + 1]);
        });
        let start = Instant::now();
        let err = loop {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out");
            s.read().unwrap();
            match s.next_reply() {
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Ok(Some(r)) => panic!("{r:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, "Redis sent a reply larger than 64 MiB");
        drop(s);
        writer.join().unwrap();
    }

    #[test]
    fn a_refused_connection_fails_on_write_readiness() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut s = RespStream::connect(addr).unwrap();
        let start = Instant::now();
        let err = loop {
            assert!(start.elapsed() < Duration::from_secs(10));
            match s.on_writable() {
                Err(e) => break e,
                Ok(()) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
