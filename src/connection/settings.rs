//! What a connection is configured with: the settings both sides share,
//! a client's `connect` options and what a listener gives the connections
//! it accepts.

use std::sync::Arc;
use std::time::Duration;

use crate::client::proxy::ProxySettings;
use crate::net::tls::ClientTls;
use crate::protocol::deflate::Offer;
use crate::server::handshake::ServerPolicy;

/// Handshake deadline of a client that did not set `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a closing handshake may wait for the peer.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server waits for a complete upgrade request.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message a server accepts when `max_message_size` is not given
/// (a client's default is unlimited).
pub const DEFAULT_SERVER_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Settings that client and server connections share.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Largest message accepted; 0 means unlimited (the default of
    /// clients; servers default to [`DEFAULT_SERVER_MAX_MESSAGE`]).
    pub max_message: usize,
    /// How long a closing handshake waits for the peer.
    pub close_timeout: Duration,
    /// Ping after this long without hearing from the peer.
    pub ping_interval: Option<Duration>,
    /// Fail the connection when a ping's pong takes longer than this
    /// (default: the interval).
    pub ping_timeout: Option<Duration>,
    /// Most user payload bytes the send queue may hold; a message that
    /// would pass it is not queued.  0 means unlimited (the default).
    pub max_backpressure: usize,
    /// A message over `max_backpressure` closes the connection (1008)
    /// rather than being dropped alone.
    pub close_on_backpressure_limit: bool,
    /// Close (1001) an open connection on which nothing was read or
    /// written for this long.
    pub idle_timeout: Option<Duration>,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            max_message: 0,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ping_interval: None,
            ping_timeout: None,
            max_backpressure: 0,
            close_on_backpressure_limit: false,
            idle_timeout: None,
        }
    }
}

/// What `connect` was asked for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    pub protocol: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Offer permessage-deflate, so (`None`: do not).
    pub compression: Option<Offer>,
    pub connect_timeout: Duration,
    pub session: SessionSettings,
    /// For wss://: the context's TLS settings, and whether to verify.
    pub tls: Option<Arc<ClientTls>>,
    pub verify: bool,
    /// The context's proxies.
    pub proxies: Arc<ProxySettings>,
}

impl ClientOptions {
    pub fn new(url: &str) -> ClientOptions {
        ClientOptions {
            url: url.to_string(),
            protocol: None,
            headers: Vec::new(),
            compression: Some(Offer::default()),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            session: SessionSettings::default(),
            tls: None,
            verify: true,
            proxies: Arc::default(),
        }
    }
}

/// What a listener gives each connection it accepts.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub policy: ServerPolicy,
    pub handshake_timeout: Duration,
    pub session: SessionSettings,
    /// Serve wss:// with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            policy: ServerPolicy {
                max_head: crate::protocol::handshake::MAX_HEAD,
                ..ServerPolicy::default()
            },
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            session: SessionSettings {
                max_message: DEFAULT_SERVER_MAX_MESSAGE,
                ..SessionSettings::default()
            },
            tls: None,
        }
    }
}
