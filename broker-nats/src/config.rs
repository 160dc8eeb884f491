//! How the broker reaches NATS (URLs, authentication), and what can be wrong with that
//! ([`NatsBrokerError`]).

use std::fmt;
use std::path::PathBuf;

/// The URL used when none is given: a NATS server on this machine, default port.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The subject prefix used when none is given.
pub const DEFAULT_SUBJECT_PREFIX: &str = "crosswire";

/// How the client authenticates. Secrets never show in `Debug`.
#[derive(Clone, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    CredentialsFile(PathBuf),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(XXXXXXXX)"),
            Auth::UserPassword(user, _) => write!(f, "UserPassword({user:?}, XXXXXXXX)"),
            Auth::CredentialsFile(path) => write!(f, "CredentialsFile({path:?})"),
        }
    }
}

/// Replaces the password (or token) of a `nats://` URL with `XXXXXXXX` for messages and logs.
pub(crate) fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:XXXXXXXX@{host}"),
            None => format!("{scheme}://XXXXXXXX@{host}"),
        },
        None => url.to_owned(),
    }
}

/// Building the NATS broker failed; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NatsBrokerError {
    /// A `nats://` URL did not parse (a password in it is masked).
    #[error("invalid NATS URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The subject prefix cannot start NATS subjects.
    #[error("invalid NATS subject prefix `{prefix}`: {reason}")]
    InvalidPrefix {
        /// The prefix.
        prefix: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The credentials file could not be read or parsed.
    #[error("cannot use NATS credentials file `{path}`: {reason}")]
    Credentials {
        /// The file.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No configured NATS server accepted the first connection (refused, timed out,
    /// authentication or TLS failed).
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect {
        /// The configured URLs, passwords masked, comma-separated.
        servers: String,
        /// What went wrong.
        reason: String,
    },
    /// The first subscription (the broker's own probe inbox) failed.
    #[error("NATS subscription failed: {0}")]
    Subscribe(String),
    /// A duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    ZeroDuration(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets() {
        assert_eq!(mask_url("nats://u:pw@h:1"), "nats://u:XXXXXXXX@h:1");
        assert_eq!(mask_url("nats://tok@h:1"), "nats://XXXXXXXX@h:1");
        assert_eq!(mask_url("nats://h:1"), "nats://h:1");
        let auth = Auth::UserPassword("u".into(), "secret".into());
        assert!(!format!("{auth:?}").contains("secret"));
        assert!(!format!("{:?}", Auth::Token("secret".into())).contains("secret"));
    }
}
