//! The permessage-deflate handshake (RFC 7692 §5, §7.1): the client's
//! offer, the server's choice among offers, and the client's check of the
//! answer.

use std::fmt::Write;

/// The name of the extension.
const NAME: &str = "permessage-deflate";

/// What our client offers: it will not keep context between messages (so
/// it holds no compressor between sends), and the server may limit its
/// window.
pub const CLIENT_OFFER: &str =
    "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// The largest LZ77 window, and the default of both directions.
pub const MAX_WINDOW_BITS: u8 = 15;

/// Parameters in force on a connection (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with (8-15).
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with (8-15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// One element of a `Sec-WebSocket-Extensions` list.
#[derive(Debug, PartialEq, Eq)]
struct Extension {
    name: String,
    /// Parameter names (lowercase) and values, quotes removed.
    params: Vec<(String, Option<String>)>,
}

/// Split header values into extensions.  Commas and semicolons inside
/// quoted strings do not separate.
fn parse_list<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<Extension> {
    let mut list = Vec::new();
    for value in values {
        let text = String::from_utf8_lossy(value);
        for element in split_unquoted(&text, ',') {
            let mut parts = split_unquoted(element, ';').into_iter();
            let name = parts.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let params = parts
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(unquote(v.trim()))),
                    None => (p.trim().to_ascii_lowercase(), None),
                })
                .collect();
            list.push(Extension {
                name: name.to_ascii_lowercase(),
                params,
            });
        }
    }
    list
}

fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

/// A window size value: 8 to 15, in decimal without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if !value.starts_with('0') && !value.starts_with('+') => Some(bits),
        _ => None,
    }
}

/// What one direction's `*_max_window_bits` parameter says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowBits {
    /// Given without a value (only valid for client_max_window_bits in an
    /// offer).
    Bare,
    Limit(u8),
}

/// The parameters of one permessage-deflate element, checked: each at
/// most once, known names, valid values.
#[derive(Debug, Default)]
struct Checked {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<WindowBits>,
    client_max_window_bits: Option<WindowBits>,
}

fn check_params(params: &[(String, Option<String>)]) -> Result<Checked, String> {
    let mut checked = Checked::default();
    for (name, value) in params {
        let flag = |seen: bool| match (seen, value) {
            (true, _) => Err(format!("'{name}' given twice")),
            (false, Some(_)) => Err(format!("'{name}' takes no value")),
            (false, None) => Ok(true),
        };
        let bits = |seen: Option<WindowBits>| match (seen, value.as_deref()) {
            (Some(_), _) => Err(format!("'{name}' given twice")),
            (None, None) => Ok(Some(WindowBits::Bare)),
            (None, Some(v)) => window_bits(v)
                .map(|b| Some(WindowBits::Limit(b)))
                .ok_or_else(|| format!("'{name}={v}' is not 8 to 15")),
        };
        match name.as_str() {
            "server_no_context_takeover" => {
                checked.server_no_context_takeover = flag(checked.server_no_context_takeover)?
            }
            "client_no_context_takeover" => {
                checked.client_no_context_takeover = flag(checked.client_no_context_takeover)?
            }
            "server_max_window_bits" => {
                checked.server_max_window_bits = bits(checked.server_max_window_bits)?;
                if checked.server_max_window_bits == Some(WindowBits::Bare) {
                    return Err("'server_max_window_bits' needs a value".into());
                }
            }
            "client_max_window_bits" => {
                checked.client_max_window_bits = bits(checked.client_max_window_bits)?
            }
            other => return Err(format!("unknown parameter '{other}'")),
        }
    }
    Ok(checked)
}

fn limit(bits: Option<WindowBits>) -> u8 {
    match bits {
        Some(WindowBits::Limit(b)) => b,
        _ => MAX_WINDOW_BITS,
    }
}

/// Client: check the server's `Sec-WebSocket-Extensions` answer.  `offered`
/// says whether we sent [`CLIENT_OFFER`].  Errors are `on_error` texts.
pub fn read_answer<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    offered: bool,
) -> Result<Option<DeflateParams>, String> {
    let list = parse_list(values);
    let mut accepted = None;
    for ext in &list {
        if ext.name != NAME || !offered {
            return Err(
                "handshake failed: server accepted an extension that was not offered".into(),
            );
        }
        if accepted.is_some() {
            return Err("handshake failed: server accepted permessage-deflate twice".into());
        }
        let checked = check_params(&ext.params)
            .map_err(|e| format!("handshake failed: bad permessage-deflate answer: {e}"))?;
        if checked.client_max_window_bits == Some(WindowBits::Bare) {
            return Err(
                "handshake failed: bad permessage-deflate answer: 'client_max_window_bits' needs a value"
                    .into(),
            );
        }
        accepted = Some(DeflateParams {
            server_no_context_takeover: checked.server_no_context_takeover,
            // We offered not to keep context, whatever the server says.
            client_no_context_takeover: true,
            server_max_window_bits: limit(checked.server_max_window_bits),
            client_max_window_bits: limit(checked.client_max_window_bits),
        });
    }
    Ok(accepted)
}

/// Server: choose the first acceptable permessage-deflate offer.  Returns
/// the parameters in force and the answer's header value.  Offers with
/// parameters we do not know or that are malformed are declined (§5).
/// Without `context_takeover` both sides are told to compress each message
/// on its own (§7.1.1), so that no zlib state outlives a message.
pub fn choose_offer<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    context_takeover: bool,
) -> Option<(DeflateParams, String)> {
    parse_list(values)
        .iter()
        .filter(|ext| ext.name == NAME)
        .find_map(|ext| check_params(&ext.params).ok())
        .map(|offer| {
            let mut answer = String::from(NAME);
            let params = DeflateParams {
                server_no_context_takeover: offer.server_no_context_takeover || !context_takeover,
                client_no_context_takeover: offer.client_no_context_takeover || !context_takeover,
                server_max_window_bits: limit(offer.server_max_window_bits),
                client_max_window_bits: limit(offer.client_max_window_bits),
            };
            if params.server_no_context_takeover {
                answer.push_str("; server_no_context_takeover");
            }
            if params.client_no_context_takeover {
                answer.push_str("; client_no_context_takeover");
            }
            if offer.server_max_window_bits.is_some() {
                let _ = write!(
                    answer,
                    "; server_max_window_bits={}",
                    params.server_max_window_bits
                );
            }
            (params, answer)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<Option<DeflateParams>, String> {
        read_answer(std::iter::once(text.as_bytes()), true)
    }

    fn choose(text: &str) -> Option<(DeflateParams, String)> {
        choose_offer(std::iter::once(text.as_bytes()), true)
    }

    #[test]
    fn client_reads_answers() {
        assert_eq!(answer(""), Ok(None));
        let p = answer("permessage-deflate").unwrap().unwrap();
        assert_eq!(
            p,
            DeflateParams {
                client_no_context_takeover: true,
                ..DeflateParams::default()
            }
        );
        let p = answer(
            "Permessage-Deflate; server_no_context_takeover; server_max_window_bits=\"9\"; client_max_window_bits=8",
        )
        .unwrap()
        .unwrap();
        assert!(p.server_no_context_takeover);
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (9, 8));
    }

    #[test]
    fn client_refuses_bad_answers() {
        let refused = |text: &str| answer(text).unwrap_err();
        assert!(refused("x-webkit-deflate-frame").contains("not offered"));
        assert!(refused("permessage-deflate, permessage-deflate").contains("twice"));
        assert!(refused("permessage-deflate; server_max_window_bits=16").contains("8 to 15"));
        assert!(refused("permessage-deflate; server_max_window_bits=08").contains("8 to 15"));
        assert!(refused("permessage-deflate; server_max_window_bits").contains("value"));
        assert!(refused("permessage-deflate; client_max_window_bits").contains("value"));
        assert!(refused("permessage-deflate; mystery").contains("unknown"));
        assert!(
            refused("permessage-deflate; server_no_context_takeover; server_no_context_takeover")
                .contains("twice")
        );
        assert!(refused("permessage-deflate; client_no_context_takeover=1").contains("no value"));
        let not_offered = read_answer(std::iter::once(&b"permessage-deflate"[..]), false);
        assert!(not_offered.unwrap_err().contains("not offered"));
    }

    #[test]
    fn server_chooses_first_acceptable_offer() {
        assert_eq!(choose("x-other; a=1"), None);
        let (p, a) = choose(CLIENT_OFFER).unwrap();
        assert_eq!(a, "permessage-deflate; client_no_context_takeover");
        assert!(p.client_no_context_takeover && !p.server_no_context_takeover);
        let (p, a) = choose(
            "permessage-deflate; bogus, permessage-deflate; server_no_context_takeover; server_max_window_bits=8, permessage-deflate",
        )
        .unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
        );
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (8, 15)
        );
        let (p, _) = choose("permessage-deflate; client_max_window_bits=10").unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        let two_headers = [&b"foo"[..], &b"permessage-deflate"[..]];
        assert!(choose_offer(two_headers.into_iter(), true).is_some());
    }

    #[test]
    fn server_without_context_takeover() {
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=12";
        let (p, a) = choose_offer(std::iter::once(offer.as_bytes()), false).unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
        );
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    }
}
