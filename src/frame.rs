//! Frame-level helpers shared by both directions.

pub use tungstenite::protocol::frame::FrameHeader;
pub use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

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
    fn close_codes() {
        for ok in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
