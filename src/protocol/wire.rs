//! The one check of what goes into an HTTP head (RFC 9110 §5.1, §5.5,
//! §5.6.2): every header name, header value, subprotocol name and request
//! target this module writes passes here first, whichever door it came
//! through (connect, listen, adopt, on_handshake, a proxy URL).  The texts
//! of the errors name what is wrong, without the option they came from.

/// A `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty `token`: header names and subprotocol names.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A control character other than HTAB (and DEL): never in a field value.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Bytes as Rust writes escapes (`\r`, `\n`, `\0`, `\x7f`, `\u{...}`),
/// for error texts that must not carry what they complain about.
pub fn escape(s: &[u8]) -> String {
    String::from_utf8_lossy(s).escape_default().to_string()
}

/// A header name: a token.
pub fn check_name(name: &str) -> Result<(), String> {
    if is_token(name.as_bytes()) {
        Ok(())
    } else {
        Err(format!("invalid header name '{}'", escape(name.as_bytes())))
    }
}

/// Text that goes into a head, or into a proxy's: no CR, LF, NUL or other
/// control character (HTAB is allowed; bytes over 0x7f are obs-text and
/// pass).  `what` begins the error text.
pub fn check_text(what: &str, text: &[u8]) -> Result<(), String> {
    if text.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        Err(format!("{what} contains CR, LF or NUL"))
    } else if text.iter().any(|&b| is_ctl(b)) {
        Err(format!("{what} contains a control character"))
    } else {
        Ok(())
    }
}

/// A header value: [`check_text`].
pub fn check_value(name: &str, value: &[u8]) -> Result<(), String> {
    check_text(&format!("value of '{}'", escape(name.as_bytes())), value)
}

/// A header line: [`check_name`] and [`check_value`].
pub fn check_header(name: &str, value: &[u8]) -> Result<(), String> {
    check_name(name)?;
    check_value(name, value)
}

/// One subprotocol name (RFC 6455 §4.1: a token).
pub fn check_protocol(name: &str) -> Result<(), String> {
    if is_token(name.as_bytes()) {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a valid subprotocol name",
            escape(name.as_bytes())
        ))
    }
}

/// A comma-separated list of subprotocol names as a client offers it:
/// every element, without the spaces or tabs around it, is a token.
pub fn check_protocol_list(list: &str) -> Result<(), String> {
    list.split(',')
        .map(|p| p.trim_matches([' ', '\t']))
        .try_for_each(check_protocol)
}

/// A request target or URL: no space and no control character, so that
/// the request line keeps its three parts.
pub fn check_target(target: &str) -> Result<(), String> {
    if target.bytes().any(|b| b == b' ' || is_ctl(b) || b == b'\t') {
        Err("contains a space or control character".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tokens() {
        for good in ["X-Note", "a", "!#$%&'*+-.^_`|~09AZaz"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "X Note", "X:Note", "X\r\nY", "X\0", "Ä", "(x)", "a/b", "a\tb",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_name("X\r\nEvil").unwrap_err(),
            "invalid header name 'X\\r\\nEvil'"
        );
    }

    #[test]
    fn values_hold_no_line_breaks() {
        assert!(check_value("X", b"a b\tc \xc3\xa4 \xff").is_ok());
        assert!(check_value("X", b"").is_ok());
        assert_eq!(
            check_value("X-Note", b"a\r\nSec-WebSocket-Accept: forged").unwrap_err(),
            "value of 'X-Note' contains CR, LF or NUL"
        );
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b"] {
            assert!(check_value("X", bad).unwrap_err().contains("CR, LF or NUL"));
        }
        for bad in [&b"a\x01b"[..], b"\x1b[0m", b"\x7f"] {
            assert!(check_value("X", bad).unwrap_err().contains("control"));
        }
        assert!(check_header("X\n", b"ok").is_err());
        assert!(check_header("X", b"o\nk").is_err());
        assert!(check_header("X", b"ok").is_ok());
    }

    #[test]
    fn subprotocols() {
        assert!(check_protocol("chat").is_ok());
        assert!(check_protocol("v2.chat.example.com").is_ok());
        for bad in ["", "a b", "a,b", "chat\r\nX-Evil: 1", "\"q\""] {
            assert!(check_protocol(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_protocol("chat\r\nX-Evil: 1").unwrap_err(),
            "'chat\\r\\nX-Evil: 1' is not a valid subprotocol name"
        );
        assert!(check_protocol_list("chat").is_ok());
        assert!(check_protocol_list("chat, v2,\tv3").is_ok());
        assert!(check_protocol_list("chat\r\nX-Evil: 1").is_err());
        assert!(check_protocol_list("chat, v 2").is_err());
        assert!(check_protocol_list("chat,,v2").is_err());
        assert!(check_protocol_list("chat,").is_err());
    }

    #[test]
    fn targets() {
        assert!(check_target("/a/b?c=d%20e").is_ok());
        assert!(check_target("ws://h/ä").is_ok());
        for bad in ["/a b", "/a\r\nX: y", "/a\tb", "/a\nb", "/\0", "/\x7f"] {
            assert_eq!(
                check_target(bad).unwrap_err(),
                "contains a space or control character",
                "{bad:?}"
            );
        }
    }
}
