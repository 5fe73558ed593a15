//! The `redis` setting: `redis://[[user]:password@]host[:port][/db]`.

use std::net::IpAddr;

use percent_encoding::percent_decode_str;

pub const DEFAULT_PORT: u16 = 6379;

/// Where a Redis server is and how to log in to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: Host,
    pub port: u16,
    /// ACL user name (Redis 6+); `None`: the default user.
    pub user: Option<String>,
    pub password: Option<Vec<u8>>,
    pub db: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Addr(IpAddr),
    /// A name, resolved off the loop when connecting.
    Name(String),
}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let url = url::Url::parse(text).map_err(|e| format!("'{text}' is not a URL ({e})"))?;
        match url.scheme() {
            "redis" => {}
            "rediss" => return Err("rediss:// (TLS) is not supported: use redis://".into()),
            other => return Err(format!("scheme must be redis://, not {other}://")),
        }
        let host = match url.host() {
            Some(url::Host::Ipv4(a)) => Host::Addr(a.into()),
            Some(url::Host::Ipv6(a)) => Host::Addr(a.into()),
            // redis:// is not a special scheme: its IPv4 hosts come as names
            Some(url::Host::Domain(d)) if !d.is_empty() => match d.parse() {
                Ok(ip) => Host::Addr(ip),
                Err(_) => Host::Name(d.to_string()),
            },
            _ => return Err(format!("'{text}' has no host")),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("'{text}': no query or fragment is allowed"));
        }
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse::<u32>()
                .map_err(|_| format!("database must be a number, not '{n}'"))?,
        };
        let decode = |s: &str| percent_decode_str(s).collect::<Vec<u8>>();
        let user = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        if user.is_some() && password.is_none() {
            return Err("a user name needs a password (redis://user:password@host)".into());
        }
        let user = user
            .map(|u| String::from_utf8(u).map_err(|_| "user name is not UTF-8".to_string()))
            .transpose()?;
        Ok(RedisUrl {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            user,
            password,
            db,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_defaults() {
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(u.host, Host::Addr("127.0.0.1".parse().unwrap()));
        assert_eq!((u.port, u.db, u.user, u.password), (6379, 0, None, None));
        let u = RedisUrl::parse("redis://[::1]:7000/3").unwrap();
        assert_eq!(u.host, Host::Addr("::1".parse().unwrap()));
        assert_eq!((u.port, u.db), (7000, 3));
        let u = RedisUrl::parse("redis://cache.example:6380/").unwrap();
        assert_eq!(u.host, Host::Name("cache.example".into()));
        assert_eq!((u.port, u.db), (6380, 0));
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let u = RedisUrl::parse("redis://:s%40cret@localhost").unwrap();
        assert_eq!((u.user, u.password), (None, Some(b"s@cret".to_vec())));
        let u = RedisUrl::parse("redis://app:pw@localhost/1").unwrap();
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some(&b"pw"[..]));
    }

    #[test]
    fn bad_urls_say_why() {
        let err = |t| RedisUrl::parse(t).unwrap_err();
        assert!(err("127.0.0.1:6379").contains("is not a URL"));
        assert_eq!(err("http://h"), "scheme must be redis://, not http://");
        assert!(err("rediss://h").contains("not supported"));
        assert!(err("redis://h/x").contains("database must be a number"));
        assert!(err("redis://h/?a=1").contains("no query"));
        assert!(err("redis://user@h").contains("needs a password"));
        assert!(err("redis://").contains("no host"));
    }
}
