//! Frame-level helpers shared by both directions.

pub use tungstenite::protocol::frame::FrameHeader;
pub use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Which end of the connection we are: it decides the masking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Close codes a peer may put on the wire and `close()` accepts
/// (RFC 6455 §7.4 plus the registered 1012-1014).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The header of an unmasked frame without extension bits.
pub fn header(opcode: OpCode, fin: bool) -> FrameHeader {
    FrameHeader {
        is_final: fin,
        opcode,
        ..FrameHeader::default()
    }
}

/// Longest frame header: 2 bytes, a 64-bit length, a mask.
pub const MAX_HEADER: usize = 14;

/// Encode `header` for a payload of `length` bytes (RFC 6455 §5.2).
/// Returns the buffer and how many of its bytes are the header.
pub fn encode_header(header: &FrameHeader, length: u64) -> ([u8; MAX_HEADER], usize) {
    let mut out = [0u8; MAX_HEADER];
    out[0] = u8::from(header.opcode)
        | u8::from(header.is_final) << 7
        | u8::from(header.rsv1) << 6
        | u8::from(header.rsv2) << 5
        | u8::from(header.rsv3) << 4;
    let masked = u8::from(header.mask.is_some()) << 7;
    let mut n = match length {
        0..=125 => {
            out[1] = masked | length as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = masked | 126;
            out[2..4].copy_from_slice(&(length as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = masked | 127;
            out[2..10].copy_from_slice(&length.to_be_bytes());
            10
        }
    };
    if let Some(mask) = header.mask {
        out[n..n + 4].copy_from_slice(&mask);
        n += 4;
    }
    (out, n)
}

/// What makes a frame header invalid.
#[derive(Debug, PartialEq, Eq)]
pub enum BadHeader {
    /// An opcode RFC 6455 reserves.
    Opcode(u8),
    /// A 64-bit length with its most significant bit set (RFC 6455 §5.2).
    Length,
}

impl std::fmt::Display for BadHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadHeader::Opcode(code) => write!(f, "unknown opcode {code}"),
            BadHeader::Length => f.write_str("frame length over 2^63"),
        }
    }
}

/// A frame header at the start of `buf`, with its payload length and its
/// own size; `Ok(None)` until all of it has arrived.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, u64, usize)>, BadHeader> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let (length, mut n) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => match u64::from_be_bytes(b.try_into().expect("8 bytes")) {
                long if long >> 63 != 0 => return Err(BadHeader::Length),
                long => (long, 10),
            },
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let mask = match second & 0x80 {
        0 => None,
        _ => match buf.get(n..n + 4) {
            Some(b) => {
                n += 4;
                Some([b[0], b[1], b[2], b[3]])
            }
            None => return Ok(None),
        },
    };
    let opcode = OpCode::from(first & 0x0F);
    if let OpCode::Data(Data::Reserved(code)) | OpCode::Control(Control::Reserved(code)) = opcode {
        return Err(BadHeader::Opcode(code));
    }
    let header = FrameHeader {
        is_final: first & 0x80 != 0,
        rsv1: first & 0x40 != 0,
        rsv2: first & 0x20 != 0,
        rsv3: first & 0x10 != 0,
        opcode,
        mask,
    };
    Ok(Some((header, length, n)))
}

/// Longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// XOR `buf` with the 4-byte `mask` (masking and unmasking alike).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_roundtrip_any_length() {
        let mask = [1, 2, 3, 4];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut buf = data.clone();
            apply_mask(&mut buf, mask);
            for (i, (a, b)) in buf.iter().zip(&data).enumerate() {
                assert_eq!(*a, b ^ mask[i % 4]);
            }
            apply_mask(&mut buf, mask);
            assert_eq!(buf, data);
        }
    }

    #[test]
    fn headers_round_trip() {
        let mut header = FrameHeader {
            rsv1: true,
            ..header(OpCode::Data(Data::Binary), false)
        };
        for mask in [None, Some([9, 8, 7, 6])] {
            header.mask = mask;
            for length in [0, 1, 125, 126, 0xFFFF, 0x1_0000, u64::MAX >> 1] {
                let (bytes, n) = encode_header(&header, length);
                assert_eq!(n, header.len(length));
                let mut tungstenite = Vec::new();
                header.format(length, &mut tungstenite).unwrap();
                assert_eq!(&bytes[..n], &tungstenite[..], "length {length}");
                for cut in 0..n {
                    assert_eq!(decode_header(&bytes[..cut]), Ok(None));
                }
                assert_eq!(
                    decode_header(&bytes[..n]),
                    Ok(Some((header.clone(), length, n)))
                );
            }
        }
        assert_eq!(decode_header(&[0x83, 0]), Err(BadHeader::Opcode(3)));
        assert_eq!(decode_header(&[0x8B, 0]), Err(BadHeader::Opcode(11)));
        let huge = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 5];
        assert_eq!(decode_header(&huge), Err(BadHeader::Length));
    }

    #[test]
    fn close_codes() {
        for ok in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
