//! HTTP header lists as handed to Perl: canonical names, joined repeats.

/// Header name and raw value bytes (values may carry obs-text, so they stay
/// bytes; Perl receives them unchanged).
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// `x-foo-bar` -> `X-Foo-Bar`, with the conventional spellings of the
/// words whose capitalisation is not just the first letter.
pub fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, word) in name.split('-').enumerate() {
        if i > 0 {
            out.push('-');
        }
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "websocket" => out.push_str("WebSocket"),
            "www" | "md5" | "dnt" => out.push_str(&word.to_ascii_uppercase()),
            "etag" => out.push_str("ETag"),
            _ => {
                let mut chars = lower.chars();
                if let Some(first) = chars.next() {
                    out.push(first.to_ascii_uppercase());
                    out.push_str(chars.as_str());
                }
            }
        }
    }
    out
}

/// Collect raw headers under canonical names, in first-seen order.  A
/// repeated header is joined with `", "`, cookies with `"; "`; empty values
/// are left out.
pub fn collect(raw: &[httparse::Header<'_>]) -> HeaderList {
    let mut list: HeaderList = Vec::with_capacity(raw.len());
    for h in raw {
        let value = trim(h.value);
        if value.is_empty() {
            continue;
        }
        let name = canonical_name(h.name);
        match list.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                let sep: &[u8] = if name == "Set-Cookie" || name == "Cookie" {
                    b"; "
                } else {
                    b", "
                };
                joined.extend_from_slice(sep);
                joined.extend_from_slice(value);
            }
            None => list.push((name, value.to_vec())),
        }
    }
    list
}

/// The value of a header, by case-insensitive name, from a raw list.
pub fn find<'a>(raw: &'a [httparse::Header<'_>], name: &str) -> Option<&'a [u8]> {
    find_all(raw, name).next()
}

/// The values of every line of a header, by case-insensitive name.
pub fn find_all<'a>(raw: &'a [httparse::Header<'_>], name: &str) -> impl Iterator<Item = &'a [u8]> {
    raw.iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| trim(h.value))
}

/// Every line of a header combined into one value, as RFC 9110 §5.3
/// allows for list-valued fields: the non-empty values joined with
/// `", "`, in order.  `None` when no line has the name.
pub fn combined(raw: &[httparse::Header<'_>], name: &str) -> Option<Vec<u8>> {
    let mut lines = find_all(raw, name).peekable();
    lines.peek()?;
    let mut out = Vec::new();
    for value in lines.filter(|v| !v.is_empty()) {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value);
    }
    Some(out)
}

/// A header that may appear on one line only came on several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// The value of a header that may appear on one line only; [`Repeated`]
/// when there are several (two different values for one thing are an
/// attack, two equal ones a broken peer).
pub fn single<'a>(
    raw: &'a [httparse::Header<'_>],
    name: &str,
) -> Result<Option<&'a [u8]>, Repeated> {
    let mut lines = find_all(raw, name);
    let first = lines.next();
    match lines.next() {
        Some(_) => Err(Repeated),
        None => Ok(first),
    }
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
pub fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value.is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Split a comma-separated list into its trimmed, non-empty items.
pub fn split_list(value: &[u8]) -> Vec<String> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("x-foo-bar"), "X-Foo-Bar");
        assert_eq!(
            canonical_name("SEC-WEBSOCKET-PROTOCOL"),
            "Sec-WebSocket-Protocol"
        );
        assert_eq!(canonical_name("www-authenticate"), "WWW-Authenticate");
        assert_eq!(canonical_name("set-cookie"), "Set-Cookie");
    }

    #[test]
    fn joins_repeats() {
        let raw = [
            httparse::Header {
                name: "set-cookie",
                value: b"a=1",
            },
            httparse::Header {
                name: "X-A",
                value: b" x ",
            },
            httparse::Header {
                name: "Set-Cookie",
                value: b"b=2",
            },
            httparse::Header {
                name: "x-a",
                value: b"y",
            },
            httparse::Header {
                name: "Empty",
                value: b"",
            },
        ];
        let list = collect(&raw);
        assert_eq!(
            list,
            vec![
                ("Set-Cookie".to_string(), b"a=1; b=2".to_vec()),
                ("X-A".to_string(), b"x, y".to_vec()),
            ]
        );
        assert!(has_token(Some(b"keep-alive, Upgrade"), "upgrade"));
        assert!(!has_token(None, "upgrade"));
        assert_eq!(split_list(b" chat, , v2 "), vec!["chat", "v2"]);
    }

    #[test]
    fn repeated_lines() {
        let h = |name, value| httparse::Header { name, value };
        let raw = [
            h("Connection", &b"keep-alive"[..]),
            h("Host", b"a"),
            h("connection", b" Upgrade "),
            h("Connection", b""),
            h("Empty", b""),
        ];
        assert_eq!(
            combined(&raw, "CONNECTION").as_deref(),
            Some(&b"keep-alive, Upgrade"[..])
        );
        assert_eq!(combined(&raw, "Empty").as_deref(), Some(&b""[..]));
        assert_eq!(combined(&raw, "Missing"), None);
        assert_eq!(single(&raw, "host"), Ok(Some(&b"a"[..])));
        assert_eq!(single(&raw, "Missing"), Ok(None));
        assert_eq!(single(&raw, "Connection"), Err(Repeated));
    }
}
