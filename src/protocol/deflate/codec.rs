//! Compressing and inflating message payloads (RFC 7692 §7.2).
//!
//! A direction without context takeover holds no zlib state between
//! messages: it borrows a stream from a per-thread spare for the length of
//! one message.  A direction with context takeover either keeps its whole
//! stream, allocated when it first compresses or inflates
//! ([`Context::Stream`]), or keeps only the last window of the data it
//! sent or received ([`Context::Window`]): each message then borrows a
//! spare stream and primes it with that window as its dictionary, which
//! lets the compressor refer back to earlier messages just as a kept
//! stream would.  zlib-rs's deflate state is about 130 KB whatever its
//! window and memory level (its hash table has 65536 entries); a window is
//! 2^window_bits bytes.

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

/// What one direction keeps between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Nothing: no context takeover.
    None,
    /// Its zlib stream.
    Stream,
    /// The last 2^window_bits bytes of its messages.
    Window,
}

thread_local! {
    /// Spare compressors by window bits (index 0: the 8-bit window) and
    /// memory level (index 0: level 1).
    static SPARE_DEFLATE: RefCell<[[Option<Box<Deflate>>; 9]; 8]> =
        const { RefCell::new([const { [const { None }; 9] }; 8]) };
    /// A spare inflater (always with the largest window).
    static SPARE_INFLATE: RefCell<Option<Box<Inflate>>> = const { RefCell::new(None) };
}

fn new_deflate(window_bits: u8, mem_level: u8) -> Box<Deflate> {
    // zlib cannot keep a raw stream within a 256-byte window; Huffman
    // coding alone refers to no earlier bytes, so it fits any window.
    let (bits, strategy) = match window_bits {
        8 => (9, Strategy::HuffmanOnly),
        bits => (bits, Strategy::Default),
    };
    Box::new(Deflate::new_with_config(DeflateConfig {
        level: LEVEL,
        window_bits: -i32::from(bits),
        mem_level: i32::from(mem_level),
        strategy,
        ..DeflateConfig::default()
    }))
}

/// One direction's zlib use: a [`Compressor`] or a [`Decompressor`].
pub struct Codec<S> {
    window_bits: u8,
    mem_level: u8,
    context: Context,
    /// The stream, while a message is under way or context is kept.
    stream: Option<Box<S>>,
    /// [`Context::Window`]: the last bytes of the messages so far.
    window: Vec<u8>,
}

impl<S> std::fmt::Debug for Codec<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("window_bits", &self.window_bits)
            .field("context", &self.context)
            .field("active", &self.stream.is_some())
            .finish()
    }
}

/// What we send, compressed.
pub type Compressor = Codec<Deflate>;

/// What we receive, inflated.
pub type Decompressor = Codec<Inflate>;

impl<S> Codec<S> {
    /// [`Context::Window`]: add `data`, the message's next bytes, to the
    /// window kept for the next message.
    fn remember(&mut self, data: &[u8]) {
        if self.context != Context::Window {
            return;
        }
        let size = 1usize << self.window_bits;
        if data.len() >= size {
            self.window.clear();
            self.window.extend_from_slice(&data[data.len() - size..]);
        } else {
            let excess = (self.window.len() + data.len()).saturating_sub(size);
            self.window.drain(..excess);
            if self.window.capacity() == 0 {
                self.window.reserve_exact(size);
            }
            self.window.extend_from_slice(data);
        }
    }

    /// The stream is given back after each message.
    fn borrows(&self) -> bool {
        self.context != Context::Stream
    }

    /// Whether zlib state is held now.
    #[cfg(test)]
    pub fn is_active(&self) -> bool {
        self.stream.is_some()
    }
}

impl Compressor {
    pub fn new(window_bits: u8, mem_level: u8, context: Context) -> Compressor {
        Compressor {
            window_bits: window_bits.clamp(8, MAX_WINDOW_BITS),
            mem_level: mem_level.clamp(1, 9),
            context,
            stream: None,
            window: Vec::new(),
        }
    }

    /// Append `data`, compressed, to `out`: one message, or one fragment of
    /// a message (`fin` on the last).  The fragments' outputs together are
    /// the message's compressed payload.
    pub fn compress(&mut self, data: &[u8], fin: bool, out: &mut Vec<u8>) {
        let (bits, mem) = (self.window_bits, self.mem_level);
        let stream = match &mut self.stream {
            Some(stream) => stream,
            none => {
                let mut stream = SPARE_DEFLATE
                    .with(|s| s.borrow_mut()[usize::from(bits - 8)][usize::from(mem - 1)].take())
                    .unwrap_or_else(|| new_deflate(bits, mem));
                if !self.window.is_empty() {
                    let primed = stream.set_dictionary(&self.window);
                    debug_assert!(primed.is_ok(), "deflate dictionary: {primed:?}");
                }
                none.insert(stream)
            }
        };
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
        self.remember(data);
        if fin {
            if out[start..].ends_with(&TRAILER) {
                out.truncate(out.len() - TRAILER.len());
            } else if out.len() == start {
                // Nothing new since the last flush: the receiver's trailer
                // still needs a block header before it (§7.2.3.6).
                out.push(0x00);
            }
            if self.borrows() {
                self.release();
            }
        }
    }

    /// Without context takeover, the window bits and memory level of its
    /// fresh streams: its output for a whole message is what any
    /// compressor with that window makes, and may be shared.
    pub fn fresh_params(&self) -> Option<(u8, u8)> {
        (self.context == Context::None).then_some((self.window_bits, self.mem_level))
    }

    /// A message was abandoned half-way: forget its stream.
    pub fn release(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            stream.reset();
            let (bits, mem) = (
                usize::from(self.window_bits - 8),
                usize::from(self.mem_level - 1),
            );
            SPARE_DEFLATE.with(|s| {
                s.borrow_mut()[bits][mem].get_or_insert(stream);
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
    pub fn new(window_bits: u8, context: Context) -> Decompressor {
        Decompressor {
            // zlib inflates with 9 bits at least; a larger window than the
            // sender's is always fine.
            window_bits: window_bits.clamp(9, MAX_WINDOW_BITS),
            mem_level: 0,
            context,
            stream: None,
            window: Vec::new(),
        }
    }

    /// Inflate one frame's payload onto `out`, which holds the message's
    /// output so far (empty at its first frame).  `limit` (0: none) bounds
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
        self.remember(out);
        if self.borrows()
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
        let bits = match self.context {
            Context::Stream => self.window_bits,
            _ => MAX_WINDOW_BITS,
        };
        let stream = match &mut self.stream {
            Some(stream) => stream,
            none => {
                let mut stream = SPARE_INFLATE
                    .with(|s| s.borrow_mut().take())
                    .filter(|_| bits == MAX_WINDOW_BITS)
                    .unwrap_or_else(|| Box::new(Inflate::new(false, bits)));
                if !self.window.is_empty() {
                    let primed = stream.set_dictionary(&self.window);
                    debug_assert!(primed.is_ok(), "inflate dictionary: {primed:?}");
                }
                none.insert(stream)
            }
        };
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
        let context = if keep_context {
            Context::Stream
        } else {
            Context::None
        };
        let mut c = Compressor::new(window_bits, 8, context);
        let mut d = Decompressor::new(window_bits, context);
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
        let mut c = Compressor::new(15, 8, Context::None);
        let mut wire = Vec::new();
        c.compress(b"hello ", false, &mut wire);
        let first = wire.len();
        c.compress(b"", false, &mut wire);
        c.compress(b"hello world", true, &mut wire);
        let mut d = Decompressor::new(15, Context::None);
        let mut back = Vec::new();
        d.inflate(&wire[..first], &mut back, 0).unwrap();
        d.inflate(&wire[first..], &mut back, 0).unwrap();
        d.finish_message(&mut back, 0).unwrap();
        assert_eq!(back, b"hello hello world");
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let mut c = Compressor::new(15, 8, Context::None);
        let mut bomb = Vec::new();
        c.compress(&vec![0; 10 << 20], true, &mut bomb);
        assert!(bomb.len() < 20_000);
        let mut d = Decompressor::new(15, Context::None);
        let mut out = Vec::new();
        assert_eq!(
            d.inflate(&bomb, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() < 2 << 20, "grew to {}", out.capacity());
        // Exactly the limit passes.
        let mut d = Decompressor::new(15, Context::None);
        let mut out = Vec::new();
        d.inflate(&bomb, &mut out, 10 << 20).unwrap();
        d.finish_message(&mut out, 10 << 20).unwrap();
        assert_eq!(out.len(), 10 << 20);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut d = Decompressor::new(15, Context::None);
        let err = d.inflate(&[0xff, 0xff, 0xff], &mut Vec::new(), 0);
        assert!(matches!(err, Err(InflateError::Corrupt(_))), "{err:?}");
        assert!(d.stream.is_none());
    }

    #[test]
    fn a_final_block_ends_the_stream_cleanly() {
        // "abc" as a fixed-Huffman block with BFINAL set, as some peers send.
        let mut d = Decompressor::new(15, Context::Stream);
        let mut out = Vec::new();
        d.inflate(&[0x4b, 0x4c, 0x4a, 0x06, 0x00], &mut out, 0)
            .unwrap();
        d.finish_message(&mut out, 0).unwrap();
        assert_eq!(out, b"abc");
    }

    /// Compress `messages` with `sender` and inflate them with `receiver`;
    /// the compressed sizes.
    fn exchange(
        sender: &mut Compressor,
        receiver: &mut Decompressor,
        messages: &[Vec<u8>],
    ) -> Vec<usize> {
        let mut sizes = Vec::new();
        for m in messages {
            let mut wire = Vec::new();
            // Two fragments, so that the window spans them.
            let half = m.len() / 2;
            sender.compress(&m[..half], false, &mut wire);
            sender.compress(&m[half..], true, &mut wire);
            sizes.push(wire.len());
            let mut back = Vec::new();
            receiver.inflate(&wire, &mut back, 0).unwrap();
            receiver.finish_message(&mut back, 0).unwrap();
            assert!(back == *m, "message of {} bytes", m.len());
        }
        sizes
    }

    #[test]
    fn a_kept_window_is_as_good_as_a_kept_stream() {
        let record = |i: usize| format!("{{\"id\":{i},\"type\":\"trade\",\"price\":\"101.25\"}}");
        let mut messages: Vec<Vec<u8>> = (0..20).map(|i| record(i).into_bytes()).collect();
        // Past every window, and random bytes that no window helps with.
        messages.push(record(7).repeat(2000).into_bytes());
        let mut seed = 1u32;
        messages.push(
            (0..70_000)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect(),
        );
        messages.extend((20..40).map(|i| record(i).into_bytes()));
        for (bits, mem) in [(9, 1), (9, 2), (12, 5), (14, 7), (15, 8), (15, 1)] {
            let mut kept = Compressor::new(bits, mem, Context::Stream);
            let mut window = Compressor::new(bits, mem, Context::Window);
            let mut fresh = Compressor::new(bits, mem, Context::None);
            // Every pairing of what the two sides keep works.
            let stream_sizes = exchange(
                &mut kept,
                &mut Decompressor::new(bits, Context::Window),
                &messages,
            );
            let window_sizes = exchange(
                &mut window,
                &mut Decompressor::new(bits, Context::Stream),
                &messages,
            );
            let mut receiver = Decompressor::new(bits, Context::Window);
            exchange(
                &mut Compressor::new(bits, mem, Context::Window),
                &mut receiver,
                &messages,
            );
            let fresh_sizes = exchange(
                &mut fresh,
                &mut Decompressor::new(bits, Context::None),
                &messages,
            );
            assert!(
                !window.is_active() && !receiver.is_active(),
                "only the window is kept"
            );
            assert!(kept.is_active());
            assert!(window.window.len() == 1 << bits && window.window.capacity() <= 1 << bits);
            assert!(receiver.window.len() == 1 << bits && receiver.window.capacity() <= 1 << bits);
            // Later messages refer to earlier ones: as small as with the
            // kept stream (within a few bytes), much smaller than alone.
            let (k, w, f) = (stream_sizes[30], window_sizes[30], fresh_sizes[30]);
            assert!(
                w <= k + 4 && w * 2 < f,
                "{bits}/{mem}: kept {k}, window {w}, fresh {f}"
            );
        }
    }
}
