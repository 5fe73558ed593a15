//! `ws://` / `wss://` URL parsing into what a client connection needs.

use std::fmt;
use std::net::IpAddr;

/// Where a client connects and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Request target: path plus `?query`, never the fragment.
    pub resource: String,
    /// `Host` header value: the host (bracketed for IPv6) plus the port
    /// when it is not the scheme's default.
    pub host_header: String,
}

impl Endpoint {
    /// The IP address when the host is a literal (no resolution needed).
    pub fn ip_literal(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `Origin` header value, as the original sends it.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host_header)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    Scheme,
    Port,
    Credentials,
    Invalid(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme => f.write_str("URL must start with ws:// or wss://"),
            UrlError::Port => f.write_str("connect: invalid port in url (expected 1-65535)"),
            UrlError::Credentials => {
                f.write_str("connect: credentials in url are not supported; use the headers option")
            }
            UrlError::Invalid(why) => write!(f, "connect: invalid url: {why}"),
        }
    }
}

/// Parse a WebSocket URL.  The scheme is case-insensitive; the port, when
/// written, must be 1-65535; userinfo is refused; so are spaces and
/// control characters anywhere, before the url crate would quietly drop
/// (tabs, newlines) or encode them.
pub fn parse(input: &str) -> Result<Endpoint, UrlError> {
    crate::protocol::wire::check_target(input).map_err(UrlError::Invalid)?;
    let (tls, rest) = split_scheme(input).ok_or(UrlError::Scheme)?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(UrlError::Credentials);
    }
    // The url crate would take `ws:///host` as `ws://host`; we do not guess.
    if authority.is_empty() || authority.starts_with(':') {
        return Err(UrlError::Invalid("missing host".into()));
    }
    let explicit_port = port_text(authority)?;
    let port = match explicit_port {
        Some(text) => match text.parse::<u16>() {
            Ok(p) if p != 0 && text.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(UrlError::Port),
        },
        None if tls => 443,
        None => 80,
    };

    let parsed = url::Url::parse(input).map_err(|e| UrlError::Invalid(e.to_string()))?;
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(UrlError::Invalid("missing host".into())),
    };
    let mut resource = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        resource.push('?');
        resource.push_str(query);
    }
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let default_port = if tls { 443 } else { 80 };
    let host_header = if port == default_port {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(Endpoint {
        tls,
        host,
        port,
        resource,
        host_header,
    })
}

/// The URL a redirect's `Location` points to, relative to `current`, with
/// http(s) mapped to ws(s).
pub fn redirect_target(current: &str, location: &str) -> Option<String> {
    let joined = url::Url::parse(current).ok()?.join(location).ok()?;
    let text = joined.as_str();
    let (scheme, rest) = text.split_once("://")?;
    let scheme = match scheme {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return None,
    };
    Some(format!("{scheme}://{rest}"))
}

fn split_scheme(input: &str) -> Option<(bool, &str)> {
    let colon = input.find("://")?;
    let scheme = &input[..colon];
    let rest = &input[colon + 3..];
    if scheme.eq_ignore_ascii_case("ws") {
        Some((false, rest))
    } else if scheme.eq_ignore_ascii_case("wss") {
        Some((true, rest))
    } else {
        None
    }
}

/// The port as written in the authority (`None` when absent), so that an
/// empty or non-numeric port is refused rather than silently defaulted.
fn port_text(authority: &str) -> Result<Option<&str>, UrlError> {
    let after_host = if let Some(inner) = authority.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| UrlError::Invalid("unterminated IPv6 address".into()))?;
        &inner[close + 1..]
    } else {
        &authority[authority.find(':').unwrap_or(authority.len())..]
    };
    match after_host.strip_prefix(':') {
        Some(port) => Ok(Some(port)),
        None if after_host.is_empty() => Ok(None),
        None => Err(UrlError::Invalid("junk after IPv6 address".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_resource() {
        let e = parse("ws://Example.COM/chat?x=1#frag").unwrap();
        assert_eq!(e.host, "example.com");
        assert_eq!(e.port, 80);
        assert_eq!(e.resource, "/chat?x=1");
        assert_eq!(e.host_header, "example.com");
        assert_eq!(e.origin(), "http://example.com");
        let e = parse("WSS://h:8443").unwrap();
        assert!(e.tls);
        assert_eq!((e.port, e.resource.as_str()), (8443, "/"));
        assert_eq!(e.host_header, "h:8443");
        assert_eq!(parse("ws://h?q").unwrap().resource, "/?q");
    }

    #[test]
    fn redirect_targets() {
        let here = "ws://h:1/a/b?x";
        assert_eq!(redirect_target(here, "/c").as_deref(), Some("ws://h:1/c"));
        assert_eq!(redirect_target(here, "c").as_deref(), Some("ws://h:1/a/c"));
        assert_eq!(
            redirect_target(here, "https://o/p").as_deref(),
            Some("wss://o/p")
        );
        assert_eq!(
            redirect_target(here, "http://o:8/").as_deref(),
            Some("ws://o:8/")
        );
        assert_eq!(redirect_target(here, "ftp://o/"), None);
    }

    #[test]
    fn ipv6_literal() {
        let e = parse("ws://[::1]:9001/x").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.host_header, "[::1]:9001");
        assert!(e.ip_literal().is_some());
    }

    #[test]
    fn errors() {
        assert_eq!(parse("http://h/"), Err(UrlError::Scheme));
        assert_eq!(parse("h/"), Err(UrlError::Scheme));
        for bad in [
            "ws://h:0/",
            "ws://h:70000/",
            "ws://h:/",
            "ws://h:ab/",
            "ws://[::1]:/",
        ] {
            assert_eq!(parse(bad), Err(UrlError::Port), "{bad}");
        }
        assert_eq!(parse("ws://u:p@h/"), Err(UrlError::Credentials));
        assert!(matches!(parse("ws:///x"), Err(UrlError::Invalid(_))));
    }

    #[test]
    fn spaces_and_control_characters_are_refused_not_altered() {
        let refused = UrlError::Invalid("contains a space or control character".into());
        for bad in [
            "ws://127.0.0.1:1234/a b\r\nX: y",
            "ws://h/a b",
            "ws://h/a\tb",
            "ws://h/a\nb",
            "ws://h/a\rb",
            "ws://h/?q=a\nb",
            "ws://h\n/",
            "ws://h/\0",
            "ws://h/#a b",
            " ws://h/",
            "ws://h/\x7f",
        ] {
            assert_eq!(parse(bad), Err(refused.clone()), "{bad:?}");
        }
        assert_eq!(
            refused.to_string(),
            "connect: invalid url: contains a space or control character"
        );
        // What the url crate does to them otherwise: tabs and newlines
        // vanish, spaces are encoded.
        let quiet = url::Url::parse("ws://h/a\tb\r\nc").unwrap();
        assert_eq!(quiet.path(), "/abc");
        let e = parse("ws://h/a%20b?c=%0d%0a").unwrap();
        assert_eq!(e.resource, "/a%20b?c=%0d%0a");
        assert_eq!(parse("ws://h/ä").unwrap().resource, "/%C3%A4");
    }
}
