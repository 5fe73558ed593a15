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

/// zlib's default memory level (1-9): with it or above, a direction that
/// keeps context keeps its whole zlib stream; below, only its window.
pub const DEFAULT_MEM_LEVEL: u8 = 8;

/// How much zlib state one side is willing to use: the LZ77 window it
/// compresses and inflates with (2^window_bits bytes), and deflate's
/// memory level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub window_bits: u8,
    pub mem_level: u8,
}

impl Default for Memory {
    fn default() -> Memory {
        Memory {
            window_bits: MAX_WINDOW_BITS,
            mem_level: DEFAULT_MEM_LEVEL,
        }
    }
}

/// A `compression` setting: its memory, and whether context is kept
/// between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub memory: Memory,
    pub context_takeover: bool,
}

const fn dedicated(window_bits: u8, mem_level: u8) -> Settings {
    Settings {
        memory: Memory {
            window_bits,
            mem_level,
        },
        context_takeover: true,
    }
}

/// The named settings (uWebSockets' names): `shared` keeps no context;
/// each `dedicated_*` keeps it, with the window and memory level that give
/// zlib's deflate that size (2^(window_bits+2) + 2^(mem_level+9) bytes).
pub const PRESETS: &[(&str, Settings)] = &[
    (
        "shared",
        Settings {
            memory: Memory {
                window_bits: MAX_WINDOW_BITS,
                mem_level: DEFAULT_MEM_LEVEL,
            },
            context_takeover: false,
        },
    ),
    ("dedicated_3kb", dedicated(9, 1)),
    ("dedicated_4kb", dedicated(9, 2)),
    ("dedicated_8kb", dedicated(10, 3)),
    ("dedicated_16kb", dedicated(11, 4)),
    ("dedicated_32kb", dedicated(12, 5)),
    ("dedicated_64kb", dedicated(13, 6)),
    ("dedicated_128kb", dedicated(14, 7)),
    ("dedicated_256kb", dedicated(15, 8)),
];

/// The settings named `name`.
pub fn preset(name: &str) -> Option<Settings> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|&(_, s)| s)
}

/// What our client offers (connect's `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub memory: Memory,
    /// We keep our compression context between messages.
    pub keep_context: bool,
    /// The server may keep its own (else we ask it not to).
    pub server_may_keep_context: bool,
}

impl Default for Offer {
    /// `compression => 1`: [`CLIENT_OFFER`].
    fn default() -> Offer {
        Offer {
            memory: Memory::default(),
            keep_context: false,
            server_may_keep_context: true,
        }
    }
}

impl From<Settings> for Offer {
    fn from(s: Settings) -> Offer {
        Offer {
            memory: s.memory,
            keep_context: s.context_takeover,
            server_may_keep_context: s.context_takeover,
        }
    }
}

impl Offer {
    /// The largest window the server may compress with: ours, unless it
    /// is the largest anyway.
    fn server_window(&self) -> Option<u8> {
        (self.memory.window_bits < MAX_WINDOW_BITS).then_some(self.memory.window_bits)
    }

    /// The `Sec-WebSocket-Extensions` value of the offer.
    pub fn header(&self) -> String {
        let mut offer = String::from(NAME);
        if !self.server_may_keep_context {
            offer.push_str("; server_no_context_takeover");
        }
        if !self.keep_context {
            offer.push_str("; client_no_context_takeover");
        }
        offer.push_str("; client_max_window_bits");
        if let Some(bits) = self.server_window() {
            // Our window is a hint the server may hold us to (§7.1.2.2),
            // and the limit of what we inflate.
            let _ = write!(offer, "={bits}; server_max_window_bits={bits}");
        }
        offer
    }
}

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
    /// Our own deflate memory level (not negotiated).
    pub mem_level: u8,
}

impl Default for DeflateParams {
    fn default() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            mem_level: DEFAULT_MEM_LEVEL,
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

/// Client: check the server's `Sec-WebSocket-Extensions` answer to
/// `offer` (`None`: we offered nothing).  Errors are `on_error` texts.
pub fn read_answer<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    offer: Option<&Offer>,
) -> Result<Option<DeflateParams>, String> {
    let list = parse_list(values);
    let mut accepted = None;
    for ext in &list {
        let Some(offer) = offer.filter(|_| ext.name == NAME) else {
            return Err(
                "handshake failed: server accepted an extension that was not offered".into(),
            );
        };
        if accepted.is_some() {
            return Err("handshake failed: server accepted permessage-deflate twice".into());
        }
        let bad = |e: &str| format!("handshake failed: bad permessage-deflate answer: {e}");
        let checked = check_params(&ext.params).map_err(|e| bad(&e))?;
        if checked.client_max_window_bits == Some(WindowBits::Bare) {
            return Err(bad("'client_max_window_bits' needs a value"));
        }
        // Accepting an offer means accepting each of its limits (§7.1.1.1,
        // §7.1.2.1).
        if !offer.server_may_keep_context && !checked.server_no_context_takeover {
            return Err(bad("'server_no_context_takeover' was asked for"));
        }
        if let Some(bits) = offer.server_window() {
            match checked.server_max_window_bits {
                Some(WindowBits::Limit(b)) if b <= bits => {}
                _ => {
                    return Err(bad(&format!(
                        "'server_max_window_bits' must be at most {bits}"
                    )));
                }
            }
        }
        accepted = Some(DeflateParams {
            server_no_context_takeover: checked.server_no_context_takeover,
            client_no_context_takeover: checked.client_no_context_takeover || !offer.keep_context,
            server_max_window_bits: limit(checked.server_max_window_bits),
            // We may always use a smaller window than allowed.
            client_max_window_bits: limit(checked.client_max_window_bits)
                .min(offer.memory.window_bits),
            mem_level: offer.memory.mem_level,
        });
    }
    Ok(accepted)
}

/// Server: choose the first acceptable permessage-deflate offer.  Returns
/// the parameters in force and the answer's header value.  Offers with
/// parameters we do not know or that are malformed are declined (§5).
/// Without `context_takeover` both sides are told to compress each message
/// on its own (§7.1.1), so that no zlib state outlives a message.  A
/// window smaller than the largest is asked of the client only when its
/// offer says it can honour it (`client_max_window_bits`); else we inflate
/// with the largest.
pub fn choose_offer<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    context_takeover: bool,
    memory: Memory,
) -> Option<(DeflateParams, String)> {
    parse_list(values)
        .iter()
        .filter(|ext| ext.name == NAME)
        .find_map(|ext| check_params(&ext.params).ok())
        .map(|offer| {
            let mut answer = String::from(NAME);
            let ours = memory.window_bits.min(MAX_WINDOW_BITS);
            // Only an answered limit binds the client (§7.1.2.2): with the
            // largest window of our own we answer none, whatever the hint.
            let client_max_window_bits = match offer.client_max_window_bits {
                Some(hint) if ours < MAX_WINDOW_BITS => limit(Some(hint)).min(ours),
                _ => MAX_WINDOW_BITS,
            };
            let params = DeflateParams {
                server_no_context_takeover: offer.server_no_context_takeover || !context_takeover,
                client_no_context_takeover: offer.client_no_context_takeover || !context_takeover,
                server_max_window_bits: limit(offer.server_max_window_bits).min(ours),
                client_max_window_bits,
                mem_level: memory.mem_level,
            };
            if params.server_no_context_takeover {
                answer.push_str("; server_no_context_takeover");
            }
            if params.client_no_context_takeover {
                answer.push_str("; client_no_context_takeover");
            }
            if offer.server_max_window_bits.is_some()
                || params.server_max_window_bits < MAX_WINDOW_BITS
            {
                let _ = write!(
                    answer,
                    "; server_max_window_bits={}",
                    params.server_max_window_bits
                );
            }
            if client_max_window_bits < MAX_WINDOW_BITS {
                let _ = write!(answer, "; client_max_window_bits={client_max_window_bits}");
            }
            (params, answer)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<Option<DeflateParams>, String> {
        read_answer(std::iter::once(text.as_bytes()), Some(&Offer::default()))
    }

    fn choose(text: &str) -> Option<(DeflateParams, String)> {
        choose_offer(std::iter::once(text.as_bytes()), true, Memory::default())
    }

    /// The server's answer with `preset`'s settings to `offer`.
    fn answer_with(preset_name: &str, offer: &str) -> Option<(DeflateParams, String)> {
        let s = preset(preset_name).unwrap();
        choose_offer(
            std::iter::once(offer.as_bytes()),
            s.context_takeover,
            s.memory,
        )
    }

    fn client_offer(preset_name: &str) -> Offer {
        Offer::from(preset(preset_name).unwrap())
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
        let not_offered = read_answer(std::iter::once(&b"permessage-deflate"[..]), None);
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
        // An unanswered hint does not bind the client: we inflate with the
        // largest window.
        let (p, a) = choose("permessage-deflate; client_max_window_bits=10").unwrap();
        assert_eq!(
            (p.client_max_window_bits, a.as_str()),
            (15, "permessage-deflate")
        );
        let two_headers = [&b"foo"[..], &b"permessage-deflate"[..]];
        assert!(choose_offer(two_headers.into_iter(), true, Memory::default()).is_some());
    }

    #[test]
    fn server_without_context_takeover() {
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=12";
        let (p, a) =
            choose_offer(std::iter::once(offer.as_bytes()), false, Memory::default()).unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
        );
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    }

    #[test]
    fn presets_have_the_sizes_of_their_names() {
        assert_eq!(Offer::default().header(), CLIENT_OFFER);
        assert!(preset("dedicated_1kb").is_none());
        for &(name, s) in PRESETS {
            let m = s.memory;
            assert!((9..=15).contains(&m.window_bits) && (1..=9).contains(&m.mem_level));
            let bytes = (1u32 << (m.window_bits + 2)) + (1u32 << (m.mem_level + 9));
            match name.strip_prefix("dedicated_") {
                Some(kb) => {
                    assert!(s.context_takeover, "{name}");
                    let kb: u32 = kb.strip_suffix("kb").unwrap().parse().unwrap();
                    assert_eq!(bytes, kb * 1024, "{name}");
                }
                None => assert_eq!((name, s.context_takeover), ("shared", false)),
            }
        }
    }

    #[test]
    fn client_offers_by_preset() {
        assert_eq!(
            client_offer("shared").header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
        );
        assert_eq!(
            client_offer("dedicated_3kb").header(),
            "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9"
        );
        assert_eq!(
            client_offer("dedicated_256kb").header(),
            "permessage-deflate; client_max_window_bits"
        );
    }

    #[test]
    fn server_answers_by_preset() {
        let bare = "permessage-deflate; client_max_window_bits";
        let (p, a) = answer_with("dedicated_3kb", bare).unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
        );
        assert_eq!(
            (
                p.server_max_window_bits,
                p.client_max_window_bits,
                p.mem_level
            ),
            (9, 9, 1)
        );
        assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
        // Without client_max_window_bits in the offer, the client may use
        // the largest window: we inflate with it and ask nothing.
        let (p, a) = answer_with("dedicated_32kb", "permessage-deflate").unwrap();
        assert_eq!(a, "permessage-deflate; server_max_window_bits=12");
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 15)
        );
        // The offer's limits win when smaller; ours when the hint is larger.
        let (p, a) = answer_with(
            "dedicated_32kb",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11",
        )
        .unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"
        );
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 11)
        );
        let (_, a) = answer_with(
            "dedicated_3kb",
            "permessage-deflate; client_max_window_bits=14",
        )
        .unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
        );
        // shared: nothing kept either way, whatever the offer.
        let (_, a) = answer_with("shared", bare).unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        // The largest preset answers as compression => 1 with context_takeover => 1.
        let (_, a) = answer_with("dedicated_256kb", bare).unwrap();
        assert_eq!(a, "permessage-deflate");
        // Our own client's offers, to each preset.
        for &(name, _) in PRESETS {
            let offer = client_offer(name);
            let (server, a) = answer_with(name, &offer.header()).unwrap();
            let client = read_answer(std::iter::once(a.as_bytes()), Some(&offer))
                .unwrap()
                .unwrap();
            assert_eq!(client, server, "{name}: {a}");
        }
    }

    #[test]
    fn client_holds_the_server_to_its_offer() {
        let small = client_offer("dedicated_3kb");
        let read =
            |text: &str, offer: &Offer| read_answer(std::iter::once(text.as_bytes()), Some(offer));
        let p = read("permessage-deflate; server_max_window_bits=8", &small)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                p.server_max_window_bits,
                p.client_max_window_bits,
                p.mem_level
            ),
            (8, 9, 1)
        );
        assert!(!p.client_no_context_takeover);
        for too_big in [
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=10",
        ] {
            assert!(
                read(too_big, &small)
                    .unwrap_err()
                    .contains("'server_max_window_bits' must be at most 9"),
                "{too_big}"
            );
        }
        // The server may still make us drop our context.
        let p = read(
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=9",
            &small,
        )
        .unwrap()
        .unwrap();
        assert!(p.client_no_context_takeover);
        let shared = client_offer("shared");
        assert!(
            read("permessage-deflate; client_no_context_takeover", &shared)
                .unwrap_err()
                .contains("'server_no_context_takeover' was asked for")
        );
        // A larger window for us than ours: we keep to ours.
        let p = read(
            "permessage-deflate; client_max_window_bits=12",
            &client_offer("dedicated_32kb"),
        );
        assert!(p.unwrap_err().contains("server_max_window_bits"));
        let p = read(
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=14",
            &client_offer("dedicated_32kb"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.client_max_window_bits, 12);
    }
}
