//! What the user sends: data frames (compressed when negotiated, in
//! fragments when asked), pings and pongs, and the close frame that starts
//! the closing handshake.

use super::{Admit, Deadline, Session};
use crate::connection::{Connection, Phase};
use crate::protocol::deflate;
use crate::protocol::frame::{self, Control, Data, FrameHeader, OpCode};
use crate::protocol::outbound::Outbound;
use crate::protocol::pool;
use crate::protocol::prepared::Prepared;
use crate::protocol::utf8::{self, Utf8Stream};

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    NotOpen,
    FragmentInProgress,
    InvalidUtf8,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "Connection is not open",
            SendError::FragmentInProgress => {
                "Cannot send while a fragmented message is in progress; finish the fragment with send_fragment(..., is_final => 1) first"
            }
            SendError::InvalidUtf8 => "send: text message is not valid UTF-8 (use send_binary for bytes)",
        })
    }
}

/// What a `send*` call queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Text,
    Binary,
    Ping,
    Pong,
    Fragment { binary: bool, fin: bool },
}

/// The close code and reason of `close_on_backpressure_limit`.
pub(crate) const BACKPRESSURE_CLOSE_CODE: u16 = 1008;
pub(crate) const BACKPRESSURE_CLOSE_REASON: &[u8] = b"backpressure limit exceeded";

/// A fragmented message we are sending.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutgoingFragments {
    binary: bool,
    /// Its fragments are parts of one deflate stream.
    compressed: bool,
    utf8: Utf8Stream,
}

impl Session {
    /// Whether a data message of `len` payload bytes may join the send
    /// queue `out`: it may unless it would take the queued payload
    /// ([`Outbound::queued_payload`]) past `max_backpressure`, even on an
    /// empty queue.  A refusal counts as a dropped message.  The one check
    /// of the limit: every sender of a data message asks it first (for a
    /// fragmented message, before its first fragment only); control frames
    /// never do.
    pub(crate) fn admit(&mut self, out: &Outbound, len: usize) -> Admit {
        if self.max_backpressure == 0
            || out.queued_payload().saturating_add(len) <= self.max_backpressure
        {
            return Admit::Queue;
        }
        self.dropped += 1;
        if self.close_on_backpressure_limit {
            Admit::Close
        } else {
            Admit::Drop
        }
    }

    /// How many messages [`Session::admit`] refused.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Queue what the user sends; `Ok(false)`: the backpressure limit
    /// refused it (`Admit::Close`: the caller starts closing).
    #[inline]
    pub(super) fn send(
        &mut self,
        out: &mut Outbound,
        kind: SendKind,
        data: &[u8],
    ) -> Result<Admit, SendError> {
        if self.close_sent {
            return Err(SendError::NotOpen);
        }
        let data_opcode = |binary| OpCode::Data(if binary { Data::Binary } else { Data::Text });
        match kind {
            SendKind::Text | SendKind::Binary => {
                if self.sending_fragments.is_some() {
                    return Err(SendError::FragmentInProgress);
                }
                let binary = kind == SendKind::Binary;
                if !binary && !utf8::is_valid(data) {
                    return Err(SendError::InvalidUtf8);
                }
                let verdict = self.admit(out, data.len());
                if verdict != Admit::Queue {
                    return Ok(verdict);
                }
                let compressed =
                    self.deflater.is_some() && data.len() >= deflate::MIN_COMPRESSED_SIZE;
                self.queue_data(out, data_opcode(binary), true, data, compressed, true);
            }
            SendKind::Ping | SendKind::Pong => {
                let control = if kind == SendKind::Ping {
                    Control::Ping
                } else {
                    Control::Pong
                };
                let cut = data.len().min(frame::MAX_CONTROL_PAYLOAD);
                out.push_frame(OpCode::Control(control), true, &data[..cut], true);
            }
            SendKind::Fragment { binary, fin } => {
                let message = self.sending_fragments.unwrap_or(OutgoingFragments {
                    binary,
                    // Unless this is the whole message, its size is unknown.
                    compressed: self.deflater.is_some()
                        && (!fin || data.len() >= deflate::MIN_COMPRESSED_SIZE),
                    utf8: Utf8Stream::default(),
                });
                let opcode = match self.sending_fragments {
                    Some(_) => OpCode::Data(Data::Continue),
                    None => data_opcode(binary),
                };
                let mut utf8 = message.utf8;
                if !message.binary && !utf8.feed(data, fin) {
                    return Err(SendError::InvalidUtf8);
                }
                // A started message is always finished.
                if self.sending_fragments.is_none() {
                    let verdict = self.admit(out, data.len());
                    if verdict != Admit::Queue {
                        return Ok(verdict);
                    }
                }
                self.sending_fragments = (!fin).then_some(OutgoingFragments { utf8, ..message });
                self.queue_data(out, opcode, fin, data, message.compressed, true);
            }
        }
        self.drain_armed = self.drain_wanted;
        self.active();
        Ok(Admit::Queue)
    }

    /// Queue a data frame, compressed when asked.  The first frame of a
    /// compressed message carries RSV1 (RFC 7692 §6).
    fn queue_data(
        &mut self,
        out: &mut Outbound,
        opcode: OpCode,
        fin: bool,
        data: &[u8],
        compressed: bool,
        counted: bool,
    ) {
        let Some(deflater) = self.deflater.as_mut().filter(|_| compressed) else {
            return out.push_frame(opcode, fin, data, counted);
        };
        let mut payload = pool::SCRATCH.with(pool::Pool::take);
        payload.clear();
        deflater.compress(data, fin, &mut payload);
        let header = FrameHeader {
            rsv1: opcode != OpCode::Data(Data::Continue),
            ..frame::header(opcode, fin)
        };
        out.push(header, &payload, counted);
        pool::SCRATCH.with(|p| p.give(payload));
    }

    /// Queue a prepared message (publish's fan-out) as this session sends
    /// it: the shared frame as it is on an unmasked uncompressed session,
    /// the shared compressed payload without context takeover, compressed
    /// by its own stream with it, masked by its own key on a client.
    /// Not queued (`Admit::Drop`, not counted) once closing or while a
    /// fragmented message of ours is under way; over the backpressure
    /// limit, [`Session::admit`]'s verdict.
    pub(super) fn queue_prepared(&mut self, out: &mut Outbound, msg: &mut Prepared) -> Admit {
        if self.close_sent || self.sending_fragments.is_some() {
            return Admit::Drop;
        }
        match self.admit(out, msg.payload().len()) {
            Admit::Queue => {}
            refused => return refused,
        }
        let opcode = msg.opcode();
        match self.deflater.as_mut().filter(|_| msg.compressible()) {
            None if out.masked() => out.push_frame(opcode, true, msg.payload(), true),
            None => out.push_encoded(msg.frame(), msg.payload().len()),
            Some(deflater) => {
                let header = FrameHeader {
                    rsv1: true,
                    ..frame::header(opcode, true)
                };
                match deflater.fresh_params() {
                    Some((bits, mem)) => out.push(header, msg.compressed(bits, mem), true),
                    None => {
                        let mut payload = pool::SCRATCH.with(pool::Pool::take);
                        payload.clear();
                        deflater.compress(msg.payload(), true, &mut payload);
                        out.push(header, &payload, true);
                        pool::SCRATCH.with(|p| p.give(payload));
                    }
                }
            }
        }
        self.drain_armed = self.drain_wanted;
        Admit::Queue
    }

    /// A fragmented message we send ends unfinished: the connection is
    /// closing.
    pub(super) fn abandon_fragments(&mut self) {
        self.sending_fragments = None;
        if let Some(deflater) = self.deflater.as_mut() {
            deflater.release();
        }
    }

    /// Start the closing handshake with `code` (checked by the caller); a
    /// no-op once closing.
    pub(super) fn close(
        &mut self,
        out: &mut Outbound,
        deadline: &mut Deadline,
        code: u16,
        reason: &[u8],
    ) {
        if self.close_sent {
            return;
        }
        if let Some(message) = self.sending_fragments.take() {
            let continuation = OpCode::Data(Data::Continue);
            self.queue_data(out, continuation, true, &[], message.compressed, false);
        }
        out.push_close(Some(code), cut_reason(reason));
        self.close_sent = true;
        // The peer's close frame must be read (RFC 6455 §7.1.1): a paused
        // connection resumes; what comes before it is still delivered.
        self.set_paused(false, deadline);
        deadline.set(Some(self.close_timeout));
    }
}

/// The user's calls on the open session.
impl Connection {
    /// Queue what the user sends: `Ok(true)` when queued, `Ok(false)`
    /// when the backpressure limit dropped it (and, with
    /// `close_on_backpressure_limit`, the connection started closing).
    pub fn send(&mut self, kind: SendKind, data: &[u8]) -> Result<bool, SendError> {
        if !matches!(self.phase, Phase::Session) {
            return Err(SendError::NotOpen);
        }
        let admit = self.session.send(&mut self.link.out, kind, data)?;
        Ok(self.admitted(admit))
    }

    /// Whether [`Session::admit`] let the message in; with `Admit::Close`
    /// the connection starts closing (1008).
    fn admitted(&mut self, admit: Admit) -> bool {
        match admit {
            Admit::Queue => true,
            Admit::Drop => false,
            Admit::Close => {
                self.session.close(
                    &mut self.link.out,
                    &mut self.deadline,
                    BACKPRESSURE_CLOSE_CODE,
                    BACKPRESSURE_CLOSE_REASON,
                );
                false
            }
        }
    }

    /// How many messages the backpressure limit dropped.
    pub fn dropped_messages(&self) -> u64 {
        self.session.dropped()
    }

    /// Queue one recipient's copy of a published message; false (nothing
    /// queued) unless the connection is open and not closing.  Publish's
    /// one per-recipient step.
    /// A subscriber over its backpressure limit is skipped (and counts a
    /// dropped message, or closes with `close_on_backpressure_limit`).
    pub fn queue_prepared(&mut self, msg: &mut Prepared) -> bool {
        match self.phase {
            Phase::Session => {
                let admit = self.session.queue_prepared(&mut self.link.out, msg);
                self.admitted(admit)
            }
            _ => false,
        }
    }

    /// Start the closing handshake.  The code is checked in every state;
    /// then it is a no-op unless the connection is open.
    pub fn close(&mut self, code: f64, reason: &[u8]) -> Result<(), String> {
        let code = check_close_args(code, reason)?;
        if let Phase::Session = self.phase {
            self.session
                .close(&mut self.link.out, &mut self.deadline, code, reason);
        }
        Ok(())
    }
}

/// The arguments of `close()` checked (in any state), or the croak text.
/// The code is a number as Perl gave it: NaN, an infinity or a fraction
/// is as invalid as an out-of-range integer, and is shown as given.
pub fn check_close_args(code: f64, reason: &[u8]) -> Result<u16, String> {
    let code = Some(code)
        .filter(|c| c.fract() == 0.0 && (0.0..=65535.0).contains(c))
        .map(|c| c as u16)
        .filter(|c| frame::is_valid_close_code(*c))
        .ok_or_else(|| {
            format!(
                "close: invalid close code {code} (RFC 6455 allows 1000-1003, 1007-1014, 3000-4999)"
            )
        })?;
    if !utf8::is_valid(reason) {
        return Err("close: reason is not valid UTF-8".into());
    }
    Ok(code)
}

/// A close reason cut to the 123 bytes a close frame holds, on a character
/// boundary.
pub(super) fn cut_reason(reason: &[u8]) -> &[u8] {
    const MAX: usize = frame::MAX_CONTROL_PAYLOAD - 2;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    // Step back over UTF-8 continuation bytes (10xxxxxx).
    while end > 0 && reason[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_cut_on_char_boundary() {
        let reason = "é".repeat(70); // 140 bytes
        let cut = cut_reason(reason.as_bytes());
        assert_eq!(cut.len(), 122);
        assert!(std::str::from_utf8(cut).is_ok());
    }
}
