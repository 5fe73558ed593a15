//! Server side: reading the upgrade request and answering it.

use crate::protocol::deflate::{self, DeflateParams};
use crate::protocol::handshake::{self, MAX_HEADERS, Parsed};
use crate::protocol::headers::{self, HeaderList};
use crate::protocol::wire;

/// What a listener answers with, shared by all its connections.
#[derive(Debug, Default, Clone)]
pub struct ServerPolicy {
    /// Subprotocols the server speaks, in preference order.
    pub protocols: Vec<String>,
    /// Headers added to every 101 response.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Largest request head accepted (431 beyond it).
    pub max_head: usize,
    /// Accept permessage-deflate offers.
    pub compression: bool,
    /// Keep compression context between messages (else both sides are
    /// asked not to).
    pub context_takeover: bool,
    /// The zlib memory each compressing connection may use.
    pub deflate_memory: deflate::Memory,
}

/// A valid upgrade request, waiting for the verdict of the application.
#[derive(Debug)]
pub struct UpgradeRequest {
    /// Request headers for Perl: `Path`, `Query`, `URI` and every header
    /// under its canonical name.
    pub headers: HeaderList,
    pub protocol: Option<String>,
    /// permessage-deflate as accepted, and the answer's header value.
    pub deflate: Option<(DeflateParams, String)>,
    key: String,
}

/// The server's decision on a request head.
#[derive(Debug)]
pub enum Verdict {
    Upgrade(UpgradeRequest),
    /// Answer with these bytes and close.
    Refuse(Vec<u8>),
}

/// A complete HTTP answer that ends the connection.
pub fn http_answer(status: &str, extra_headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{extra_headers}Connection: close\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

pub fn read_request(buf: &[u8], policy: &ServerPolicy) -> Parsed<Verdict> {
    let refuse =
        |status, extra| Parsed::Complete(buf.len(), Verdict::Refuse(http_answer(status, extra)));
    let bad_request = || refuse("400 Bad Request", "");
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut raw);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= policy.max_head => n,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return refuse("431 Request Header Fields Too Large", "");
        }
        Ok(httparse::Status::Partial) if buf.len() > policy.max_head => {
            return refuse("431 Request Header Fields Too Large", "");
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(_) => return bad_request(),
    };
    let raw = &*request.headers;
    let version_header = "Sec-WebSocket-Version: 13\r\n";
    // Repeated lines of a list header count as one comma-joined value
    // (RFC 9110 §5.3); Host and the handshake's own single-valued headers
    // must come once.
    let upgrade = headers::combined(raw, "Upgrade");
    if !headers::has_token(upgrade.as_deref(), "websocket") {
        return refuse("426 Upgrade Required", version_header);
    }
    let (Ok(host), Ok(version), Ok(key)) = (
        headers::single(raw, "Host"),
        headers::single(raw, "Sec-WebSocket-Version"),
        headers::single(raw, "Sec-WebSocket-Key"),
    ) else {
        return bad_request();
    };
    let connection = headers::combined(raw, "Connection");
    let target = request.path.unwrap_or("");
    if request.method != Some("GET")
        || request.version != Some(1)
        || !target.starts_with('/')
        || host.is_none_or(|h| h.is_empty())
        || !headers::has_token(connection.as_deref(), "upgrade")
    {
        return bad_request();
    }
    if version != Some(b"13") {
        return refuse("426 Upgrade Required", version_header);
    }
    let key = match key {
        Some(k) if is_nonce(k) => String::from_utf8_lossy(k).into_owned(),
        _ => return bad_request(),
    };
    let offered = headers::combined(raw, "Sec-WebSocket-Protocol")
        .map(|list| headers::split_list(&list))
        .unwrap_or_default();
    let protocol = match choose_protocol(&policy.protocols, &offered) {
        Ok(p) => p,
        Err(()) => return bad_request(),
    };

    let deflate = policy
        .compression
        .then(|| {
            let offers = headers::find_all(raw, "Sec-WebSocket-Extensions");
            deflate::choose_offer(offers, policy.context_takeover, policy.deflate_memory)
        })
        .flatten();

    let mut list = Vec::with_capacity(raw.len() + 3);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    list.push(("Path".to_string(), normalize_path(path).into_bytes()));
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        list.push(("Query".to_string(), q.as_bytes().to_vec()));
    }
    list.push(("URI".to_string(), target.as_bytes().to_vec()));
    list.extend(headers::collect(raw));
    Parsed::Complete(
        head_len,
        Verdict::Upgrade(UpgradeRequest {
            headers: list,
            protocol,
            deflate,
            key,
        }),
    )
}

impl UpgradeRequest {
    /// Write the 101 answer: the protocol if chosen, then the listener's
    /// headers, then the per-connection ones.  A header that does not pass
    /// [`crate::protocol::handshake::check_extra_header`] is refused with its reason,
    /// and then nothing is written.
    pub fn write_response(
        &self,
        policy: &ServerPolicy,
        extra: &[(String, Vec<u8>)],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let added = || policy.headers.iter().chain(extra);
        added().try_for_each(|(name, value)| handshake::check_extra_header(name, value))?;
        if let Some(p) = &self.protocol {
            wire::check_protocol(p)?;
        }
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        out.extend_from_slice(accept.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(p) = &self.protocol {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some((_, answer)) = &self.deflate {
            out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            out.extend_from_slice(answer.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in added() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// The first of the server's protocols that the client offers.  A client
/// offering none, or a server speaking none, gets no protocol; a client
/// offering only unknown ones is refused.
fn choose_protocol(server: &[String], offered: &[String]) -> Result<Option<String>, ()> {
    if offered.is_empty() || server.is_empty() {
        return Ok(None);
    }
    server
        .iter()
        .find(|p| offered.contains(p))
        .map(|p| Some(p.clone()))
        .ok_or(())
}

/// A Sec-WebSocket-Key: base64 of 16 bytes.
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Percent-decode, resolve `.` and `..`, collapse repeated slashes.  A
/// trailing slash is kept.
pub fn normalize_path(path: &str) -> String {
    let decoded = percent_decode(path.as_bytes());
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (
                input.get(i + 1).and_then(|&b| hex(b)),
                input.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn policy(protocols: &[&str]) -> ServerPolicy {
        ServerPolicy {
            protocols: protocols.iter().map(|s| s.to_string()).collect(),
            headers: vec![("X-Static".into(), b"1".to_vec())],
            max_head: 16 * 1024,
            compression: false,
            context_takeover: false,
            deflate_memory: deflate::Memory::default(),
        }
    }

    fn upgrade(extra: &str) -> String {
        format!(
            "GET /a//b/./c/../d%20e?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn refusal(text: &str, policy: &ServerPolicy) -> String {
        match read_request(text.as_bytes(), policy) {
            Parsed::Complete(_, Verdict::Refuse(bytes)) => String::from_utf8(bytes).unwrap(),
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    /// A header of a request as handed to Perl.
    fn header(req: &UpgradeRequest, name: &str) -> Option<Vec<u8>> {
        req.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn accepts_and_answers() {
        let p = policy(&["v2", "chat"]);
        let text = upgrade("Sec-WebSocket-Protocol: chat, v2\r\nX-Forwarded-For: 1.2.3.4\r\n");
        let Parsed::Complete(n, Verdict::Upgrade(req)) = read_request(text.as_bytes(), &p) else {
            panic!("not accepted");
        };
        assert_eq!(n, text.len());
        assert_eq!(req.protocol.as_deref(), Some("v2"));
        let get = |k: &str| header(&req, k);
        assert_eq!(get("Path").unwrap(), b"/a/b/d e");
        assert_eq!(get("Query").unwrap(), b"x=1");
        assert_eq!(get("URI").unwrap(), b"/a//b/./c/../d%20e?x=1");
        assert_eq!(get("X-Forwarded-For").unwrap(), b"1.2.3.4");
        assert_eq!(get("Sec-WebSocket-Protocol").unwrap(), b"chat, v2");
        let mut out = Vec::new();
        req.write_response(&p, &[("X-Per".into(), b"2".to_vec())], &mut out)
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(out.ends_with("Sec-WebSocket-Protocol: v2\r\nX-Static: 1\r\nX-Per: 2\r\n\r\n"));
    }

    #[test]
    fn refusals() {
        let p = policy(&["chat"]);
        assert!(
            refusal("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &p)
                .starts_with("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n")
        );
        let v8 = upgrade("").replace("Version: 13", "Version: 8");
        assert!(refusal(&v8, &p).starts_with("HTTP/1.1 426"));
        let nokey = upgrade("").replace(KEY, "short");
        assert!(refusal(&nokey, &p).starts_with("HTTP/1.1 400"));
        let unknown = upgrade("Sec-WebSocket-Protocol: other\r\n");
        assert!(refusal(&unknown, &p).starts_with("HTTP/1.1 400"));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(p.max_head));
        assert!(refusal(&big, &p).starts_with("HTTP/1.1 431"));
        assert!(matches!(
            read_request(b"GET / HTTP/1.1\r\nHo", &p),
            Parsed::Incomplete
        ));
    }

    fn upgraded(text: &str, p: &ServerPolicy) -> UpgradeRequest {
        match read_request(text.as_bytes(), p) {
            Parsed::Complete(_, Verdict::Upgrade(req)) => req,
            other => panic!("not accepted: {other:?}"),
        }
    }

    #[test]
    fn repeated_list_lines_are_combined() {
        let p = policy(&["v2", "chat"]);
        // Connection, Upgrade and Sec-WebSocket-Protocol over two lines.
        let text = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: keep-alive\r\n\
            Sec-WebSocket-Protocol: other\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let req = upgraded(text, &p);
        assert_eq!(req.protocol.as_deref(), Some("chat"));
        let get = |k: &str| header(&req, k);
        assert_eq!(get("Connection").unwrap(), b"keep-alive, Upgrade");
        assert_eq!(get("Upgrade").unwrap(), b"h2c, websocket");
        assert_eq!(get("Sec-WebSocket-Protocol").unwrap(), b"other, chat");
    }

    #[test]
    fn repeated_single_lines_are_refused() {
        let p = policy(&[]);
        let other = "x3JJHMbDL1EzLkh9GBhXDw==";
        for extra in [
            format!("Sec-WebSocket-Key: {other}\r\n"),
            format!("Sec-WebSocket-Key: {KEY}\r\n"),
            "Sec-WebSocket-Version: 13\r\n".to_string(),
            "Sec-WebSocket-Version: 8\r\n".to_string(),
            "Host: other\r\n".to_string(),
        ] {
            assert!(
                refusal(&upgrade(&extra), &p).starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn response_refuses_unsendable_headers() {
        let p = policy(&["chat"]);
        let req = upgraded(&upgrade("Sec-WebSocket-Protocol: chat\r\n"), &p);
        let header = |n: &str, v: &[u8]| vec![(n.to_string(), v.to_vec())];
        for (extra, why) in [
            (
                header("X-Note", b"a\r\nSec-WebSocket-Accept: forged"),
                "value of 'X-Note' contains CR, LF or NUL",
            ),
            (
                header("X-Note\r\nSec-WebSocket-Accept", b"forged"),
                "invalid header name 'X-Note\\r\\nSec-WebSocket-Accept'",
            ),
            (
                header("Sec-WebSocket-Accept", b"forged"),
                "'Sec-WebSocket-Accept' is set by the handshake",
            ),
            (
                header("X", b"\x01"),
                "value of 'X' contains a control character",
            ),
        ] {
            let mut out = Vec::new();
            assert_eq!(req.write_response(&p, &extra, &mut out), Err(why.into()));
            assert!(out.is_empty(), "{why}: nothing written");
        }
        // Listener headers are held to the same rules.
        let mut bad = p.clone();
        bad.headers = header("X-Static", b"1\nX: 2");
        let mut out = Vec::new();
        assert!(req.write_response(&bad, &[], &mut out).is_err());
        assert!(out.is_empty());
        assert!(
            req.write_response(&p, &header("X-Ok", b"a\tb"), &mut out)
                .is_ok()
        );
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .matches("Sec-WebSocket-Accept")
                .count(),
            1
        );
    }

    #[test]
    fn protocol_choice() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_protocol(&s(&[]), &s(&["a"])), Ok(None));
        assert_eq!(choose_protocol(&s(&["a"]), &s(&[])), Ok(None));
        assert_eq!(
            choose_protocol(&s(&["b", "a"]), &s(&["a", "b"])),
            Ok(Some("b".into()))
        );
        assert_eq!(choose_protocol(&s(&["a"]), &s(&["c"])), Err(()));
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/../../x"), "/x");
        assert_eq!(normalize_path("/a/b/"), "/a/b/");
        assert_eq!(normalize_path("/a/%2e%2e/b"), "/b");
        assert_eq!(normalize_path("/a%zz"), "/a%zz");
    }
}
