//! rustls errors as texts a person can act on: what is wrong, and the fix.

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};

/// Which end of the session we are: the peer's certificate is a server's
/// for a client, a client's for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn of(session: &rustls::Connection) -> Side {
        match session {
            rustls::Connection::Client(_) => Side::Client,
            rustls::Connection::Server(_) => Side::Server,
        }
    }

    fn peer(self) -> &'static str {
        match self {
            Side::Client => "server",
            Side::Server => "client",
        }
    }
}

const MAKING_CERTIFICATES: &str = "see \"Making certificates\" in EV::Websockets";

/// The text for a failed TLS session (without the `TLS handshake failed: `
/// or `TLS error: ` prefix).
pub fn explain(err: &Error, side: Side) -> String {
    match err {
        Error::InvalidCertificate(cert) => certificate(cert, side),
        Error::InvalidMessage(InvalidMessage::InvalidContentType) => match side {
            Side::Client => "the server does not speak TLS: use ws://".into(),
            Side::Server => "the client does not speak TLS (a ws:// client?)".into(),
        },
        Error::NoCertificatesPresented => {
            "the client sent no certificate, and this listener's ssl_ca requires one".into()
        }
        Error::AlertReceived(alert) => alert_received(*alert, side),
        other => other.to_string(),
    }
}

/// The peer's certificate was refused here.
fn certificate(err: &CertificateError, side: Side) -> String {
    let whose = format!("the {}'s certificate", side.peer());
    match err {
        CertificateError::UnknownIssuer => {
            let trust = match side {
                Side::Client => "ssl_ca (or the system's trust store)",
                Side::Server => "this listener's ssl_ca",
            };
            format!(
                "{whose} is not signed by a CA in {trust}: give the CA certificate that \
                 signed it as ssl_ca (a self-signed certificate is not its own CA; \
                 {MAKING_CERTIFICATES})"
            )
        }
        CertificateError::Other(other)
            if other.0.downcast_ref::<webpki::Error>()
                == Some(&webpki::Error::CaUsedAsEndEntity) =>
        {
            format!(
                "{whose} is a CA certificate, not a {} certificate: make a CA and sign a {} \
                 certificate with it ({MAKING_CERTIFICATES})",
                side.peer(),
                side.peer()
            )
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<&str> = presented.iter().filter_map(|n| presented_name(n)).collect();
            let is_for = if names.is_empty() {
                "names no host".to_string()
            } else {
                format!("is for {}", names.join(", "))
            };
            format!(
                "{whose} {is_for}, not {}: connect to a name it is for, or make a certificate \
                 for this one ({MAKING_CERTIFICATES})",
                expected.to_str()
            )
        }
        CertificateError::NotValidForName => {
            format!("{whose} is not for this host name ({MAKING_CERTIFICATES})")
        }
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "{whose} expired on {}: renew it (or check this machine's clock)",
            utc(*not_after)
        ),
        CertificateError::Expired => {
            format!("{whose} has expired: renew it (or check this machine's clock)")
        }
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "{whose} is not valid before {}: check this machine's clock",
            utc(*not_before)
        ),
        CertificateError::NotValidYet => {
            format!("{whose} is not valid yet: check this machine's clock")
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            let usage = match side {
                Side::Client => "serverAuth",
                Side::Server => "clientAuth",
            };
            format!(
                "{whose} is not for a TLS {}: make one with extendedKeyUsage {usage} \
                 ({MAKING_CERTIFICATES})",
                side.peer()
            )
        }
        CertificateError::Revoked => format!("{whose} has been revoked"),
        CertificateError::BadSignature => format!(
            "{whose} has a bad signature: it was not signed by the CA it names (another CA of \
             the same name?)"
        ),
        CertificateError::BadEncoding => format!("{whose} is malformed"),
        other => format!(
            "{whose} was refused: {}",
            Error::InvalidCertificate(other.clone())
        ),
    }
}

/// The peer refused the handshake with this alert.
fn alert_received(alert: AlertDescription, side: Side) -> String {
    match (alert, side) {
        (AlertDescription::CertificateRequired, Side::Client) => {
            "the server requires a client certificate: give the context ssl_cert and ssl_key".into()
        }
        (AlertDescription::UnknownCA, Side::Client) => {
            "the server does not trust our client certificate: sign it with a CA in the \
             server's ssl_ca"
                .into()
        }
        (
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown,
            Side::Client,
        ) => format!(
            "the server refused our client certificate ({alert:?}): it must be valid now, \
             signed by a CA in the server's ssl_ca, with extendedKeyUsage clientAuth"
        ),
        (
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown,
            Side::Server,
        ) => format!("the client refused this server's certificate ({alert:?})"),
        (AlertDescription::ProtocolVersion, _) => format!(
            "the {} offers no TLS version in common (TLS 1.2 and 1.3 are offered here)",
            side.peer()
        ),
        _ => Error::AlertReceived(alert).to_string(),
    }
}

/// `DnsName("a.example")` or `IpAddress(127.0.0.1)`, as rustls lists the
/// names a certificate is for, as the bare name.
fn presented_name(debug: &str) -> Option<&str> {
    if let Some(dns) = debug.strip_prefix("DnsName(\"") {
        return dns.strip_suffix("\")");
    }
    debug.strip_prefix("IpAddress(")?.strip_suffix(')')
}

/// What a non-TLS client reads when it talks to a TLS port: a TLS record
/// (an alert or a handshake message) where an HTTP answer should be.
pub fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// `2030-01-31 23:59:59 UTC`.
fn utc(time: UnixTime) -> String {
    let secs = time.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The calendar date `days` after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::OtherError;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;
    use std::time::Duration;

    fn client(err: Error) -> String {
        explain(&err, Side::Client)
    }

    fn cert(err: CertificateError) -> Error {
        Error::InvalidCertificate(err)
    }

    #[test]
    fn a_ca_as_the_server_certificate() {
        let other = OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity));
        assert_eq!(
            client(cert(CertificateError::Other(other))),
            "the server's certificate is a CA certificate, not a server certificate: make a CA \
             and sign a server certificate with it (see \"Making certificates\" in EV::Websockets)"
        );
        let unrelated = OtherError(Arc::new(webpki::Error::BadDer));
        assert!(client(cert(CertificateError::Other(unrelated))).contains("was refused"));
    }

    #[test]
    fn untrusted_points_at_ssl_ca() {
        let text = client(cert(CertificateError::UnknownIssuer));
        assert!(text.starts_with(
            "the server's certificate is not signed by a CA in ssl_ca (or the system's trust \
             store): give the CA certificate that signed it as ssl_ca"
        ));
        let text = explain(&cert(CertificateError::UnknownIssuer), Side::Server);
        assert!(text.starts_with(
            "the client's certificate is not signed by a CA in this listener's ssl_ca"
        ));
    }

    #[test]
    fn a_name_mismatch_says_which_names() {
        let err = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec![
                "DnsName(\"wrong.example\")".into(),
                "IpAddress(10.0.0.1)".into(),
                "DirectoryName".into(),
            ],
        };
        assert_eq!(
            client(cert(err)),
            "the server's certificate is for wrong.example, 10.0.0.1, not 127.0.0.1: connect to \
             a name it is for, or make a certificate for this one (see \"Making certificates\" \
             in EV::Websockets)"
        );
        let none = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("h.example").unwrap(),
            presented: vec![],
        };
        assert!(
            client(cert(none))
                .starts_with("the server's certificate names no host, not h.example:")
        );
    }

    #[test]
    fn validity_dates() {
        let at = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        let expired = CertificateError::ExpiredContext {
            time: at(1_800_000_000),
            not_after: at(951_782_400 + 86_399),
        };
        assert_eq!(
            client(cert(expired)),
            "the server's certificate expired on 2000-02-29 23:59:59 UTC: renew it (or check \
             this machine's clock)"
        );
        let early = CertificateError::NotValidYetContext {
            time: at(0),
            not_before: at(4_102_444_800),
        };
        assert_eq!(
            client(cert(early)),
            "the server's certificate is not valid before 2100-01-01 00:00:00 UTC: check this \
             machine's clock"
        );
        assert_eq!(utc(at(0)), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn a_peer_that_does_not_speak_tls() {
        let plain = Error::InvalidMessage(InvalidMessage::InvalidContentType);
        assert_eq!(
            client(plain.clone()),
            "the server does not speak TLS: use ws://"
        );
        assert_eq!(
            explain(&plain, Side::Server),
            "the client does not speak TLS (a ws:// client?)"
        );
        assert!(is_tls_record(b"\x15\x03\x03\x00\x02\x02\x32"));
        assert!(is_tls_record(b"\x16\x03\x01\x02\x00"));
        assert!(!is_tls_record(b"HTTP/1.1 200 OK\r\n"));
        assert!(!is_tls_record(b"\x15"));
    }

    #[test]
    fn client_certificates() {
        assert_eq!(
            client(Error::AlertReceived(AlertDescription::CertificateRequired)),
            "the server requires a client certificate: give the context ssl_cert and ssl_key"
        );
        assert!(
            client(Error::AlertReceived(
                AlertDescription::UnsupportedCertificate
            ))
            .starts_with("the server refused our client certificate (UnsupportedCertificate)")
        );
        assert_eq!(
            explain(&Error::NoCertificatesPresented, Side::Server),
            "the client sent no certificate, and this listener's ssl_ca requires one"
        );
        assert_eq!(
            explain(&cert(CertificateError::InvalidPurpose), Side::Client),
            "the server's certificate is not for a TLS server: make one with extendedKeyUsage \
             serverAuth (see \"Making certificates\" in EV::Websockets)"
        );
    }

    #[test]
    fn anything_else_keeps_rustls_words() {
        assert_eq!(
            client(Error::AlertReceived(AlertDescription::InternalError)),
            "received fatal alert: InternalError"
        );
        assert_eq!(client(Error::DecryptError), Error::DecryptError.to_string());
    }
}
