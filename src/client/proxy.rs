//! Reaching a server through a proxy: HTTP CONNECT or SOCKS5, chosen from
//! the context's options or the environment.

use std::net::IpAddr;

use crate::protocol::{headers, wire};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5: socks5:// resolves the server's name here and sends the
    /// address; socks5h:// (`remote_dns`) lets the proxy resolve it.
    Socks5 { remote_dns: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    /// User name and password from the URL's userinfo.
    pub auth: Option<(String, String)>,
}

impl Proxy {
    /// Whether the server's name must be resolved here first.
    pub fn resolves_locally(&self) -> bool {
        self.kind == ProxyKind::Socks5 { remote_dns: false }
    }

    /// The `on_error` text when the URL's credentials cannot be sent (see
    /// [`check_credentials`]).
    pub fn check_auth(&self) -> Result<(), String> {
        match &self.auth {
            Some((user, pass)) => check_credentials(&self.kind, user, pass)
                .map_err(|why| format!("proxy failed: {why}")),
            None => Ok(()),
        }
    }

    /// `[scheme://][user[:pass]@]host[:port][/...]`, host possibly `[v6]`;
    /// the port defaults to 1080.  `None` for an empty or unusable value.
    pub fn parse(url: &str) -> Option<Proxy> {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => (String::new(), url),
        };
        let kind = match scheme.as_str() {
            "socks5" => ProxyKind::Socks5 { remote_dns: false },
            "socks5h" => ProxyKind::Socks5 { remote_dns: true },
            "" | "http" | "https" => ProxyKind::Http,
            _ => return None,
        };
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(user), percent_decode(pass))), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                (host, after.strip_prefix(':'))
            }
            None => match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().ok().filter(|p| *p != 0)?,
            None => 1080,
        };
        (!host.is_empty()).then(|| Proxy {
            kind,
            host: host.to_string(),
            port,
            auth,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which proxy a context uses, and for which hosts not.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    pub proxy: Option<Proxy>,
    /// `no_proxy` entries: names, domain suffixes, IPs, or `*`.
    pub bypass: Vec<String>,
}

impl ProxySettings {
    /// From the environment: the first defined of `https_proxy`,
    /// `http_proxy`, `all_proxy`, and `no_proxy` / `NO_PROXY`.
    pub fn from_env() -> ProxySettings {
        let var = |name: &str| std::env::var(name).ok();
        let proxy = ["https_proxy", "http_proxy", "all_proxy"]
            .iter()
            .find_map(|name| var(name))
            .and_then(|url| Proxy::parse(&url));
        let bypass = var("no_proxy")
            .or_else(|| var("NO_PROXY"))
            .map(|list| headers::split_list(list.as_bytes()))
            .unwrap_or_default();
        ProxySettings { proxy, bypass }
    }

    /// The proxy to reach `host` through, if any.
    pub fn for_host(&self, host: &str) -> Option<&Proxy> {
        let proxy = self.proxy.as_ref()?;
        let host = host.to_ascii_lowercase();
        let bypassed = self.bypass.iter().any(|entry| {
            let entry = entry
                .trim_start_matches('*')
                .trim_start_matches('.')
                .to_ascii_lowercase();
            entry.is_empty()
                || host == entry
                || (host.ends_with(&entry) && host[..host.len() - entry.len()].ends_with('.'))
        });
        (!bypassed).then_some(proxy)
    }
}

/// What the tunnel needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum TunnelStep {
    /// Read more bytes.
    NeedMore,
    /// The first `used` bytes of the input were a reply: drop them, send
    /// `bytes`, then read.
    Send {
        used: usize,
        bytes: Vec<u8>,
    },
    /// The tunnel is open; this many bytes of the input were its own.
    Open(usize),
    Failed(String),
}

#[derive(Debug)]
enum Stage {
    HttpAnswer,
    SocksMethod,
    SocksAuth,
    SocksConnect,
}

/// The conversation that opens a tunnel to `host:port`.
#[derive(Debug)]
pub struct Tunnel {
    stage: Stage,
    host: String,
    port: u16,
    auth: Option<(String, String)>,
}

impl Tunnel {
    /// The tunnel and the first bytes to send to the proxy, or the
    /// `on_error` text when the proxy's credentials cannot be sent.
    pub fn start(proxy: &Proxy, host: &str, port: u16) -> Result<(Tunnel, Vec<u8>), String> {
        proxy.check_auth()?;
        let tunnel = |stage| Tunnel {
            stage,
            host: host.to_string(),
            port,
            auth: proxy.auth.clone(),
        };
        match proxy.kind {
            ProxyKind::Http => {
                let target = match host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                    _ => format!("{host}:{port}"),
                };
                let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
                if let Some((user, pass)) = &proxy.auth {
                    let credentials = base64(format!("{user}:{pass}").as_bytes());
                    request.push_str(&format!("Proxy-Authorization: Basic {credentials}\r\n"));
                }
                request.push_str("\r\n");
                Ok((tunnel(Stage::HttpAnswer), request.into_bytes()))
            }
            ProxyKind::Socks5 { .. } => {
                // Methods offered: none, and user/password when we have one.
                let greeting = if proxy.auth.is_some() {
                    vec![5, 2, 0, 2]
                } else {
                    vec![5, 1, 0]
                };
                Ok((tunnel(Stage::SocksMethod), greeting))
            }
        }
    }

    /// Look at what the proxy sent so far.
    pub fn advance(&mut self, input: &[u8]) -> TunnelStep {
        match self.stage {
            Stage::HttpAnswer => http_answer(input),
            Stage::SocksMethod => match input {
                [] | [_] => TunnelStep::NeedMore,
                [5, 0, ..] => self.socks_connect(2),
                [5, 2, ..] if self.auth.is_some() => {
                    // Lengths checked by `check_credentials`.
                    let (user, pass) = self.auth.as_ref().expect("checked above");
                    let mut msg = vec![1, user.len() as u8];
                    msg.extend_from_slice(user.as_bytes());
                    msg.push(pass.len() as u8);
                    msg.extend_from_slice(pass.as_bytes());
                    self.stage = Stage::SocksAuth;
                    TunnelStep::Send {
                        used: 2,
                        bytes: msg,
                    }
                }
                _ => TunnelStep::Failed(
                    "proxy failed: SOCKS5 proxy accepts none of our methods".into(),
                ),
            },
            Stage::SocksAuth => match input {
                [] | [_] => TunnelStep::NeedMore,
                [_, 0, ..] => self.socks_connect(2),
                _ => TunnelStep::Failed("proxy failed: SOCKS5 authentication refused".into()),
            },
            Stage::SocksConnect => socks_reply(input),
        }
    }

    /// The CONNECT request, after a reply of `used` bytes.
    fn socks_connect(&mut self, used: usize) -> TunnelStep {
        let mut msg = vec![5, 1, 0];
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                msg.push(1);
                msg.extend_from_slice(&ip.octets());
            }
            Ok(IpAddr::V6(ip)) => {
                msg.push(4);
                msg.extend_from_slice(&ip.octets());
            }
            Err(_) => {
                let name = &self.host.as_bytes()[..self.host.len().min(255)];
                msg.push(3);
                msg.push(name.len() as u8);
                msg.extend_from_slice(name);
            }
        }
        msg.extend_from_slice(&self.port.to_be_bytes());
        self.stage = Stage::SocksConnect;
        TunnelStep::Send { used, bytes: msg }
    }
}

/// Credentials from a proxy URL (after percent-decoding), before they are
/// sent: no control characters ([`wire::check_text`]), no `:` in an HTTP
/// user name (Basic, RFC 7617 §2), at most 255 bytes each for SOCKS5
/// (RFC 1929).  The texts never show the password.
fn check_credentials(kind: &ProxyKind, user: &str, pass: &str) -> Result<(), String> {
    wire::check_text("the user name in the proxy URL", user.as_bytes())?;
    wire::check_text("the password in the proxy URL", pass.as_bytes())?;
    match kind {
        ProxyKind::Http if user.contains(':') => {
            Err("the user name in the proxy URL contains ':'".into())
        }
        ProxyKind::Socks5 { .. } if user.len() > 255 || pass.len() > 255 => {
            Err("SOCKS5 user names and passwords are limited to 255 bytes".into())
        }
        _ => Ok(()),
    }
}

fn http_answer(input: &[u8]) -> TunnelStep {
    let mut raw = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut raw);
    match response.parse(input) {
        Ok(httparse::Status::Complete(n)) => match response.code {
            Some(200..=299) => TunnelStep::Open(n),
            code => {
                let reason = response.reason.unwrap_or("");
                let text = format!("proxy failed: HTTP {} {reason}", code.unwrap_or(0));
                TunnelStep::Failed(text.trim_end().to_string())
            }
        },
        Ok(httparse::Status::Partial) if input.len() > crate::protocol::handshake::MAX_HEAD => {
            TunnelStep::Failed("proxy failed: answer too large".into())
        }
        Ok(httparse::Status::Partial) => TunnelStep::NeedMore,
        Err(e) => TunnelStep::Failed(format!("proxy failed: malformed answer ({e})")),
    }
}

fn socks_reply(input: &[u8]) -> TunnelStep {
    let [version, status, _, kind, rest @ ..] = input else {
        return TunnelStep::NeedMore;
    };
    if *version != 5 {
        return TunnelStep::Failed(
            "proxy failed: SOCKS5 proxy answered with another protocol".into(),
        );
    }
    if *status != 0 {
        let why = match status {
            1 => "general failure",
            2 => "connection not allowed",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return TunnelStep::Failed(format!("proxy failed: SOCKS5 error {status} ({why})"));
    }
    let address = match (kind, rest.first()) {
        (1, _) => 4,
        (4, _) => 16,
        (3, Some(len)) => 1 + *len as usize,
        (3, None) => return TunnelStep::NeedMore,
        _ => return TunnelStep::Failed("proxy failed: SOCKS5 bad address type".into()),
    };
    let total = 4 + address + 2;
    if input.len() < total {
        TunnelStep::NeedMore
    } else {
        TunnelStep::Open(total)
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("http://proxy.example:8080/").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port, p.auth),
            (ProxyKind::Http, "proxy.example", 8080, None)
        );
        let p = Proxy::parse("socks5h://us%40er:p:w@[::1]").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5 { remote_dns: true });
        assert_eq!(
            Proxy::parse("socks5://s").unwrap().kind,
            ProxyKind::Socks5 { remote_dns: false }
        );
        assert_eq!((p.host.as_str(), p.port), ("::1", 1080));
        assert_eq!(p.auth, Some(("us@er".into(), "p:w".into())));
        assert_eq!(Proxy::parse("proxy.example").unwrap().port, 1080);
        assert_eq!(Proxy::parse(""), None);
        assert_eq!(Proxy::parse("ftp://x/"), None);
        assert_eq!(Proxy::parse("h:0"), None);
    }

    #[test]
    fn no_proxy_rules() {
        let settings = |bypass: &[&str]| ProxySettings {
            proxy: Proxy::parse("p:1"),
            bypass: bypass.iter().map(|s| s.to_string()).collect(),
        };
        let s = settings(&["example.com", ".internal", "10.0.0.1"]);
        assert!(s.for_host("example.com").is_none());
        assert!(s.for_host("www.EXAMPLE.com").is_none());
        assert!(s.for_host("a.internal").is_none());
        assert!(s.for_host("10.0.0.1").is_none());
        assert!(s.for_host("notexample.com").is_some());
        assert!(settings(&["*"]).for_host("anything").is_none());
        assert!(settings(&[]).for_host("anything").is_some());
    }

    #[test]
    fn http_connect() {
        let proxy = Proxy::parse("http://u:p@proxy:3128").unwrap();
        let (mut t, request) = Tunnel::start(&proxy, "::1", 9001).unwrap();
        let request = String::from_utf8(request).unwrap();
        assert_eq!(
            request,
            "CONNECT [::1]:9001 HTTP/1.1\r\nHost: [::1]:9001\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert_eq!(t.advance(b"HTTP/1.1 200 OK\r\n"), TunnelStep::NeedMore);
        assert_eq!(
            t.advance(b"HTTP/1.1 200 OK\r\n\r\nxx"),
            TunnelStep::Open(19)
        );
        assert_eq!(
            t.advance(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            TunnelStep::Failed("proxy failed: HTTP 407 Proxy Authentication Required".into())
        );
    }

    #[test]
    fn socks5_with_auth() {
        let proxy = Proxy::parse("socks5://ab:cd@s:1080").unwrap();
        let (mut t, greeting) = Tunnel::start(&proxy, "example.com", 80).unwrap();
        assert_eq!(greeting, [5, 2, 0, 2]);
        let auth = vec![1, 2, b'a', b'b', 2, b'c', b'd'];
        assert_eq!(
            t.advance(&[5, 2]),
            TunnelStep::Send {
                used: 2,
                bytes: auth
            }
        );
        let mut connect = vec![5, 1, 0, 3, 11];
        connect.extend_from_slice(b"example.com");
        connect.extend_from_slice(&[0, 80]);
        assert_eq!(
            t.advance(&[1, 0]),
            TunnelStep::Send {
                used: 2,
                bytes: connect
            }
        );
        assert_eq!(t.advance(&[5, 0, 0, 1, 127, 0]), TunnelStep::NeedMore);
        assert_eq!(
            t.advance(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80]),
            TunnelStep::Open(10)
        );
        assert!(matches!(t.advance(&[5, 5, 0, 1]), TunnelStep::Failed(e) if e.contains("refused")));
    }

    #[test]
    fn credentials_are_checked_before_they_are_sent() {
        let start = |url: &str| Tunnel::start(&Proxy::parse(url).unwrap(), "example.com", 80);
        for url in [
            "http://user:s3c%0d%0aret@proxy:3128",
            "http://us%0aer:s3cret@proxy:3128",
            "socks5://user:s3c%00ret@proxy",
            "socks5h://us%0d%0aer:s3cret@proxy",
        ] {
            let err = start(url).unwrap_err();
            assert!(err.starts_with("proxy failed: the "), "{url}: {err}");
            assert!(err.contains("CR, LF or NUL"), "{url}: {err}");
            assert!(
                !err.contains("s3c"),
                "{url}: the password is not shown: {err}"
            );
        }
        assert!(
            start("http://a%01b:c@proxy")
                .unwrap_err()
                .contains("control")
        );
        assert!(start("http://a%3ab:c@proxy").unwrap_err().contains("':'"));
        let long = "x".repeat(256);
        assert!(
            start(&format!("socks5://{long}:p@proxy"))
                .unwrap_err()
                .contains("255 bytes")
        );
        assert!(start(&format!("http://{long}:p@proxy")).is_ok());
        assert!(start("socks5://a%3ab:c@proxy").is_ok());
        assert!(start("http://us%20er:p%09w@proxy").is_ok());
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }
}
