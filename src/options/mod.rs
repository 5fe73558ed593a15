//! The options of the Perl API's calls (`new`, `connect`, `listen`,
//! `adopt`), defined once: [`OPTIONS`] gives each option's name, the calls
//! that take it, the shape its value comes in, and what it sets.
//!
//! The binding looks a name up ([`Options::find`]), converts the Perl
//! value by its [`Shape`] into a [`Value`] and hands it to
//! [`Options::set`]; every check of a value, and the message it fails
//! with, lives here.  Callbacks and the options that are Perl objects
//! (`loop`, `fh`) stay in the binding.  Adding an option: a row in
//! [`OPTIONS`], and the code that reads its field.

use std::net::IpAddr;

use crate::client::handshake::validate_user_headers;
use crate::client::proxy::{Proxy, ProxyKind, ProxySettings};
use crate::connection::{
    Bind, ClientOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, ServerSettings,
    SessionSettings,
};
use crate::net::tls::{self, ClientTls};
use crate::protocol::deflate::Offer;
use crate::protocol::handshake::MAX_HEAD;
use crate::protocol::wire;

mod compression;
mod value;

use compression::Compression;
pub use value::Value;

/// The call whose options are being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    New,
    Connect,
    Listen,
    Adopt,
}

impl Call {
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// How Perl gives an option's value; the binding converts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A number (read once; a string that does not look like one is not).
    Number,
    /// A string of bytes.
    Text,
    /// Perl truth.
    Bool,
    /// A name, or an array reference of names.
    Names,
    /// A hash reference of header names and values.
    Headers,
    /// A name or a truth (given as both), or a hash reference of settings.
    Choice,
}

/// What `new` sets up for the context's clients.
#[derive(Debug)]
pub struct ContextOptions {
    /// `None`: from the environment; `Some("")`: no proxy.
    pub proxy: Option<String>,
    pub proxy_port: u16,
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<String>,
    pub ssl_ca: Option<String>,
}

/// What `listen` binds, besides the server settings.
#[derive(Debug, Default)]
pub struct ListenOptions {
    pub host: Option<String>,
    pub port: u16,
    pub reuse_port: bool,
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<String>,
    pub ssl_ca: Option<String>,
}

/// The options of one call, as gathered so far.
#[derive(Debug)]
pub struct Options {
    call: Call,
    pub context: ContextOptions,
    /// connect (`url` empty until given).
    pub client: ClientOptions,
    url_given: bool,
    /// listen and adopt.
    pub server: ServerSettings,
    pub listen: ListenOptions,
    /// adopt: bytes already read from the socket.
    pub initial_data: Vec<u8>,
    /// listen and adopt: `compression` and `context_takeover`, weighed
    /// together by [`Options::server_settings`].
    compression: Compression,
    context_takeover: Option<bool>,
}

type Setter = fn(&mut Options, &'static str, Value<'_>) -> Result<(), String>;

/// One option.
pub struct OptionSpec {
    pub name: &'static str,
    /// Bits of the [`Call`]s that take it.
    calls: u8,
    pub shape: Shape,
    set: Setter,
}

const NEW: u8 = Call::New.bit();
const CONNECT: u8 = Call::Connect.bit();
const SERVER: u8 = Call::Listen.bit() | Call::Adopt.bit();
const LISTEN: u8 = Call::Listen.bit();
const SESSION: u8 = CONNECT | SERVER;

const fn opt(name: &'static str, calls: u8, shape: Shape, set: Setter) -> OptionSpec {
    OptionSpec {
        name,
        calls,
        shape,
        set,
    }
}

/// Every option of every call.  A name may appear twice with different
/// calls (connect's `protocol` is one name, a server's a list).
pub static OPTIONS: &[OptionSpec] = &[
    // new
    opt("proxy", NEW, Shape::Text, |o, _, v| {
        o.context.proxy = v.text();
        Ok(())
    }),
    opt("proxy_port", NEW, Shape::Number, |o, name, v| {
        let message = || format!("{name} must be a port number from 1 to 65535");
        o.context.proxy_port = v.port(1.0, message)?.unwrap_or(DEFAULT_PROXY_PORT);
        Ok(())
    }),
    opt("ssl_cert", NEW, Shape::Text, |o, name, v| {
        o.context.ssl_cert = v.file(name)?;
        Ok(())
    }),
    opt("ssl_key", NEW, Shape::Text, |o, name, v| {
        o.context.ssl_key = v.file(name)?;
        Ok(())
    }),
    opt("ssl_ca", NEW, Shape::Text, |o, name, v| {
        o.context.ssl_ca = v.file(name)?;
        Ok(())
    }),
    // The original's call to initialise its TLS library: nothing to do.
    opt("ssl_init", NEW, Shape::Bool, |_, _, _| Ok(())),
    // connect
    opt("url", CONNECT, Shape::Text, |o, _, v| {
        o.url_given = v != Value::Undef;
        o.client.url = v.text().unwrap_or_default();
        Ok(())
    }),
    opt("protocol", CONNECT, Shape::Text, |o, _, v| {
        o.client.protocol = v.text();
        Ok(())
    }),
    opt("headers", CONNECT, Shape::Headers, |o, _, v| {
        o.client.headers = v.list();
        Ok(())
    }),
    opt("connect_timeout", CONNECT, Shape::Number, |o, name, v| {
        o.client.connect_timeout = v.seconds(name)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        Ok(())
    }),
    opt("ssl_verify", CONNECT, Shape::Bool, |o, _, v| {
        o.client.verify = v.flag().unwrap_or(true);
        Ok(())
    }),
    // both sides
    opt("compression", CONNECT, Shape::Choice, |o, _, v| {
        o.client.compression = match Compression::from_value(v)? {
            Compression::Off => None,
            Compression::Default | Compression::On => Some(Offer::default()),
            Compression::Tuned { settings, .. } => Some(Offer::from(settings)),
        };
        Ok(())
    }),
    opt("compression", SERVER, Shape::Choice, |o, _, v| {
        o.compression = Compression::from_value(v)?;
        Ok(())
    }),
    opt("max_message_size", SESSION, Shape::Number, |o, name, v| {
        let default = o.default_session().max_message;
        o.session().max_message = v.bytes(name)?.unwrap_or(default);
        Ok(())
    }),
    opt("close_timeout", SESSION, Shape::Number, |o, name, v| {
        let default = o.default_session().close_timeout;
        o.session().close_timeout = v.seconds(name)?.unwrap_or(default);
        Ok(())
    }),
    opt("ping_interval", SESSION, Shape::Number, |o, name, v| {
        o.session().ping_interval = v.seconds(name)?;
        Ok(())
    }),
    opt("ping_timeout", SESSION, Shape::Number, |o, name, v| {
        o.session().ping_timeout = v.seconds(name)?;
        Ok(())
    }),
    opt("idle_timeout", SESSION, Shape::Number, |o, name, v| {
        o.session().idle_timeout = v.seconds(name)?;
        Ok(())
    }),
    opt("max_backpressure", SESSION, Shape::Number, |o, name, v| {
        o.session().max_backpressure = v.bytes(name)?.unwrap_or(0);
        Ok(())
    }),
    opt(
        "close_on_backpressure_limit",
        SESSION,
        Shape::Bool,
        |o, _, v| {
            o.session().close_on_backpressure_limit = v.flag().unwrap_or(false);
            Ok(())
        },
    ),
    // listen and adopt
    opt("protocol", SERVER, Shape::Names, |o, name, v| {
        if o.call == Call::Listen {
            v.defined_text(name)?;
        }
        o.server.policy.protocols = v.list().into_iter().map(|(name, _)| name).collect();
        Ok(())
    }),
    opt("headers", SERVER, Shape::Headers, |o, _, v| {
        o.server.policy.headers = v.list();
        Ok(())
    }),
    opt("handshake_timeout", SERVER, Shape::Number, |o, name, v| {
        o.server.handshake_timeout = v.seconds(name)?.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        Ok(())
    }),
    opt("max_header_size", SERVER, Shape::Number, |o, name, v| {
        let size = v.bytes(name)?.filter(|&n| n > 0);
        o.server.policy.max_head = size.unwrap_or(MAX_HEAD);
        Ok(())
    }),
    opt("context_takeover", SERVER, Shape::Bool, |o, _, v| {
        o.context_takeover = v.flag();
        Ok(())
    }),
    // listen
    opt("port", LISTEN, Shape::Number, |o, _, v| {
        o.listen.port = v
            .port(0.0, || "listen: port must be 0-65535".into())?
            .unwrap_or(0);
        Ok(())
    }),
    opt("host", LISTEN, Shape::Text, |o, _, v| {
        o.listen.host = v.text();
        Ok(())
    }),
    opt("reuse_port", LISTEN, Shape::Bool, |o, _, v| {
        o.listen.reuse_port = v.flag().unwrap_or(false);
        Ok(())
    }),
    // The original's vhost name: every listener serves every name.
    opt("name", LISTEN, Shape::Text, |_, name, v| {
        match v.defined_text(name)?.as_deref() {
            Some("default") => Err("listen: vhost name 'default' is reserved".into()),
            _ => Ok(()),
        }
    }),
    opt("ssl_cert", LISTEN, Shape::Text, |o, name, v| {
        v.defined_text(name)?;
        o.listen.ssl_cert = v.file(name)?;
        Ok(())
    }),
    opt("ssl_key", LISTEN, Shape::Text, |o, name, v| {
        v.defined_text(name)?;
        o.listen.ssl_key = v.file(name)?;
        Ok(())
    }),
    opt("ssl_ca", LISTEN, Shape::Text, |o, name, v| {
        v.defined_text(name)?;
        o.listen.ssl_ca = v.file(name)?;
        Ok(())
    }),
    // adopt
    opt("initial_data", Call::Adopt.bit(), Shape::Text, |o, _, v| {
        o.initial_data = v.text().map(String::into_bytes).unwrap_or_default();
        Ok(())
    }),
];

/// Where a proxy given without `proxy_port` listens.
const DEFAULT_PROXY_PORT: u16 = 1080;

impl Options {
    pub fn new(call: Call) -> Options {
        Options {
            call,
            context: ContextOptions {
                proxy: None,
                proxy_port: DEFAULT_PROXY_PORT,
                ssl_cert: None,
                ssl_key: None,
                ssl_ca: None,
            },
            client: ClientOptions::new(""),
            url_given: false,
            server: ServerSettings::default(),
            listen: ListenOptions::default(),
            initial_data: Vec::new(),
            compression: Compression::Default,
            context_takeover: None,
        }
    }

    /// The index of the option `name` of this call, if it has one.
    pub fn find(&self, name: &[u8]) -> Option<usize> {
        OPTIONS
            .iter()
            .position(|o| o.calls & self.call.bit() != 0 && o.name.as_bytes() == name)
    }

    /// Set option `index` (from [`Options::find`]); a later value replaces
    /// an earlier one.  The error is the message to croak with.
    pub fn set(&mut self, index: usize, value: Value<'_>) -> Result<(), String> {
        let spec = &OPTIONS[index];
        (spec.set)(self, spec.name, value)
    }

    /// The checks that look at several options, once all are set.
    pub fn check(&self) -> Result<(), String> {
        if matches!(self.call, Call::Listen | Call::Adopt) {
            self.check_context_takeover()?;
        }
        match self.call {
            Call::Connect if !self.url_given => Err("url parameter is required".into()),
            Call::Listen => match (&self.listen.ssl_cert, &self.listen.ssl_key) {
                (Some(_), None) | (None, Some(_)) => Err(format!(
                    "listen: ssl_cert and ssl_key must both be set for TLS (only {} was given)",
                    if self.listen.ssl_cert.is_some() {
                        "ssl_cert"
                    } else {
                        "ssl_key"
                    }
                )),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// listen and adopt: `context_takeover` may not contradict what a
    /// preset or a hash says of it.
    fn check_context_takeover(&self) -> Result<(), String> {
        match (self.compression, self.context_takeover) {
            (
                Compression::Tuned {
                    settings,
                    label: Some(label),
                },
                Some(t),
            ) if t != settings.context_takeover => Err(format!(
                "context_takeover => {} contradicts compression => {}",
                u8::from(t),
                if label.starts_with('{') {
                    label.to_string()
                } else {
                    format!("'{label}'")
                }
            )),
            _ => Ok(()),
        }
    }

    fn session(&mut self) -> &mut SessionSettings {
        match self.call {
            Call::Connect => &mut self.client.session,
            _ => &mut self.server.session,
        }
    }

    fn default_session(&self) -> SessionSettings {
        match self.call {
            Call::Connect => SessionSettings::default(),
            _ => ServerSettings::default().session,
        }
    }

    /// `new`: the context's TLS client settings (the files are read now,
    /// so a bad one fails `new`).
    pub fn client_tls(&self) -> Result<ClientTls, String> {
        let c = &self.context;
        ClientTls::new(
            c.ssl_cert.as_deref(),
            c.ssl_key.as_deref(),
            c.ssl_ca.as_deref(),
        )
    }

    /// `new`: how the context's clients reach servers.
    pub fn proxies(&self) -> ProxySettings {
        let from_env = ProxySettings::from_env();
        match self.context.proxy.as_deref() {
            None => from_env,
            Some("") => ProxySettings::default(),
            Some(host) => ProxySettings {
                proxy: Some(Proxy {
                    kind: ProxyKind::Http,
                    host: host.to_string(),
                    port: self.context.proxy_port,
                    auth: None,
                }),
                bypass: from_env.bypass,
            },
        }
    }

    /// listen and adopt: the settings each connection gets, checked.
    pub fn server_settings(&self) -> Result<ServerSettings, String> {
        let mut settings = self.server.clone();
        let policy = &mut settings.policy;
        policy.context_takeover = self.context_takeover.unwrap_or(false);
        match self.compression {
            Compression::Default | Compression::Off => policy.compression = false,
            Compression::On => policy.compression = true,
            Compression::Tuned { settings: s, label } => {
                policy.compression = true;
                policy.deflate_memory = s.memory;
                policy.context_takeover = match label {
                    Some(_) => s.context_takeover,
                    None => self.context_takeover.unwrap_or(true),
                };
            }
        }
        for p in &settings.policy.protocols {
            wire::check_protocol(p).map_err(|why| format!("protocol: {why}"))?;
        }
        validate_user_headers(&settings.policy.headers)?;
        let l = &self.listen;
        if let (Some(cert), Some(key)) = (&l.ssl_cert, &l.ssl_key) {
            settings.tls = Some(tls::server_config(cert, key, l.ssl_ca.as_deref())?);
        }
        Ok(settings)
    }

    /// listen: where to bind.
    pub fn bind(&self) -> Result<Bind, String> {
        let host = match &self.listen.host {
            None => None,
            Some(host) => Some(
                host.parse::<IpAddr>()
                    .map_err(|_| format!("host must be an IP address, not '{host}'"))?,
            ),
        };
        Ok(Bind {
            host,
            port: self.listen.port,
            reuse_port: self.listen.reuse_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::Memory;
    use std::time::Duration;

    fn set(call: Call, name: &str, value: Value<'_>) -> Result<Options, String> {
        let mut o = Options::new(call);
        let i = o
            .find(name.as_bytes())
            .unwrap_or_else(|| panic!("{name} is an option"));
        o.set(i, value)?;
        Ok(o)
    }

    #[test]
    fn every_name_is_unique_per_call() {
        for call in [Call::New, Call::Connect, Call::Listen, Call::Adopt] {
            let mut names: Vec<_> = OPTIONS
                .iter()
                .filter(|o| o.calls & call.bit() != 0)
                .map(|o| o.name)
                .collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{call:?} has a name twice");
        }
    }

    #[test]
    fn options_belong_to_their_calls() {
        let o = Options::new(Call::Connect);
        assert!(o.find(b"url").is_some());
        assert!(o.find(b"port").is_none());
        assert!(
            o.find(b"on_message").is_none(),
            "callbacks are the binding's"
        );
        assert!(Options::new(Call::Adopt).find(b"initial_data").is_some());
        assert!(Options::new(Call::Listen).find(b"initial_data").is_none());
    }

    #[test]
    fn numbers_are_checked_with_the_options_name() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e10] {
            assert_eq!(
                set(Call::Connect, "connect_timeout", Value::Number(Some(bad))).unwrap_err(),
                "connect_timeout must be a number of seconds from 0 to 1000000000"
            );
        }
        assert_eq!(
            set(Call::Listen, "max_header_size", Value::Number(None)).unwrap_err(),
            "max_header_size must be a number of bytes from 0 to 9007199254740992"
        );
        assert_eq!(
            set(Call::New, "proxy_port", Value::Number(Some(0.0))).unwrap_err(),
            "proxy_port must be a port number from 1 to 65535"
        );
        assert_eq!(
            set(Call::Listen, "port", Value::Number(Some(65536.0))).unwrap_err(),
            "listen: port must be 0-65535"
        );
        let o = set(Call::Connect, "close_timeout", Value::Number(Some(1e9))).unwrap();
        assert_eq!(
            o.client.session.close_timeout,
            Duration::from_secs(1_000_000_000)
        );
    }

    #[test]
    fn zero_seconds_and_undef_mean_the_default() {
        let o = set(Call::Connect, "connect_timeout", Value::Number(Some(0.0))).unwrap();
        assert_eq!(o.client.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let o = set(Call::Adopt, "ping_interval", Value::Undef).unwrap();
        assert_eq!(o.server.session.ping_interval, None);
        let o = set(Call::Connect, "idle_timeout", Value::Number(Some(0.0))).unwrap();
        assert_eq!(o.client.session.idle_timeout, None);
        let o = set(Call::Listen, "idle_timeout", Value::Number(Some(0.5))).unwrap();
        assert_eq!(
            o.server.session.idle_timeout,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            set(Call::Adopt, "idle_timeout", Value::Number(Some(-1.0))).unwrap_err(),
            "idle_timeout must be a number of seconds from 0 to 1000000000"
        );
    }

    #[test]
    fn max_message_size_defaults_differ_by_side() {
        let client = set(Call::Connect, "max_message_size", Value::Undef).unwrap();
        assert_eq!(client.client.session.max_message, 0);
        let server = set(Call::Listen, "max_message_size", Value::Undef).unwrap();
        assert_eq!(
            server.server.session.max_message,
            ServerSettings::default().session.max_message
        );
        let unlimited = set(Call::Adopt, "max_message_size", Value::Number(Some(0.0))).unwrap();
        assert_eq!(unlimited.server.session.max_message, 0);
    }

    #[test]
    fn backpressure_limit_is_bytes_and_defaults_to_none() {
        let o = set(Call::Connect, "max_backpressure", Value::Undef).unwrap();
        assert_eq!(o.client.session.max_backpressure, 0);
        let o = set(
            Call::Adopt,
            "max_backpressure",
            Value::Number(Some(65536.5)),
        )
        .unwrap();
        assert_eq!(o.server.session.max_backpressure, 65536);
        assert_eq!(
            set(Call::Listen, "max_backpressure", Value::Number(Some(-1.0))).unwrap_err(),
            "max_backpressure must be a number of bytes from 0 to 9007199254740992"
        );
        let o = set(
            Call::Listen,
            "close_on_backpressure_limit",
            Value::Bool(true),
        )
        .unwrap();
        assert!(o.server.session.close_on_backpressure_limit);
        let o = set(Call::Connect, "close_on_backpressure_limit", Value::Undef).unwrap();
        assert!(!o.client.session.close_on_backpressure_limit);
    }

    #[test]
    fn listen_strings_must_be_defined() {
        for name in ["name", "protocol", "ssl_cert", "ssl_key", "ssl_ca"] {
            assert_eq!(
                set(Call::Listen, name, Value::Undef).unwrap_err(),
                format!("listen: option '{name}' must be a defined string")
            );
        }
        assert!(set(Call::Adopt, "protocol", Value::Undef).is_ok());
        assert_eq!(
            set(Call::Listen, "name", Value::Text(b"default")).unwrap_err(),
            "listen: vhost name 'default' is reserved"
        );
    }

    #[test]
    fn file_names() {
        let o = set(Call::New, "ssl_ca", Value::Text(b"0")).unwrap();
        assert_eq!(o.context.ssl_ca, None);
        assert_eq!(
            set(Call::New, "ssl_ca", Value::Text(b"a\0b")).unwrap_err(),
            "ssl_ca: file name contains a NUL byte"
        );
    }

    #[test]
    fn cross_checks() {
        assert_eq!(
            Options::new(Call::Connect).check().unwrap_err(),
            "url parameter is required"
        );
        let o = set(Call::Listen, "ssl_key", Value::Text(b"k.pem")).unwrap();
        assert_eq!(
            o.check().unwrap_err(),
            "listen: ssl_cert and ssl_key must both be set for TLS (only ssl_key was given)"
        );
        assert!(Options::new(Call::Listen).check().is_ok());
    }

    #[test]
    fn proxy_choices() {
        let none = set(Call::New, "proxy", Value::Text(b"")).unwrap();
        assert!(none.proxies().proxy.is_none());
        let given = set(Call::New, "proxy", Value::Text(b"127.0.0.1")).unwrap();
        let p = given.proxies().proxy.unwrap();
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", DEFAULT_PROXY_PORT));
    }

    #[test]
    fn listen_host_must_be_an_address() {
        let o = set(Call::Listen, "host", Value::Text(b"localhost")).unwrap();
        assert_eq!(
            o.bind().unwrap_err(),
            "host must be an IP address, not 'localhost'"
        );
        let o = set(Call::Listen, "host", Value::Text(b"::1")).unwrap();
        assert_eq!(o.bind().unwrap().host, Some("::1".parse().unwrap()));
    }

    fn pairs(list: &[(&str, &str)]) -> Value<'static> {
        Value::List(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// listen's compression policy after `compression => v` (and
    /// `context_takeover => takeover` if given).
    fn server_deflate(
        v: Value<'_>,
        takeover: Option<bool>,
    ) -> Result<(bool, bool, Memory), String> {
        let mut o = set(Call::Listen, "compression", v)?;
        if let Some(t) = takeover {
            let i = o.find(b"context_takeover").unwrap();
            o.set(i, Value::Bool(t))?;
        }
        o.check()?;
        let p = o.server_settings()?.policy;
        Ok((p.compression, p.context_takeover, p.deflate_memory))
    }

    #[test]
    fn compression_truths_keep_their_meaning() {
        let default = Memory::default();
        for (v, on) in [
            (Value::Undef, false),
            (Value::Word(b"0", false), false),
            (Value::Word(b"", false), false),
            (Value::Word(b"1", true), true),
            (Value::Word(b"2", true), true),
        ] {
            assert_eq!(
                server_deflate(v.clone(), None).unwrap(),
                (on, false, default)
            );
            assert_eq!(
                server_deflate(v.clone(), Some(true)).unwrap(),
                (on, true, default)
            );
            let client = set(Call::Connect, "compression", v.clone())
                .unwrap()
                .client
                .compression;
            let expected = (on || v == Value::Undef).then(Offer::default);
            assert_eq!(client, expected, "{v:?}");
        }
    }

    #[test]
    fn compression_presets() {
        let m = |window_bits, mem_level| Memory {
            window_bits,
            mem_level,
        };
        assert_eq!(
            server_deflate(Value::Word(b"dedicated_3kb", true), None).unwrap(),
            (true, true, m(9, 1))
        );
        assert_eq!(
            server_deflate(Value::Word(b"shared", true), Some(false)).unwrap(),
            (true, false, m(15, 8))
        );
        assert_eq!(
            server_deflate(Value::Word(b"dedicated_256kb", true), Some(true)).unwrap(),
            (true, true, m(15, 8))
        );
        let client = set(
            Call::Connect,
            "compression",
            Value::Word(b"dedicated_32kb", true),
        )
        .unwrap();
        let offer = client.client.compression.unwrap();
        assert_eq!((offer.memory, offer.keep_context), (m(12, 5), true));
        for call in [Call::Connect, Call::Listen, Call::Adopt] {
            assert_eq!(
                set(call, "compression", Value::Word(b"x", true)).unwrap_err(),
                "compression: unknown preset 'x'"
            );
        }
        assert_eq!(
            server_deflate(Value::Word(b"shared", true), Some(true)).unwrap_err(),
            "context_takeover => 1 contradicts compression => 'shared'"
        );
        assert_eq!(
            server_deflate(Value::Word(b"dedicated_4kb", true), Some(false)).unwrap_err(),
            "context_takeover => 0 contradicts compression => 'dedicated_4kb'"
        );
    }

    #[test]
    fn compression_hashes() {
        let m = |window_bits, mem_level| Memory {
            window_bits,
            mem_level,
        };
        let v = pairs(&[("window_bits", "10"), ("mem_level", "2")]);
        assert_eq!(
            server_deflate(v.clone(), None).unwrap(),
            (true, true, m(10, 2))
        );
        // Without its own context_takeover, the hash follows the option.
        assert_eq!(
            server_deflate(v, Some(false)).unwrap(),
            (true, false, m(10, 2))
        );
        let v = pairs(&[("context_takeover", "0")]);
        assert_eq!(
            server_deflate(v.clone(), None).unwrap(),
            (true, false, m(15, 8))
        );
        assert_eq!(
            server_deflate(v, Some(true)).unwrap_err(),
            "context_takeover => 1 contradicts compression => { context_takeover => 0 }"
        );
        assert_eq!(
            server_deflate(pairs(&[]), None).unwrap(),
            (true, true, m(15, 8))
        );
        let client = set(
            Call::Connect,
            "compression",
            pairs(&[("context_takeover", "0"), ("window_bits", "11")]),
        )
        .unwrap()
        .client
        .compression
        .unwrap();
        assert_eq!(
            (
                client.memory,
                client.keep_context,
                client.server_may_keep_context
            ),
            (m(11, 8), false, false)
        );
        for (key, value, message) in [
            (
                "window_bits",
                "8",
                "compression: window_bits must be from 9 to 15",
            ),
            (
                "window_bits",
                "16",
                "compression: window_bits must be from 9 to 15",
            ),
            (
                "window_bits",
                "9.5",
                "compression: window_bits must be from 9 to 15",
            ),
            (
                "window_bits",
                "",
                "compression: window_bits must be from 9 to 15",
            ),
            (
                "mem_level",
                "0",
                "compression: mem_level must be from 1 to 9",
            ),
            (
                "mem_level",
                "ten",
                "compression: mem_level must be from 1 to 9",
            ),
            (
                "context_takeover",
                "yes",
                "compression: context_takeover must be 0 or 1",
            ),
            (
                "window",
                "9",
                "compression: unknown setting 'window' (known: window_bits, mem_level, context_takeover)",
            ),
        ] {
            for call in [Call::Connect, Call::Listen] {
                assert_eq!(
                    set(call, "compression", pairs(&[(key, value)])).unwrap_err(),
                    message
                );
            }
        }
    }
}
