//! Where the Redis servers are ([`RedisNode`]), and what can be wrong with that ([`ConfigError`]).

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The URL used when none is given: a Redis on this machine, default port.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// One independent Redis server (the JavaScript package's `redisConfig` entry).
///
/// Every crosswire node subscribes to every channel it needs on every configured Redis node,
/// and publishes each message to one of them, so all crosswire nodes must be given the same
/// list.
///
/// ```
/// use crosswire_redis::RedisNode;
///
/// let a = RedisNode::new("10.0.0.5", 6379).password("secret").db(2);
/// let b = RedisNode::from_url("redis://:secret@10.0.0.6:6380/2")?;
/// assert_eq!((b.host(), b.port()), ("10.0.0.6", 6380));
/// // Passwords never show in logs.
/// assert!(!format!("{a:?}").contains("secret"));
/// # Ok::<(), crosswire_redis::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisNode {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    tls: bool,
}

impl RedisNode {
    /// A Redis server at `host:port`, no password, database 0, no TLS.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisNode {
            host: host.into(),
            port,
            username: None,
            password: None,
            db: 0,
            tls: false,
        }
    }

    /// Parses `redis://[user][:password@]host[:port][/db]`, or `rediss://...` for TLS.
    ///
    /// # Errors
    /// [`ConfigError::InvalidUrl`] when the URL does not parse or names a Unix socket.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidUrl {
            url: mask_url(url),
            reason,
        };
        let info = url
            .into_connection_info()
            .map_err(|e| invalid(e.to_string()))?;
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
            _ => return Err(invalid("only TCP addresses are supported".into())),
        };
        let settings = info.redis_settings();
        Ok(RedisNode {
            host,
            port,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
            tls,
        })
    }

    /// Sets the password (`AUTH`). Default: none.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the ACL user name (`AUTH user password`). Default: none (the `default` user).
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Selects the logical database. Pub/sub ignores it, but `SELECT` must succeed. Default: 0.
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Connects over TLS (needs the crate feature `tls`). Default: `false`.
    #[must_use]
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls
    }

    /// The redis-rs client for this node.
    pub(crate) fn client(&self) -> Result<redis::Client, ConfigError> {
        if self.tls && !cfg!(feature = "tls") {
            return Err(ConfigError::TlsNotEnabled {
                host: self.host.clone(),
                port: self.port,
            });
        }
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info: ConnectionInfo = addr
            .into_connection_info()
            .map_err(|e| ConfigError::Client(e.to_string()))?
            .set_redis_settings(settings);
        redis::Client::open(info).map_err(|e| ConfigError::Client(e.to_string()))
    }
}

impl fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNode")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "XXXXXXXX"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for RedisNode {
    /// `host:port`, never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Replaces the password of a `redis://` URL with `XXXXXXXX` for messages and logs.
fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:XXXXXXXX@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The Redis broker's configuration was rejected; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No Redis node was configured; give at least one with `node` or `url`.
    #[error("no Redis node configured")]
    NoNodes,
    /// A `redis://` URL did not parse (the password is masked).
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A node asks for TLS but crosswire-redis was built without the `tls` feature.
    #[error("{host}:{port} uses TLS; enable the `tls` feature of crosswire-redis")]
    TlsNotEnabled {
        /// The node's host.
        host: String,
        /// The node's port.
        port: u16,
    },
    /// The redis client refused the connection settings.
    #[error("invalid Redis connection settings: {0}")]
    Client(String),
    /// A duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    ZeroDuration(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let n = RedisNode::from_url("redis://u:pw@example.org:6380/3").unwrap();
        assert_eq!(
            n,
            RedisNode::new("example.org", 6380)
                .username("u")
                .password("pw")
                .db(3)
        );
        let n = RedisNode::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(n, RedisNode::new("127.0.0.1", 6379));
        assert!(matches!(
            RedisNode::from_url("http://x"),
            Err(ConfigError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn masks_passwords() {
        assert_eq!(mask_url("redis://:pw@h:1"), "redis://:XXXXXXXX@h:1");
        let err = RedisNode::from_url("nope://:secret@h").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let n = RedisNode::new("h", 1).password("secret");
        assert!(!format!("{n:?}").contains("secret"));
    }
}
