//! Topics across processes: a bridge to a Redis server's pub/sub, so
//! that a publish in any process reaches the subscribers of all.
//!
//! [`url`] reads the server's address, [`envelope`] is what goes on a
//! channel, [`backoff`] when to retry, [`resp`] one RESP2 connection over
//! a non-blocking socket, and [`bridge`] the two connections' state
//! machine.  It uses `client::resolver` (name lookups off the loop),
//! `protocol::utf8` and `topics::TopicName`, nothing else of the crate.

pub mod backoff;
pub mod bridge;
pub mod envelope;
pub mod resp;
pub mod url;

pub use bridge::{Bridge, Event, Interest, Side, Stats};
use url::RedisUrl;

/// The Redis channel of topic T is `prefix` . T.
pub const DEFAULT_PREFIX: &[u8] = b"ews:";

/// A context's `pubsub` settings (its callbacks stay in the binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: RedisUrl,
    pub prefix: Vec<u8>,
}

impl Settings {
    /// From the hash's (key, value) pairs, a value `None` when it is not
    /// a string; the binding has taken out `on_connect` and `on_error`.
    pub fn from_pairs(pairs: &[(&[u8], Option<&[u8]>)]) -> Result<Settings, String> {
        let mut url = None;
        let mut prefix = DEFAULT_PREFIX.to_vec();
        for &(key, value) in pairs {
            let name = String::from_utf8_lossy(key);
            if key != b"redis" && key != b"prefix" {
                return Err(format!(
                    "pubsub: unknown key '{name}' (known: redis, prefix, on_connect, on_error)"
                ));
            }
            let value = value.ok_or_else(|| format!("pubsub: {name} must be a string"))?;
            if key == b"prefix" {
                prefix = value.to_vec();
                continue;
            }
            let text = std::str::from_utf8(value)
                .map_err(|_| "pubsub: redis must be a redis:// URL".to_string())?;
            url = Some(RedisUrl::parse(text).map_err(|e| format!("pubsub: redis: {e}"))?);
        }
        let url = url.ok_or("pubsub: redis is required (a redis:// URL)")?;
        Ok(Settings { url, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_pairs() {
        let s = Settings::from_pairs(&[(b"redis", Some(b"redis://127.0.0.1:1234"))]).unwrap();
        assert_eq!((s.url.port, s.prefix.as_slice()), (1234, DEFAULT_PREFIX));
        let s = Settings::from_pairs(&[(b"prefix", Some(b"app:")), (b"redis", Some(b"redis://h"))])
            .unwrap();
        assert_eq!(s.prefix, b"app:");
    }

    #[test]
    fn bad_settings_say_which() {
        let err = |p: &[(&[u8], Option<&[u8]>)]| Settings::from_pairs(p).unwrap_err();
        assert_eq!(
            err(&[(b"host", Some(b"x"))]),
            "pubsub: unknown key 'host' (known: redis, prefix, on_connect, on_error)"
        );
        assert_eq!(err(&[]), "pubsub: redis is required (a redis:// URL)");
        assert_eq!(err(&[(b"prefix", None)]), "pubsub: prefix must be a string");
        assert_eq!(
            err(&[(b"redis", Some(b"http://h"))]),
            "pubsub: redis: scheme must be redis://, not http://"
        );
    }
}
