//! Client side: the upgrade request and the check of the server's answer.

use crate::client::endpoint::Endpoint;
use crate::protocol::deflate::{self, DeflateParams};
use crate::protocol::handshake::{self, MAX_HEAD, MAX_HEADERS, Parsed};
use crate::protocol::headers::{self, HeaderList};
use crate::protocol::wire;

/// Headers the user may replace instead of duplicating.
const REPLACEABLE: [&str; 2] = ["Host", "Origin"];

/// Check user headers before anything is sent: no name the handshake
/// writes itself, names that are tokens, no CR, LF, NUL or other control
/// character in values ([`handshake::check_extra_header`]).
pub fn validate_user_headers(list: &[(String, Vec<u8>)]) -> Result<(), String> {
    list.iter()
        .try_for_each(|(name, value)| handshake::check_extra_header(name, value))
        .map_err(|why| format!("headers: {why}"))
}

/// A request that was sent, and what the answer must match.
#[derive(Debug)]
pub struct ClientHandshake {
    key: String,
    offered_protocols: Vec<String>,
    offered_deflate: Option<deflate::Offer>,
}

impl ClientHandshake {
    /// Write the upgrade request into `out`, offering permessage-deflate
    /// as `compression` says (`None`: not at all).  `user_headers` should have passed
    /// [`validate_user_headers`] and `protocol`
    /// [`wire::check_protocol_list`]; whatever did not is refused here, and
    /// then nothing is written.
    pub fn write_request(
        endpoint: &Endpoint,
        protocol: Option<&str>,
        compression: Option<deflate::Offer>,
        user_headers: &[(String, Vec<u8>)],
        out: &mut Vec<u8>,
    ) -> Result<ClientHandshake, String> {
        let user = |name: &str| {
            user_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
        };
        let origin = endpoint.origin();
        let host = user("Host").unwrap_or(endpoint.host_header.as_bytes());
        let origin = user("Origin").unwrap_or(origin.as_bytes());
        let protocol = protocol.filter(|p| !p.is_empty());
        validate_user_headers(user_headers)?;
        protocol
            .map_or(Ok(()), wire::check_protocol_list)
            .map_err(|why| format!("protocol: {why}"))?;
        wire::check_target(&endpoint.resource)
            .and_then(|()| wire::check_value("Host", host))
            .and_then(|()| wire::check_value("Origin", origin))
            .map_err(|why| format!("url: {why}"))?;

        let key = tungstenite::handshake::client::generate_key();
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(endpoint.resource.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\nOrigin: ");
        out.extend_from_slice(origin);
        out.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        );
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
        let offered_protocols = match protocol {
            Some(p) => {
                out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
                out.extend_from_slice(p.as_bytes());
                out.extend_from_slice(b"\r\n");
                headers::split_list(p.as_bytes())
            }
            _ => Vec::new(),
        };
        if let Some(offer) = compression {
            out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            out.extend_from_slice(offer.header().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in user_headers {
            if REPLACEABLE.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(ClientHandshake {
            key,
            offered_protocols,
            offered_deflate: compression,
        })
    }

    /// Check the server's answer.  On success: the response headers and the
    /// negotiated subprotocol.  Errors are the `on_error` texts.
    pub fn read_response(&self, buf: &[u8]) -> Result<Parsed<Answer>, String> {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut raw);
        let head_len = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err("handshake failed: response head too large".into());
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err("handshake failed: response head too large".into());
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(e) => return Err(format!("handshake failed: malformed response ({e})")),
        };
        let code = response.code.unwrap_or(0);
        let location = headers::find(response.headers, "Location").filter(|l| !l.is_empty());
        if let (301 | 302 | 303 | 307 | 308, Some(location)) = (code, location) {
            let location = String::from_utf8_lossy(location).into_owned();
            return Ok(Parsed::Complete(head_len, Answer::Redirect(location)));
        }
        if code != 101 {
            let reason = response.reason.unwrap_or("");
            return Err(format!("handshake failed: HTTP {code} {reason}")
                .trim_end()
                .into());
        }
        let raw = response.headers;
        // Repeated lines of a list header count as one comma-joined value
        // (RFC 9110 §5.3); a repeated Sec-WebSocket-Accept is refused.
        if !headers::has_token(headers::combined(raw, "Upgrade").as_deref(), "websocket") {
            return Err("handshake failed: missing 'Upgrade: websocket'".into());
        }
        if !headers::has_token(headers::combined(raw, "Connection").as_deref(), "upgrade") {
            return Err("handshake failed: missing 'Connection: Upgrade'".into());
        }
        let expected = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        match headers::single(raw, "Sec-WebSocket-Accept") {
            Err(headers::Repeated) => {
                return Err("handshake failed: repeated Sec-WebSocket-Accept".into());
            }
            Ok(accept) if accept != Some(expected.as_bytes()) => {
                return Err("handshake failed: bad Sec-WebSocket-Accept".into());
            }
            Ok(_) => {}
        }
        let protocol = match headers::combined(raw, "Sec-WebSocket-Protocol") {
            None => None,
            Some(p) => {
                let p = String::from_utf8_lossy(&p).into_owned();
                if !self.offered_protocols.contains(&p) {
                    return Err(format!(
                        "handshake failed: server chose subprotocol '{p}' that was not offered"
                    ));
                }
                Some(p)
            }
        };
        let deflate = deflate::read_answer(
            headers::find_all(raw, "Sec-WebSocket-Extensions"),
            self.offered_deflate.as_ref(),
        )?;
        Ok(Parsed::Complete(
            head_len,
            Answer::Accepted(Accepted {
                headers: headers::collect(raw),
                protocol,
                deflate,
            }),
        ))
    }
}

/// What the server answered.
#[derive(Debug)]
pub enum Answer {
    Accepted(Accepted),
    /// A redirect (301, 302, 303, 307, 308) to this location.
    Redirect(String),
}

/// A successful upgrade, seen from the client.
#[derive(Debug)]
pub struct Accepted {
    pub headers: HeaderList,
    pub protocol: Option<String>,
    /// permessage-deflate, when the server accepted it.
    pub deflate: Option<DeflateParams>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::endpoint;

    fn request(protocol: Option<&str>, user: &[(String, Vec<u8>)]) -> (ClientHandshake, String) {
        let ep = endpoint::parse("ws://example.com:8080/chat?room=1").unwrap();
        let mut out = Vec::new();
        let hs = ClientHandshake::write_request(
            &ep,
            protocol,
            Some(deflate::Offer::default()),
            user,
            &mut out,
        )
        .unwrap();
        (hs, String::from_utf8(out).unwrap())
    }

    fn answer(hs: &ClientHandshake, extra: &str) -> String {
        let accept = tungstenite::handshake::derive_accept_key(hs.key.as_bytes());
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn request_lines() {
        let user = vec![
            ("Authorization".to_string(), b"Bearer t".to_vec()),
            ("host".to_string(), b"other:1".to_vec()),
        ];
        let (hs, text) = request(Some("chat, v2"), &user);
        assert!(text.starts_with(
            "GET /chat?room=1 HTTP/1.1\r\nHost: other:1\r\nOrigin: http://example.com:8080\r\n"
        ));
        assert!(text.contains(&format!("Sec-WebSocket-Key: {}\r\n", hs.key)));
        assert!(
            text.contains("Sec-WebSocket-Protocol: chat, v2\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits\r\nAuthorization: Bearer t\r\n\r\n")
        );
        assert_eq!(
            text.matches("Host:").count() + text.matches("host:").count(),
            1
        );
        assert_eq!(hs.offered_protocols, ["chat", "v2"]);
    }

    #[test]
    fn user_header_validation() {
        let bad = |n: &str, v: &[u8]| validate_user_headers(&[(n.to_string(), v.to_vec())]);
        assert_eq!(
            bad("upgrade", b"x").unwrap_err(),
            "headers: 'Upgrade' is set by the handshake"
        );
        assert_eq!(
            bad("X-A", b"a\r\nB: c").unwrap_err(),
            "headers: value of 'X-A' contains CR, LF or NUL"
        );
        assert_eq!(
            bad("X\nA", b"a").unwrap_err(),
            "headers: invalid header name 'X\\nA'"
        );
        assert!(bad("X A", b"a").is_err());
        assert!(bad("X(A)", b"a").is_err());
        assert!(bad("", b"a").is_err());
        assert_eq!(
            bad("sec-websocket-accept", b"x").unwrap_err(),
            "headers: 'Sec-WebSocket-Accept' is set by the handshake"
        );
        assert!(bad("X-A", b"ok").is_ok());
        assert!(bad("Host", b"h:1").is_ok());
    }

    /// What the writer refuses even when no caller checked first: nothing
    /// is written then.
    #[test]
    fn writer_refuses_what_would_inject() {
        let ep = endpoint::parse("ws://example.com/").unwrap();
        let write = |ep: &Endpoint, protocol: Option<&str>, user: &[(String, Vec<u8>)]| {
            let mut out = Vec::new();
            let r = ClientHandshake::write_request(ep, protocol, None, user, &mut out);
            (r.map(|_| ()), out)
        };
        let header = |n: &str, v: &[u8]| vec![(n.to_string(), v.to_vec())];
        let cases = [
            (
                ep.clone(),
                Some("chat\r\nX-Evil: 1"),
                vec![],
                "protocol: 'chat\\r\\nX-Evil: 1' is not a valid subprotocol name",
            ),
            (
                ep.clone(),
                None,
                header("Host", b"h\r\nX-Evil: 1"),
                "headers: value of 'Host' contains CR, LF or NUL",
            ),
            (
                ep.clone(),
                None,
                header("Origin", b"o\nX: 1"),
                "headers: value of 'Origin' contains CR, LF or NUL",
            ),
            (
                ep.clone(),
                None,
                header("X\r\nEvil", b"1"),
                "headers: invalid header name 'X\\r\\nEvil'",
            ),
            (
                Endpoint {
                    resource: "/a b\r\nX: y".into(),
                    ..ep.clone()
                },
                None,
                vec![],
                "url: contains a space or control character",
            ),
            (
                Endpoint {
                    host_header: "h\r\nX: y".into(),
                    ..ep.clone()
                },
                None,
                vec![],
                "url: value of 'Host' contains CR, LF or NUL",
            ),
        ];
        for (ep, protocol, user, want) in cases {
            let (r, out) = write(&ep, protocol, &user);
            assert_eq!(r, Err(want.to_string()));
            assert!(out.is_empty(), "{want}: nothing written");
        }
        let (r, out) = write(&ep, Some("chat, v2"), &header("Host", b"other"));
        assert!(r.is_ok());
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\r\nHost: other\r\n")
        );
    }

    #[test]
    fn repeated_answer_lines() {
        let (hs, _) = request(Some("chat, v2"), &[]);
        let accept = tungstenite::handshake::derive_accept_key(hs.key.as_bytes());
        let head = |lines: &str| format!("HTTP/1.1 101 Switching Protocols\r\n{lines}\r\n");
        // List headers split over several lines are combined.
        let split = head(&format!(
            "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v2\r\n"
        ));
        match hs.read_response(split.as_bytes()).unwrap() {
            Parsed::Complete(_, Answer::Accepted(acc)) => {
                assert_eq!(acc.protocol.as_deref(), Some("v2"));
                assert!(
                    acc.headers
                        .iter()
                        .any(|(k, v)| k == "Connection" && v == b"keep-alive, Upgrade")
                );
            }
            other => panic!("not accepted: {other:?}"),
        }
        let upgrade = head(&format!(
            "Upgrade: h2c\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        ));
        assert!(hs.read_response(upgrade.as_bytes()).is_ok());
        // A second accept, forged or not, is refused.
        for second in [accept.as_str(), "Zm9yZ2Vk"] {
            let twice = head(&format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Accept: {second}\r\n"
            ));
            assert_eq!(
                hs.read_response(twice.as_bytes()).unwrap_err(),
                "handshake failed: repeated Sec-WebSocket-Accept"
            );
        }
        // Two protocol lines are two protocols: the server chose both.
        let two = answer(
            &hs,
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: v2\r\n",
        );
        assert_eq!(
            hs.read_response(two.as_bytes()).unwrap_err(),
            "handshake failed: server chose subprotocol 'chat, v2' that was not offered"
        );
    }

    #[test]
    fn accepts_valid_answer() {
        let (hs, _) = request(Some("chat"), &[]);
        let mut text =
            answer(&hs, "Sec-WebSocket-Protocol: chat\r\nSet-Cookie: a=1\r\n").into_bytes();
        text.extend_from_slice(&[0x81, 0x00]);
        match hs.read_response(&text).unwrap() {
            Parsed::Complete(n, Answer::Redirect(_)) => panic!("not a redirect: {n}"),
            Parsed::Complete(n, Answer::Accepted(acc)) => {
                assert_eq!(n, text.len() - 2);
                assert_eq!(acc.protocol.as_deref(), Some("chat"));
                assert!(
                    acc.headers
                        .iter()
                        .any(|(k, v)| k == "Set-Cookie" && v == b"a=1")
                );
            }
            Parsed::Incomplete => panic!("incomplete"),
        }
        assert!(matches!(
            hs.read_response(&text[..20]),
            Ok(Parsed::Incomplete)
        ));
    }

    #[test]
    fn refuses_bad_answers() {
        let (hs, _) = request(None, &[]);
        let e = hs
            .read_response(b"HTTP/1.1 404 Not Found\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, "handshake failed: HTTP 404 Not Found");
        let wrong = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(
            hs.read_response(wrong.as_bytes())
                .unwrap_err()
                .contains("Accept")
        );
        let unoffered = answer(&hs, "Sec-WebSocket-Protocol: chat\r\n");
        assert!(
            hs.read_response(unoffered.as_bytes())
                .unwrap_err()
                .contains("not offered")
        );
        let moved = hs
            .read_response(b"HTTP/1.1 301 Moved\r\nLocation: /next\r\n\r\n")
            .unwrap();
        assert!(matches!(moved, Parsed::Complete(_, Answer::Redirect(l)) if l == "/next"));
        let nowhere = hs.read_response(b"HTTP/1.1 302 Found\r\n\r\n").unwrap_err();
        assert_eq!(nowhere, "handshake failed: HTTP 302 Found");
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(hs.read_response(&huge).is_err());
    }
}
