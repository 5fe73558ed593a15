//! Compressing and inflating message payloads (RFC 7692 §7.2).
//!
//! A direction without context takeover holds no zlib state between
//! messages: it borrows a stream from a per-thread spare for the length of
//! one message.  A direction with context takeover allocates its stream
//! when it first compresses or inflates, and keeps it.

use std::cell::RefCell;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status, Strategy};

use super::negotiate::MAX_WINDOW_BITS;

/// The empty stored block a sync flush ends with: the sender strips it
/// from the end of each message, the receiver puts it back (§7.2.1-2).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib's default trade between speed and size.
const LEVEL: i32 = 6;

/// Output one zlib call may add at most: an inflated message grows by
/// steps as bytes really come out, never by what the peer claims.
const MAX_STEP: usize = 256 * 1024;

thread_local! {
    /// Spare compressors by window bits (index 0: the 8-bit window).
    static SPARE_DEFLATE: RefCell<[Option<Box<Deflate>>; 8]> = const { RefCell::new([const { None }; 8]) };
    /// A spare inflater (always with the largest window).
    static SPARE_INFLATE: RefCell<Option<Box<Inflate>>> = const { RefCell::new(None) };
}

fn new_deflate(window_bits: u8) -> Box<Deflate> {
    // zlib cannot keep a raw stream within a 256-byte window; Huffman
    // coding alone refers to no earlier bytes, so it fits any window.
    let (bits, strategy) = match window_bits {
        8 => (9, Strategy::HuffmanOnly),
        bits => (bits, Strategy::Default),
    };
    Box::new(Deflate::new_with_config(DeflateConfig {
        level: LEVEL,
        window_bits: -i32::from(bits),
        strategy,
        ..DeflateConfig::default()
    }))
}

/// One direction's zlib use: a [`Compressor`] or a [`Decompressor`].
pub struct Codec<S> {
    window_bits: u8,
    keep_context: bool,
    /// The stream, while a message is under way or context is kept.
    stream: Option<Box<S>>,
}

impl<S> std::fmt::Debug for Codec<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("window_bits", &self.window_bits)
            .field("keep_context", &self.keep_context)
            .field("active", &self.stream.is_some())
            .finish()
    }
}

/// What we send, compressed.
pub type Compressor = Codec<Deflate>;

/// What we receive, inflated.
pub type Decompressor = Codec<Inflate>;

impl Compressor {
    pub fn new(window_bits: u8, keep_context: bool) -> Compressor {
        Compressor {
            window_bits: window_bits.clamp(8, MAX_WINDOW_BITS),
            keep_context,
            stream: None,
        }
    }

    /// Append `data`, compressed, to `out`: one message, or one fragment of
    /// a message (`fin` on the last).  The fragments' outputs together are
    /// the message's compressed payload.
    pub fn compress(&mut self, data: &[u8], fin: bool, out: &mut Vec<u8>) {
        let bits = self.window_bits;
        let stream = self.stream.get_or_insert_with(|| {
            SPARE_DEFLATE
                .with(|s| s.borrow_mut()[usize::from(bits - 8)].take())
                .unwrap_or_else(|| new_deflate(bits))
        });
        let start = out.len();
        let mut input = data;
        loop {
            let len = out.len();
            let room = (input.len() / 2).clamp(64, MAX_STEP);
            out.resize(len + room, 0);
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let status = stream.compress(input, &mut out[len..], DeflateFlush::SyncFlush);
            let consumed = (stream.total_in() - in_before) as usize;
            let produced = (stream.total_out() - out_before) as usize;
            out.truncate(len + produced);
            input = &input[consumed..];
            // A sync flush is complete once it leaves output room unused;
            // an error or no progress cannot happen on a healthy stream.
            if produced < room || status.is_err() || status == Ok(Status::BufError) {
                debug_assert!(status.is_ok(), "deflate: {status:?}");
                break;
            }
        }
        if fin {
            if out[start..].ends_with(&TRAILER) {
                out.truncate(out.len() - TRAILER.len());
            } else if out.len() == start {
                // Nothing new since the last flush: the receiver's trailer
                // still needs a block header before it (§7.2.3.6).
                out.push(0x00);
            }
            if !self.keep_context {
                self.release();
            }
        }
    }

    /// Whether zlib state is held now.
    #[cfg(test)]
    pub fn is_active(&self) -> bool {
        self.stream.is_some()
    }

    /// A message was abandoned half-way: forget its stream.
    pub fn release(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            stream.reset();
            let slot = usize::from(self.window_bits - 8);
            SPARE_DEFLATE.with(|s| {
                s.borrow_mut()[slot].get_or_insert(stream);
            });
        }
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the size limit.
    TooBig,
    /// It is not a valid DEFLATE stream.
    Corrupt(String),
}

impl Decompressor {
    pub fn new(window_bits: u8, keep_context: bool) -> Decompressor {
        Decompressor {
            // zlib inflates with 9 bits at least; a larger window than the
            // sender's is always fine.
            window_bits: window_bits.clamp(9, MAX_WINDOW_BITS),
            keep_context,
            stream: None,
        }
    }

    /// Inflate one frame's payload onto `out`.  `limit` (0: none) bounds
    /// the whole of `out`; output is allocated only as it is produced.
    pub fn inflate(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        if data.is_empty() {
            return Ok(());
        }
        let result = self.run(data, out, limit);
        if result.is_err() {
            // The stream is in an unknown state: never reuse it.
            self.stream = None;
        }
        result
    }

    /// The message's last frame was inflated: add the trailer and, without
    /// context takeover, give the stream back.
    pub fn finish_message(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate(&TRAILER, out, limit)?;
        if !self.keep_context
            && let Some(mut stream) = self.stream.take()
        {
            stream.reset(false);
            SPARE_INFLATE.with(|s| {
                s.borrow_mut().get_or_insert(stream);
            });
        }
        Ok(())
    }

    fn run(&mut self, data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let bits = if self.keep_context {
            self.window_bits
        } else {
            MAX_WINDOW_BITS
        };
        let stream = self.stream.get_or_insert_with(|| {
            SPARE_INFLATE
                .with(|s| s.borrow_mut().take())
                .filter(|_| bits == MAX_WINDOW_BITS)
                .unwrap_or_else(|| Box::new(Inflate::new(false, bits)))
        });
        let mut input = data;
        loop {
            let len = out.len();
            let step = input.len().saturating_mul(4).clamp(4096, MAX_STEP);
            // One byte past the limit is enough to know it is exceeded.
            let room = match limit {
                0 => step,
                limit => step.min((limit + 1).saturating_sub(len)),
            };
            out.resize(len + room, 0);
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let status = stream.decompress(input, &mut out[len..], InflateFlush::SyncFlush);
            let consumed = (stream.total_in() - in_before) as usize;
            let produced = (stream.total_out() - out_before) as usize;
            out.truncate(len + produced);
            input = &input[consumed..];
            if limit != 0 && out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                Err(e) => {
                    let text = stream.error_message().unwrap_or(e.as_str());
                    return Err(InflateError::Corrupt(text.to_string()));
                }
                // A final block ended the stream; what follows starts anew.
                Ok(Status::StreamEnd) => stream.reset(false),
                // No progress is possible: everything is out.
                Ok(_) if consumed == 0 && produced == 0 => break,
                Ok(_) if input.is_empty() && produced < room => break,
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(window_bits: u8, keep_context: bool, messages: &[&[u8]]) -> Vec<usize> {
        let mut c = Compressor::new(window_bits, keep_context);
        let mut d = Decompressor::new(window_bits, keep_context);
        let mut sizes = Vec::new();
        for m in messages {
            let mut wire = Vec::new();
            c.compress(m, true, &mut wire);
            sizes.push(wire.len());
            let mut back = Vec::new();
            d.inflate(&wire, &mut back, 0).unwrap_or_else(|e| {
                panic!("{window_bits} {keep_context} {} {wire:x?}: {e:?}", m.len())
            });
            d.finish_message(&mut back, 0).unwrap();
            assert_eq!(&back, m);
        }
        assert_eq!(c.stream.is_some(), keep_context);
        assert_eq!(d.stream.is_some(), keep_context);
        sizes
    }

    #[test]
    fn every_window_and_context_mode() {
        let text = b"{\"type\":\"trade\",\"price\":\"101.25\",\"qty\":\"3\"}".repeat(40);
        for bits in 8..=15 {
            for keep in [false, true] {
                let sizes = roundtrip(bits, keep, &[&text, &text, b"", b"x", &[0; 70_000]]);
                // Huffman coding alone (8 bits) still saves a third.
                let bound = if bits == 8 {
                    2 * text.len() / 3
                } else {
                    text.len() / 4
                };
                assert!(sizes[0] < bound, "bits {bits}: {sizes:?}");
                if keep && bits > 8 {
                    assert!(sizes[1] < sizes[0], "context helps: {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn fragments_form_one_stream() {
        let mut c = Compressor::new(15, false);
        let mut wire = Vec::new();
        c.compress(b"hello ", false, &mut wire);
        let first = wire.len();
        c.compress(b"", false, &mut wire);
        c.compress(b"hello world", true, &mut wire);
        let mut d = Decompressor::new(15, false);
        let mut back = Vec::new();
        d.inflate(&wire[..first], &mut back, 0).unwrap();
        d.inflate(&wire[first..], &mut back, 0).unwrap();
        d.finish_message(&mut back, 0).unwrap();
        assert_eq!(back, b"hello hello world");
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let mut c = Compressor::new(15, false);
        let mut bomb = Vec::new();
        c.compress(&vec![0; 10 << 20], true, &mut bomb);
        assert!(bomb.len() < 20_000);
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            d.inflate(&bomb, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() < 2 << 20, "grew to {}", out.capacity());
        // Exactly the limit passes.
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        d.inflate(&bomb, &mut out, 10 << 20).unwrap();
        d.finish_message(&mut out, 10 << 20).unwrap();
        assert_eq!(out.len(), 10 << 20);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut d = Decompressor::new(15, false);
        let err = d.inflate(&[0xff, 0xff, 0xff], &mut Vec::new(), 0);
        assert!(matches!(err, Err(InflateError::Corrupt(_))), "{err:?}");
        assert!(d.stream.is_none());
    }

    #[test]
    fn a_final_block_ends_the_stream_cleanly() {
        // "abc" as a fixed-Huffman block with BFINAL set, as some peers send.
        let mut d = Decompressor::new(15, true);
        let mut out = Vec::new();
        d.inflate(&[0x4b, 0x4c, 0x4a, 0x06, 0x00], &mut out, 0)
            .unwrap();
        d.finish_message(&mut out, 0).unwrap();
        assert_eq!(out, b"abc");
    }
}
