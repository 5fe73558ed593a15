//! A message prepared once for many connections (publish's fan-out): its
//! payload, its frame as an unmasked sender queues it, and its compressed
//! payloads, each made at most once per window size.

use crate::protocol::deflate::{self, Compressor, Context};
use crate::protocol::frame::{self, Data, OpCode};

/// One message for many recipients.
#[derive(Debug)]
pub struct Prepared {
    binary: bool,
    payload: Vec<u8>,
    /// The whole uncompressed frame, unmasked: what a server queues.
    frame: Vec<u8>,
    /// Compressed payloads (without context), by window bits.
    compressed: Vec<(u8, Vec<u8>)>,
}

impl Prepared {
    /// `data` as one text (`binary` false: the caller checked its UTF-8)
    /// or binary message.
    pub fn new(binary: bool, data: &[u8]) -> Prepared {
        let header = frame::header(Prepared::opcode_of(binary), true);
        let (head, head_len) = frame::encode_header(&header, data.len() as u64);
        let mut encoded = Vec::with_capacity(head_len + data.len());
        encoded.extend_from_slice(&head[..head_len]);
        encoded.extend_from_slice(data);
        Prepared {
            binary,
            payload: data.to_vec(),
            frame: encoded,
            compressed: Vec::new(),
        }
    }

    fn opcode_of(binary: bool) -> OpCode {
        OpCode::Data(if binary { Data::Binary } else { Data::Text })
    }

    pub fn opcode(&self) -> OpCode {
        Prepared::opcode_of(self.binary)
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The encoded frame, unmasked and uncompressed.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Big enough that a compressing recipient compresses it.
    pub fn compressible(&self) -> bool {
        self.payload.len() >= deflate::MIN_COMPRESSED_SIZE
    }

    /// The payload compressed by a fresh stream with `window_bits` and
    /// `mem_level` (a recipient without context takeover on our side):
    /// made by the first such recipient, reused by the others with the
    /// same window.
    pub fn compressed(&mut self, window_bits: u8, mem_level: u8) -> &[u8] {
        let i = match self.compressed.iter().position(|(b, _)| *b == window_bits) {
            Some(i) => i,
            None => {
                let mut out = Vec::new();
                Compressor::new(window_bits, mem_level, Context::None).compress(
                    &self.payload,
                    true,
                    &mut out,
                );
                self.compressed.push((window_bits, out));
                self.compressed.len() - 1
            }
        };
        &self.compressed[i].1
    }

    /// How many compressed payloads were made.
    pub fn compressions(&self) -> usize {
        self.compressed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::outbound::Outbound;

    #[test]
    fn frame_is_what_a_server_send_queues() {
        for (binary, len) in [(false, 5), (true, 200), (true, 70_000), (false, 0)] {
            let data = vec![b'a'; len];
            let p = Prepared::new(binary, &data);
            let mut out = Outbound::new(false);
            out.push_frame(p.opcode(), true, &data, true);
            let mut queued = Vec::new();
            out.write_to(&mut queued).unwrap();
            assert_eq!(p.frame(), queued.as_slice());
        }
    }

    #[test]
    fn compressed_once_per_window() {
        let data = b"hello hello hello hello hello hello hello hello".repeat(4);
        let mut p = Prepared::new(false, &data);
        let first = p.compressed(15, 8).to_vec();
        assert_eq!(p.compressed(15, 8), first.as_slice());
        assert_eq!(p.compressions(), 1);
        p.compressed(10, 8);
        assert_eq!(p.compressions(), 2);
        let mut fresh = Compressor::new(15, 8, Context::None);
        let mut expect = Vec::new();
        fresh.compress(&data, true, &mut expect);
        assert_eq!(first, expect);
        assert!(first.len() < data.len());
    }
}
