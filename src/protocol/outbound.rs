//! The send side: frames queued by `send*` and written out in one go.

use std::collections::VecDeque;
use std::io::{self, Write};

use crate::protocol::frame::{self, FrameHeader, OpCode};
use crate::protocol::pool;

/// Written bytes after which the buffer's sent prefix is dropped even
/// though unsent bytes remain (once it is also at least half the buffer,
/// so that each byte is moved at most once on average).
const COMPACT_AFTER: usize = 1 << 20;

/// Encoded frames waiting for the socket.  The buffer is borrowed from
/// [`pool::WRITE`] while it holds bytes.
#[derive(Debug)]
pub struct Outbound {
    buf: Vec<u8>,
    /// Bytes of `buf` the sink has taken.
    sent: usize,
    /// Stream position of `buf[0]`: bytes written before it, in all.
    base: u64,
    /// Stream position up to which the kernel has the bytes.  A TLS session
    /// holds what it took until its records are written: then this lags
    /// behind the bytes taken from `buf`.
    delivered: u64,
    /// The user-payload frames not fully delivered: stream positions where
    /// each one's payload starts and where the frame ends.
    frames: VecDeque<(u64, u64)>,
    /// Payload bytes of the frames in `frames`, written or not.
    queued_payload: usize,
    /// Stream position where the last automatic pong ends.
    pong_end: u64,
    /// Clients mask every frame (RFC 6455 §5.3).
    masked: bool,
}

/// What one write achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued is with the kernel.
    All,
    /// The kernel took part (or none); wait for writability.
    Partial,
}

impl Outbound {
    pub fn new(masked: bool) -> Outbound {
        Outbound {
            buf: Vec::new(),
            sent: 0,
            base: 0,
            delivered: 0,
            frames: VecDeque::new(),
            queued_payload: 0,
            pong_end: 0,
            masked,
        }
    }

    /// Nothing left in the buffer (a TLS session may still hold bytes).
    pub fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// User payload bytes the kernel does not have yet: queued here, or
    /// taken by a TLS session that has not written them.
    pub fn queued_payload(&self) -> usize {
        // Of the first frame, the kernel may have a part already.
        let delivered = self.frames.front().map_or(0, |&(payload_start, end)| {
            let delivered = self.delivered.saturating_sub(payload_start);
            delivered.min(end - payload_start) as usize
        });
        self.queued_payload - delivered
    }

    /// Stream position of the first byte not yet written.
    fn written_pos(&self) -> u64 {
        self.base + self.sent as u64
    }

    /// Queue raw bytes (an HTTP head).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.raw_buf().extend_from_slice(bytes);
    }

    /// The buffer to append raw bytes to directly.
    pub fn raw_buf(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = pool::WRITE.with(pool::Pool::take);
            self.buf.clear();
        }
        &mut self.buf
    }

    /// Queue one frame.  `counted` frames carry user payload and count in
    /// [`Outbound::queued_payload`]; automatic replies do not.
    pub fn push_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8], counted: bool) {
        self.push(frame::header(opcode, fin), payload, counted);
    }

    /// Queue a frame of user payload with its own header bits (RSV1 of a
    /// compressed message).  Clients mask it.
    pub fn push(&mut self, mut header: FrameHeader, payload: &[u8], counted: bool) {
        header.mask = self.masked.then(rand::random::<[u8; 4]>);
        let length = payload.len() as u64;
        let (head, head_len) = frame::encode_header(&header, length);
        let buf = self.raw_buf();
        buf.reserve(head_len + payload.len());
        buf.extend_from_slice(&head[..head_len]);
        let start = buf.len();
        self.buf.extend_from_slice(payload);
        if let Some(mask) = header.mask {
            frame::apply_mask(&mut self.buf[start..], mask);
        }
        if counted {
            let pos = |offset: usize| self.base + offset as u64;
            self.frames.push_back((pos(start), pos(self.buf.len())));
            self.queued_payload += payload.len();
        }
    }

    /// Clients mask every frame: an encoded frame cannot be copied in.
    pub fn masked(&self) -> bool {
        self.masked
    }

    /// Queue a whole data frame already encoded, unmasked (`masked` is
    /// false): its last `payload_len` bytes are user payload.
    pub fn push_encoded(&mut self, frame: &[u8], payload_len: usize) {
        debug_assert!(!self.masked && payload_len <= frame.len());
        let buf = self.raw_buf();
        buf.extend_from_slice(frame);
        let end = self.base + self.buf.len() as u64;
        self.frames.push_back((end - payload_len as u64, end));
        self.queued_payload += payload_len;
    }

    /// Queue the automatic answer to a ping.
    pub fn push_pong(&mut self, payload: &[u8]) {
        self.push_frame(OpCode::Control(frame::Control::Pong), true, payload, false);
        self.pong_end = self.base + self.buf.len() as u64;
    }

    /// Whether an automatic pong has not fully reached the kernel yet.
    pub fn has_unsent_pong(&self) -> bool {
        self.delivered < self.pong_end
    }

    /// Queue a close frame; `code` None sends an empty close payload.
    pub fn push_close(&mut self, code: Option<u16>, reason: &[u8]) {
        let mut payload = [0u8; 2 + frame::MAX_CONTROL_PAYLOAD];
        let len = match code {
            None => 0,
            Some(code) => {
                let reason = &reason[..reason.len().min(frame::MAX_CONTROL_PAYLOAD - 2)];
                payload[..2].copy_from_slice(&code.to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason);
                2 + reason.len()
            }
        };
        self.push_frame(
            OpCode::Control(frame::Control::Close),
            true,
            &payload[..len],
            false,
        );
    }

    /// One `write` call with everything pending, to the kernel: what it
    /// takes is delivered.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<Flushed> {
        let result = self.pass_to(sink);
        self.delivered();
        result
    }

    /// One `write` call with everything pending, to a sink that keeps what
    /// it takes (a TLS session) until [`Outbound::delivered`] says the
    /// kernel has it.
    pub fn pass_to(&mut self, sink: &mut impl Write) -> io::Result<Flushed> {
        if self.is_empty() {
            return Ok(Flushed::All);
        }
        match sink.write(&self.buf[self.sent..]) {
            Ok(n) => self.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(if self.is_empty() {
            Flushed::All
        } else {
            Flushed::Partial
        })
    }

    /// Everything passed on so far has reached the kernel.
    pub fn delivered(&mut self) {
        self.delivered = self.written_pos();
        while let Some(&(payload_start, end)) = self.frames.front() {
            if end > self.delivered {
                break;
            }
            self.queued_payload -= (end - payload_start) as usize;
            self.frames.pop_front();
        }
    }

    fn advance(&mut self, n: usize) {
        self.sent += n;
        let written = self.written_pos();
        if self.sent == self.buf.len()
            || (self.sent >= COMPACT_AFTER && self.sent >= self.buf.len() - self.sent)
        {
            self.base = written;
            if self.sent == self.buf.len() {
                let buf = std::mem::take(&mut self.buf);
                pool::WRITE.with(|p| p.give(buf));
            } else {
                self.buf.drain(..self.sent);
            }
            self.sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::Data;

    /// A sink that takes at most `limit` bytes per write.
    struct Trickle {
        taken: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.limit == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.limit);
            self.taken.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn counts_payload_until_written() {
        let mut out = Outbound::new(false);
        out.push_frame(OpCode::Data(Data::Text), true, b"hello", true);
        out.push_frame(OpCode::Data(Data::Binary), true, &[0; 200], true);
        out.push_frame(OpCode::Control(frame::Control::Pong), true, b"p", false);
        assert_eq!(out.queued_payload(), 205);
        let mut sink = Trickle {
            taken: Vec::new(),
            limit: 7,
        };
        assert_eq!(out.write_to(&mut sink).unwrap(), Flushed::Partial);
        assert_eq!(out.queued_payload(), 200);
        sink.limit = 0;
        assert_eq!(out.write_to(&mut sink).unwrap(), Flushed::Partial);
        sink.limit = 1000;
        assert_eq!(out.write_to(&mut sink).unwrap(), Flushed::All);
        assert_eq!(out.queued_payload(), 0);
        assert_eq!(&sink.taken[..7], b"\x81\x05hello");
        assert_eq!(&sink.taken[7..11], &[0x82, 126, 0, 200]);
        assert_eq!(sink.taken.len(), 7 + 4 + 200 + 3);
        assert_eq!(&sink.taken[211..], b"\x8a\x01p");
    }

    #[test]
    fn counts_partly_written_frames_across_compaction() {
        let mut out = Outbound::new(false);
        let big = vec![7; 3 * COMPACT_AFTER];
        out.push_frame(OpCode::Data(Data::Binary), true, &big, true);
        let mut sink = Trickle {
            taken: Vec::new(),
            limit: 10 + COMPACT_AFTER,
        };
        out.write_to(&mut sink).unwrap();
        assert_eq!(out.queued_payload(), big.len() - COMPACT_AFTER);
        out.write_to(&mut sink).unwrap();
        assert_eq!(out.queued_payload(), big.len() - 2 * COMPACT_AFTER - 10);
        out.push_frame(OpCode::Data(Data::Text), true, b"tail", true);
        sink.limit = usize::MAX;
        assert_eq!(out.write_to(&mut sink).unwrap(), Flushed::All);
        assert_eq!(out.queued_payload(), 0);
        assert_eq!(sink.taken.len(), 10 + big.len() + 6);
    }

    #[test]
    fn passed_on_bytes_count_until_delivered() {
        let mut out = Outbound::new(false);
        out.push_frame(OpCode::Data(Data::Binary), true, &[1; 300], true);
        out.push_pong(b"p");
        let mut session = Trickle {
            taken: Vec::new(),
            limit: 100,
        };
        assert_eq!(out.pass_to(&mut session).unwrap(), Flushed::Partial);
        assert_eq!(out.queued_payload(), 300, "the session holds them");
        session.limit = 1000;
        assert_eq!(out.pass_to(&mut session).unwrap(), Flushed::All);
        assert!(out.is_empty());
        assert_eq!(out.queued_payload(), 300);
        assert!(out.has_unsent_pong());
        out.delivered();
        assert_eq!(out.queued_payload(), 0);
        assert!(!out.has_unsent_pong());
        assert_eq!(session.taken.len(), 4 + 300 + 3);
    }

    #[test]
    fn knows_whether_a_pong_waits() {
        let mut out = Outbound::new(false);
        assert!(!out.has_unsent_pong());
        out.push_frame(OpCode::Data(Data::Text), true, b"first", true);
        out.push_pong(b"p");
        assert!(out.has_unsent_pong());
        let mut sink = Trickle {
            taken: Vec::new(),
            limit: 8,
        };
        out.write_to(&mut sink).unwrap();
        assert!(out.has_unsent_pong(), "one byte of it is left");
        sink.limit = 100;
        out.write_to(&mut sink).unwrap();
        assert!(!out.has_unsent_pong());
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Outbound::new(true);
        out.push_frame(OpCode::Data(Data::Text), true, b"abcd", true);
        let mut sink = Trickle {
            taken: Vec::new(),
            limit: 100,
        };
        out.write_to(&mut sink).unwrap();
        let t = &sink.taken;
        assert_eq!(t[1], 0x80 | 4);
        let mut payload = t[6..].to_vec();
        frame::apply_mask(&mut payload, [t[2], t[3], t[4], t[5]]);
        assert_eq!(payload, b"abcd");
    }

    #[test]
    fn close_reason_is_capped() {
        let mut out = Outbound::new(false);
        out.push_close(Some(1000), &[b'x'; 300]);
        let mut sink = Trickle {
            taken: Vec::new(),
            limit: 1000,
        };
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.taken.len(), 2 + 125);
    }
}
