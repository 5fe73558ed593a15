//! What a publish puts on a Redis channel: an envelope, so that a process
//! can skip its own messages when Redis echoes them back, and so that text
//! and binary messages stay apart.
//!
//! Layout: the 4 bytes `"\0EWS"`, the version byte `1`, the kind (`t` for
//! text, `b` for binary), the origin (8 bytes, the publishing context's
//! random id, big-endian), then the message.  A payload that does not
//! start so (another publisher's raw message) is a text message if it is
//! valid UTF-8, else a binary one; so is an enveloped "text" message that
//! is not UTF-8 (a peer must never get an invalid text frame).

use crate::protocol::utf8;

const MAGIC: &[u8; 5] = b"\0EWS\x01";
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 8;

/// One message as it came from a channel.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// `None`: a raw payload, without an envelope.
    pub origin: Option<u64>,
    pub binary: bool,
    pub data: &'a [u8],
}

/// Append the envelope's header for a message from `origin`; the caller
/// appends the message itself.
pub fn encode_header(origin: u64, binary: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.push(if binary { b'b' } else { b't' });
    out.extend_from_slice(&origin.to_be_bytes());
}

pub fn decode(payload: &[u8]) -> Decoded<'_> {
    let enveloped = payload.len() >= HEADER_LEN
        && payload.starts_with(MAGIC)
        && matches!(payload[MAGIC.len()], b't' | b'b');
    if !enveloped {
        return Decoded {
            origin: None,
            binary: !utf8::is_valid(payload),
            data: payload,
        };
    }
    let origin = u64::from_be_bytes(payload[MAGIC.len() + 1..HEADER_LEN].try_into().unwrap());
    let data = &payload[HEADER_LEN..];
    Decoded {
        origin: Some(origin),
        binary: payload[MAGIC.len()] == b'b' || !utf8::is_valid(data),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(origin: u64, binary: bool, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_header(origin, binary, &mut v);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn round_trip() {
        let v = envelope(0x0102_0304_0506_0708, false, "héllo".as_bytes());
        assert_eq!(
            &v[..HEADER_LEN],
            b"\0EWS\x01t\x01\x02\x03\x04\x05\x06\x07\x08"
        );
        let d = decode(&v);
        assert_eq!(d.origin, Some(0x0102_0304_0506_0708));
        assert!(!d.binary);
        assert_eq!(d.data, "héllo".as_bytes());
        let v = envelope(7, true, &[0xff, 0]);
        assert_eq!(
            decode(&v),
            Decoded {
                origin: Some(7),
                binary: true,
                data: &[0xff, 0]
            }
        );
        assert_eq!(decode(&envelope(7, false, b"")).data, b"");
    }

    #[test]
    fn raw_payloads_are_text_when_utf8() {
        assert_eq!(
            decode(b"plain"),
            Decoded {
                origin: None,
                binary: false,
                data: b"plain"
            }
        );
        assert!(decode(&[0xc3, 0x28]).binary);
        // too short, or an unknown kind or version: raw
        assert_eq!(decode(b"\0EWS\x01t").origin, None);
        let mut v = envelope(1, false, b"x");
        v[5] = b'z';
        assert_eq!(decode(&v).origin, None);
    }

    #[test]
    fn enveloped_text_that_is_not_utf8_arrives_as_binary() {
        let v = envelope(1, false, &[0xff]);
        let d = decode(&v);
        assert!(d.binary && d.origin == Some(1));
    }
}
