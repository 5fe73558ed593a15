//! The receive side: a reusable read buffer and the message layer that
//! turns frames into messages, control events and protocol violations.

use std::io::{self, Read};
use std::ops::Range;

use crate::protocol::deflate::{Decompressor, InflateError};
use crate::protocol::frame::{self, Control, Data, FrameHeader, OpCode, Role};
use crate::protocol::pool;
use crate::protocol::utf8::{self, Utf8Stream};

/// Size of the buffer reads go into: a pipelined peer's frames are taken
/// many at a time.
const READ_BUFFER: usize = 64 * 1024;
/// Smallest room offered to a read.
const MIN_READ: usize = 4096;
/// Bytes left waiting for the rest of their frame or HTTP head, up to this
/// many, move into a buffer of their own size (in steps of
/// [`WAITING_STEP`]) and the read buffer goes back to the pool: a
/// connection that waits holds little.
const MAX_WAITING_MOVED: usize = 16 * 1024;
const WAITING_STEP: usize = 4096;
/// Bytes a buffer may grow by at once, so that a peer's declared frame
/// length is never allocated before the bytes arrive.
const MIN_GROWTH: usize = 64 * 1024;

/// Bytes read from the socket and not yet consumed.  Reads go into a
/// buffer borrowed from [`pool::READ`].
#[derive(Debug, Default)]
pub struct InBuf {
    /// Its length is the initialised, usable size.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            let buf = std::mem::take(&mut self.buf);
            pool::READ.with(|p| p.give(buf));
        }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        if self.buf.len() - self.end < bytes.len() {
            self.buf.resize(self.end + bytes.len(), 0);
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// One `read` call, offering room for at least `want` more bytes (up
    /// to a growth step).  Returns what `read` returned.
    pub fn read_from(&mut self, source: &mut impl Read, want: usize) -> io::Result<usize> {
        self.make_room(want);
        let n = source.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Once the bytes that have arrived are parsed: a few left over (the
    /// start of a frame or of a head) move into a small buffer of their own.
    pub fn settle(&mut self) {
        let pending = self.end - self.start;
        let size = pending.next_multiple_of(WAITING_STEP);
        if pending == 0 || pending > MAX_WAITING_MOVED || self.buf.len() <= size {
            return;
        }
        let mut small = vec![0; size];
        small[..pending].copy_from_slice(self.data());
        let read_buffer = std::mem::replace(&mut self.buf, small);
        pool::READ.with(|p| p.give(read_buffer));
        self.start = 0;
        self.end = pending;
    }

    fn make_room(&mut self, want: usize) {
        let want = want.max(MIN_READ);
        if self.buf.len() - self.end >= want {
            return;
        }
        if self.buf.len() < READ_BUFFER {
            // No buffer, or a small one of waiting bytes: read into a
            // full-size one.
            let mut read_buffer = pool::READ.with(pool::Pool::take);
            read_buffer.resize(read_buffer.len().max(READ_BUFFER), 0);
            read_buffer[..self.end - self.start].copy_from_slice(self.data());
            self.buf = read_buffer;
            self.end -= self.start;
            self.start = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let spare = self.buf.len() - self.end;
        if spare < want {
            let step = want.min(self.buf.len().max(MIN_GROWTH));
            if spare < step {
                self.buf.resize(self.end + step, 0);
            }
        }
    }
}

/// Where a payload lies: a range of the buffer given to
/// [`MessageReader::next`], or the reader's reassembly buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Buffered(Range<usize>),
    Reassembled,
}

/// Something the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Message {
        binary: bool,
        payload: Payload,
    },
    Ping(Range<usize>),
    Pong(Range<usize>),
    /// `code` is 1005 when the frame carried none.
    Close {
        code: u16,
        reason: Range<usize>,
    },
}

/// Why the connection must be failed, with the close code to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub text: String,
}

impl Violation {
    fn protocol(what: &str) -> Violation {
        Violation {
            code: 1002,
            text: format!("protocol error: {what}"),
        }
    }

    fn invalid_utf8(what: &str) -> Violation {
        Violation {
            code: 1007,
            text: format!("invalid UTF-8 in {what}"),
        }
    }

    fn too_big() -> Violation {
        Violation {
            code: 1009,
            text: "message exceeds max_message_size".into(),
        }
    }

    fn inflate(error: InflateError) -> Violation {
        match error {
            InflateError::TooBig => Violation::too_big(),
            InflateError::Corrupt(why) => Violation {
                code: 1007,
                text: format!("invalid compressed message: {why}"),
            },
        }
    }
}

/// Result of looking at the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Frame(Inbound),
    /// The next frame is incomplete: this many more bytes are needed.
    NeedMore(usize),
    Violation(Violation),
}

/// A message arriving in several frames, or compressed.
#[derive(Debug)]
struct Partial {
    binary: bool,
    /// Its frames are inflated as they arrive (permessage-deflate).
    compressed: bool,
    /// Compressed bytes received so far.
    compressed_len: usize,
    /// The payload so far.
    data: Vec<u8>,
    /// Text is checked as it arrives, so a bad fragment fails at once.
    utf8: Utf8Stream,
}

/// Reassembles fragmented messages, inflates compressed ones and checks
/// every frame against RFC 6455 and RFC 7692.
#[derive(Debug)]
pub struct MessageReader {
    role: Role,
    /// Largest message accepted; 0 means unlimited.
    max_message: usize,
    /// The message under way.
    partial: Option<Partial>,
    /// A reassembled message was handed out and must be dropped next time.
    partial_delivered: bool,
    /// permessage-deflate is in force.
    inflater: Option<Decompressor>,
    /// How much of an incomplete text frame was checked, and the UTF-8
    /// state after it.
    incomplete_text: Option<(usize, Utf8Stream)>,
}

impl MessageReader {
    pub fn new(role: Role, max_message: usize) -> MessageReader {
        MessageReader {
            role,
            max_message,
            partial: None,
            partial_delivered: false,
            inflater: None,
            incomplete_text: None,
        }
    }

    /// Accept compressed messages (RSV1) from now on.
    pub fn enable_inflation(&mut self, inflater: Decompressor) {
        self.inflater = Some(inflater);
    }

    /// Nothing more will be read: drop the inflater's state.
    pub fn disable_inflation(&mut self) {
        self.inflater = None;
    }

    fn over_limit(&self, size: u64) -> bool {
        self.max_message != 0 && size > self.max_message as u64
    }

    /// Compressed bytes a frame may carry: a little more than the limit,
    /// as incompressible data grows slightly under deflate.
    fn over_compressed_limit(&self, size: u64) -> bool {
        let max = self.max_message as u64;
        self.max_message != 0 && size > max + max / 8 + 64
    }

    /// The message completed by the last [`Payload::Reassembled`].
    pub fn reassembled(&self) -> &[u8] {
        self.partial.as_ref().map_or(&[], |p| &p.data)
    }

    /// Add a frame's payload to the partial message (inflated if it is
    /// compressed; on the last frame the stream is completed) and check
    /// the new text.
    fn append(&mut self, payload: &[u8], fin: bool) -> Result<(), Violation> {
        let partial = self.partial.as_mut().expect("a message is under way");
        let before = partial.data.len();
        match self.inflater.as_mut().filter(|_| partial.compressed) {
            Some(inflater) => {
                partial.compressed_len += payload.len();
                inflater
                    .inflate(payload, &mut partial.data, self.max_message)
                    .and_then(|()| match fin {
                        // An empty message is one 0x00 byte (RFC 7692
                        // §7.2.3.6), but some senders send nothing: then
                        // the trailer would leave the stream half-way.
                        true if partial.compressed_len == 0 => Ok(()),
                        true => inflater.finish_message(&mut partial.data, self.max_message),
                        false => Ok(()),
                    })
                    .map_err(Violation::inflate)?
            }
            None => partial.data.extend_from_slice(payload),
        }
        if !partial.binary && !partial.utf8.feed(&partial.data[before..], fin) {
            return Err(Violation::invalid_utf8("text message"));
        }
        Ok(())
    }

    /// Parse frames from `buf` until one yields an event.  Returns how many
    /// bytes of `buf` the caller must consume *after* it is done with the
    /// event (payloads stay in `buf`, unmasked in place).
    pub fn next(&mut self, buf: &mut [u8]) -> (usize, Step) {
        self.release_delivered();
        let mut pos = 0;
        loop {
            let (header, length, header_len) = match frame::decode_header(&buf[pos..]) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return (pos, Step::NeedMore(2)),
                Err(bad) => return (pos, Step::Violation(Violation::protocol(&bad.to_string()))),
            };
            if let Err(v) = self.check_header(&header, length) {
                return (pos, Step::Violation(v));
            }
            let available = buf.len() - pos - header_len;
            let start = pos + header_len;
            if (available as u64) < length {
                if let Err(v) = self.check_text_so_far(&header, &buf[start..]) {
                    return (pos, Step::Violation(v));
                }
                return (pos, Step::NeedMore((length - available as u64) as usize));
            }
            self.incomplete_text = None;
            let end = start + length as usize;
            if let Some(mask) = header.mask {
                frame::apply_mask(&mut buf[start..end], mask);
            }
            pos = end;
            let fin = header.is_final;
            match header.opcode {
                OpCode::Control(c) => {
                    let step = match c {
                        Control::Ping => Step::Frame(Inbound::Ping(start..end)),
                        Control::Pong => Step::Frame(Inbound::Pong(start..end)),
                        _ => close_step(&buf[start..end], start),
                    };
                    return (pos, step);
                }
                OpCode::Data(Data::Continue) => {
                    if self.partial.is_none() {
                        return (
                            pos,
                            Step::Violation(Violation::protocol(
                                "continuation frame without a message",
                            )),
                        );
                    }
                    if let Err(v) = self.append(&buf[start..end], fin) {
                        return (pos, Step::Violation(v));
                    }
                    if fin {
                        return (pos, self.reassembled_step());
                    }
                }
                OpCode::Data(kind) => {
                    let binary = kind == Data::Binary;
                    if fin && !header.rsv1 {
                        let payload = Payload::Buffered(start..end);
                        return (pos, message_step(binary, &buf[start..end], payload));
                    }
                    self.partial = Some(Partial {
                        binary,
                        compressed: header.rsv1,
                        compressed_len: 0,
                        data: Vec::new(),
                        utf8: Utf8Stream::default(),
                    });
                    if let Err(v) = self.append(&buf[start..end], fin) {
                        return (pos, Step::Violation(v));
                    }
                    if fin {
                        return (pos, self.reassembled_step());
                    }
                }
            }
        }
    }

    /// Free a reassembled message once it has been handed out.
    pub fn release_delivered(&mut self) {
        if self.partial_delivered {
            self.partial = None;
            self.partial_delivered = false;
        }
    }

    /// Check the part of an uncompressed text frame that has arrived, so
    /// that bad UTF-8 fails the connection at once rather than when the
    /// frame is complete.  Only the bytes new since the last call are
    /// looked at.
    fn check_text_so_far(&mut self, header: &FrameHeader, arrived: &[u8]) -> Result<(), Violation> {
        let message = match (header.opcode, &self.partial) {
            (OpCode::Data(Data::Text), _) if !header.rsv1 => Utf8Stream::default(),
            (OpCode::Data(Data::Continue), Some(p)) if !p.binary && !p.compressed => p.utf8,
            _ => return Ok(()),
        };
        let (checked, utf8) = self.incomplete_text.get_or_insert((0, message));
        if arrived.len() <= *checked {
            return Ok(());
        }
        let mut piece = arrived[*checked..].to_vec();
        if let Some(mask) = header.mask {
            // The mask continues where the checked bytes left it.
            let turn = *checked % 4;
            frame::apply_mask(&mut piece, std::array::from_fn(|i| mask[(i + turn) % 4]));
        }
        *checked = arrived.len();
        match utf8.feed(&piece, false) {
            true => Ok(()),
            false => Err(Violation::invalid_utf8("text message")),
        }
    }

    /// The partial message is complete (and its text checked): hand it
    /// out.
    fn reassembled_step(&mut self) -> Step {
        self.partial_delivered = true;
        let binary = self.partial.as_ref().is_some_and(|p| p.binary);
        Step::Frame(Inbound::Message {
            binary,
            payload: Payload::Reassembled,
        })
    }

    fn check_header(&self, header: &FrameHeader, length: u64) -> Result<(), Violation> {
        if header.rsv2 || header.rsv3 {
            return Err(Violation::protocol("reserved bits set"));
        }
        if header.rsv1 {
            // permessage-deflate marks the first frame of a message only.
            let first_data_frame = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
            if self.inflater.is_none() || !first_data_frame {
                return Err(Violation::protocol("reserved bits set"));
            }
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(Violation::protocol("unmasked frame from client")),
            (Role::Client, true) => return Err(Violation::protocol("masked frame from server")),
            _ => {}
        }
        match header.opcode {
            OpCode::Control(_) if !header.is_final => {
                Err(Violation::protocol("fragmented control frame"))
            }
            OpCode::Control(_) if length > frame::MAX_CONTROL_PAYLOAD as u64 => {
                Err(Violation::protocol("control frame payload over 125 bytes"))
            }
            OpCode::Data(Data::Continue) => match &self.partial {
                Some(p) if p.compressed && self.over_compressed_limit(length) => {
                    Err(Violation::too_big())
                }
                Some(p)
                    if !p.compressed
                        && self.over_limit((p.data.len() as u64).saturating_add(length)) =>
                {
                    Err(Violation::too_big())
                }
                _ => Ok(()),
            },
            OpCode::Data(_) if self.partial.is_some() => Err(Violation::protocol(
                "new message inside a fragmented message",
            )),
            OpCode::Data(_) if header.rsv1 && self.over_compressed_limit(length) => {
                Err(Violation::too_big())
            }
            OpCode::Data(_) if !header.rsv1 && self.over_limit(length) => Err(Violation::too_big()),
            _ => Ok(()),
        }
    }
}

/// A message that came whole in one uncompressed frame.
fn message_step(binary: bool, data: &[u8], payload: Payload) -> Step {
    if !binary && !utf8::is_valid(data) {
        return Step::Violation(Violation::invalid_utf8("text message"));
    }
    Step::Frame(Inbound::Message { binary, payload })
}

/// Check a close payload found at `offset` of the buffer.
fn close_step(payload: &[u8], offset: usize) -> Step {
    match payload {
        [] => Step::Frame(Inbound::Close {
            code: 1005,
            reason: offset..offset,
        }),
        [_] => Step::Violation(Violation::protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !frame::is_valid_close_code(code) {
                Step::Violation(Violation::protocol(&format!("invalid close code {code}")))
            } else if !utf8::is_valid(reason) {
                Step::Violation(Violation::invalid_utf8("close reason"))
            } else {
                let start = offset + 2;
                Step::Frame(Inbound::Close {
                    code,
                    reason: start..start + reason.len(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer in `role`'s opposite would send it.
    fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n < 65536 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut body = payload.to_vec();
        if masked {
            let mask = [9, 8, 7, 6];
            out.extend_from_slice(&mask);
            frame::apply_mask(&mut body, mask);
        }
        out.extend_from_slice(&body);
        out
    }

    /// The message text or control payload of a step, for comparisons.
    fn payload_of(r: &MessageReader, buf: &[u8], step: &Step) -> Vec<u8> {
        match step {
            Step::Frame(Inbound::Message {
                payload: Payload::Buffered(range),
                ..
            })
            | Step::Frame(Inbound::Ping(range))
            | Step::Frame(Inbound::Pong(range))
            | Step::Frame(Inbound::Close { reason: range, .. }) => buf[range.clone()].to_vec(),
            Step::Frame(Inbound::Message {
                payload: Payload::Reassembled,
                ..
            }) => r.reassembled().to_vec(),
            other => panic!("no payload: {other:?}"),
        }
    }

    fn first_step(reader: &mut MessageReader, bytes: &[u8]) -> (usize, String) {
        let mut buf = bytes.to_vec();
        let (n, step) = reader.next(&mut buf);
        (n, format!("{step:?}"))
    }

    #[test]
    fn single_frames_both_roles() {
        let mut server = MessageReader::new(Role::Server, 0);
        let mut buf = frame(0x81, b"hello", true);
        let (n, step) = server.next(&mut buf);
        assert_eq!(
            step,
            Step::Frame(Inbound::Message {
                binary: false,
                payload: Payload::Buffered(6..11)
            })
        );
        assert_eq!(payload_of(&server, &buf, &step), b"hello");
        assert_eq!(n, 11);
        let mut client = MessageReader::new(Role::Client, 0);
        let mut buf = frame(0x82, &[0, 255], false);
        let (_, step) = client.next(&mut buf);
        assert_eq!(payload_of(&client, &buf, &step), [0, 255]);
    }

    #[test]
    fn reassembles_with_interleaved_control() {
        let mut r = MessageReader::new(Role::Client, 0);
        let mut bytes = frame(0x01, b"ab", false);
        bytes.extend(frame(0x89, b"p", false));
        bytes.extend(frame(0x80, b"cd", false));
        let mut buf = bytes.clone();
        let (n, step) = r.next(&mut buf);
        assert_eq!(payload_of(&r, &buf, &step), b"p");
        let mut rest = buf[n..].to_vec();
        let (m, step) = r.next(&mut rest);
        assert_eq!(
            step,
            Step::Frame(Inbound::Message {
                binary: false,
                payload: Payload::Reassembled
            })
        );
        assert_eq!(payload_of(&r, &rest, &step), b"abcd");
        assert_eq!(n + m, bytes.len());
    }

    #[test]
    fn incomplete_frames_ask_for_more() {
        let mut r = MessageReader::new(Role::Client, 0);
        let whole = frame(0x82, &[7; 300], false);
        assert_eq!(first_step(&mut r, &whole[..1]), (0, "NeedMore(2)".into()));
        assert_eq!(
            first_step(&mut r, &whole[..100]),
            (0, "NeedMore(204)".into())
        );
    }

    #[test]
    fn violations() {
        let code = |role, bytes: Vec<u8>, max| {
            let mut r = MessageReader::new(role, max);
            let mut buf = bytes;
            match r.next(&mut buf).1 {
                Step::Violation(v) => v.code,
                other => panic!("no violation: {other:?}"),
            }
        };
        assert_eq!(code(Role::Server, frame(0x81, b"x", false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x81, b"x", true), 0), 1002);
        assert_eq!(code(Role::Client, frame(0xC1, b"x", false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x83, b"x", false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x80, b"x", false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x09, b"x", false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x89, &[0; 126], false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x88, &[3, 0xed], false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x88, &[3], false), 0), 1002);
        assert_eq!(code(Role::Client, frame(0x81, &[0xff], false), 0), 1007);
        assert_eq!(
            code(Role::Client, frame(0x88, &[3, 0xe8, 0xff], false), 0),
            1007
        );
        assert_eq!(code(Role::Client, frame(0x82, &[0; 11], false), 10), 1009);
        let mut two = frame(0x01, b"a", false);
        two.extend(frame(0x01, b"b", false));
        let mut r = MessageReader::new(Role::Client, 0);
        assert!(matches!(
            r.next(&mut two).1,
            Step::Violation(Violation { code: 1002, .. })
        ));
        // The declared length alone trips the limit, before any payload.
        let mut header_only = frame(0x82, &[0; 200], false);
        header_only.truncate(4);
        assert_eq!(code(Role::Client, header_only, 100), 1009);
    }

    #[test]
    fn bad_text_fails_at_the_fragment_that_breaks_it() {
        let mut r = MessageReader::new(Role::Client, 0);
        let mut buf = frame(0x01, b"ok \xce", false);
        assert!(
            matches!(r.next(&mut buf).1, Step::NeedMore(2)),
            "a cut character may follow"
        );
        let mut buf = frame(0x00, b"\xbaok \xf4\x90", false);
        let (_, step) = r.next(&mut buf);
        assert!(
            matches!(step, Step::Violation(Violation { code: 1007, .. })),
            "U+110000 and up fails before the message ends: {step:?}"
        );
    }

    #[test]
    fn bad_text_fails_before_its_frame_is_complete() {
        // Autobahn 6.4.3: "κόσμε", then U+110000 encoded, then "edited".
        let text = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
        let whole = frame(0x81, text, true);
        let mut r = MessageReader::new(Role::Server, 0);
        // Header and mask, then 12 bytes: up to the 0xf4 that may still
        // start a character.
        for cut in [5, 9, 13, 18] {
            let mut part = whole[..cut].to_vec();
            assert!(
                matches!(r.next(&mut part).1, Step::NeedMore(_)),
                "cut at {cut}"
            );
        }
        let mut part = whole[..19].to_vec();
        assert!(matches!(
            r.next(&mut part).1,
            Step::Violation(Violation { code: 1007, .. })
        ));
        // Good text cut anywhere is fine.
        let good = frame(0x81, "κόσμε".as_bytes(), true);
        let mut r = MessageReader::new(Role::Server, 0);
        for cut in 2..good.len() {
            let mut part = good[..cut].to_vec();
            assert!(
                matches!(r.next(&mut part).1, Step::NeedMore(_)),
                "cut at {cut}"
            );
        }
        let mut all = good.clone();
        assert!(matches!(r.next(&mut all).1, Step::Frame(_)));
    }

    #[test]
    fn exactly_the_limit_passes() {
        let mut r = MessageReader::new(Role::Client, 10);
        let mut buf = frame(0x02, &[1; 5], false);
        buf.extend(frame(0x80, &[2; 5], false));
        assert!(matches!(
            r.next(&mut buf).1,
            Step::Frame(Inbound::Message { .. })
        ));
    }

    #[test]
    fn close_frames() {
        let mut r = MessageReader::new(Role::Client, 0);
        let mut buf = frame(0x88, &[], false);
        assert_eq!(
            r.next(&mut buf).1,
            Step::Frame(Inbound::Close {
                code: 1005,
                reason: 2..2
            })
        );
        let mut buf = frame(0x88, b"\x0f\xa1bye", false);
        let step = r.next(&mut buf).1;
        assert!(matches!(
            step,
            Step::Frame(Inbound::Close { code: 4001, .. })
        ));
        assert_eq!(payload_of(&r, &buf, &step), b"bye");
    }

    #[test]
    fn inbuf_grows_in_steps_and_compacts() {
        let mut b = InBuf::default();
        let mut src: &[u8] = &[1; 10_000];
        assert_eq!(b.read_from(&mut src, 1_000_000).unwrap(), 10_000);
        assert!(b.buf.len() <= READ_BUFFER.max(MIN_GROWTH));
        b.consume(9_000);
        b.extend(&[2; 10]);
        assert_eq!(b.data().len(), 1_010);
        b.consume(1_010);
        assert!(b.is_empty());
        let mut big: &[u8] = &[3; 3 * READ_BUFFER];
        b.read_from(&mut big, 3 * READ_BUFFER).unwrap();
        assert!(
            b.buf.len() <= READ_BUFFER + MIN_GROWTH,
            "one growth step at a time"
        );
    }

    #[test]
    fn waiting_bytes_keep_a_small_buffer() {
        let mut b = InBuf::default();
        let mut src: &[u8] = &[1; 5_000];
        b.read_from(&mut src, 2).unwrap();
        assert_eq!(b.buf.len(), READ_BUFFER);
        b.consume(4_990);
        b.settle();
        assert_eq!((b.buf.len(), b.data()), (WAITING_STEP, &[1u8; 10][..]));
        let mut rest: &[u8] = &[2; 20_000];
        assert_eq!(
            b.read_from(&mut rest, 2).unwrap(),
            20_000,
            "reads are full-size again"
        );
        assert_eq!(&b.data()[..11], &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
        b.consume(3_000);
        b.settle();
        assert_eq!(b.buf.len(), READ_BUFFER, "a large remainder stays");
        b.consume(8_000);
        b.settle();
        assert_eq!((b.buf.len(), b.data().len()), (3 * WAITING_STEP, 9_010));
    }
}
