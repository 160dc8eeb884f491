//! The optional cluster secret: an HMAC-SHA-256 tag on every node-to-node envelope, so that
//! nodes only act on envelopes written by holders of the secret (`PROTOCOL.md` §2).
//!
//! The key schedule runs once, when the node is built ([`ClusterKey::new`]); each envelope
//! clones the keyed state, which costs a copy of two SHA-256 states instead of two hashed
//! key blocks. Tags are compared in constant time ([`Mac::verify_slice`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of the tag carried by a signed envelope, in bytes.
pub(crate) const TAG_LEN: usize = 32;
/// Shortest cluster secret accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// The cluster secret, prepared for signing and checking envelopes. Its `Debug` never shows
/// the secret.
#[derive(Clone)]
pub(crate) struct ClusterKey {
    mac: Hmac<Sha256>,
}

impl ClusterKey {
    /// Prepares `secret`; `None` when it is shorter than [`MIN_SECRET_LEN`].
    pub(crate) fn new(secret: &[u8]) -> Option<ClusterKey> {
        if secret.len() < MIN_SECRET_LEN {
            return None;
        }
        // HMAC takes keys of any length; the error case cannot happen.
        let mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
        Some(ClusterKey { mac })
    }

    /// The tag of an envelope whose bytes are `header` followed by `rest`.
    pub(crate) fn tag(&self, header: &[u8], rest: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(header);
        mac.update(rest);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `header` followed by `rest` (constant-time comparison).
    pub(crate) fn verify(&self, header: &[u8], rest: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(header);
        mac.update(rest);
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    #[test]
    fn short_secrets_are_refused() {
        assert!(ClusterKey::new(b"").is_none());
        assert!(ClusterKey::new(&SECRET[..MIN_SECRET_LEN - 1]).is_none());
        assert!(ClusterKey::new(SECRET).is_some());
    }

    #[test]
    fn matches_rfc_4231_test_case_1() {
        let key = ClusterKey::new(&[0x0b; 20]).expect("20 bytes");
        let expected: [u8; TAG_LEN] = [
            0xb0, 0x34, 0x4c, 0x61, 0xd8, 0xdb, 0x38, 0x53, 0x5c, 0xa8, 0xaf, 0xce, 0xaf, 0x0b,
            0xf1, 0x2b, 0x88, 0x1d, 0xc2, 0x00, 0xc9, 0x83, 0x3d, 0xa7, 0x26, 0xe9, 0x37, 0x6c,
            0x2e, 0x32, 0xcf, 0xf7,
        ];
        // The tag covers the concatenation, wherever it is split.
        assert_eq!(key.tag(b"Hi There", b""), expected);
        assert_eq!(key.tag(b"Hi", b" There"), expected);
        assert!(key.verify(b"Hi T", b"here", &expected));
    }

    #[test]
    fn wrong_key_or_tag_fails() {
        let key = ClusterKey::new(SECRET).expect("16 bytes");
        let other = ClusterKey::new(b"fedcba9876543210").expect("16 bytes");
        let tag = key.tag(b"\x01\x02", b"body");
        assert!(key.verify(b"\x01\x02", b"body", &tag));
        assert!(!other.verify(b"\x01\x02", b"body", &tag));
        assert!(!key.verify(b"\x01\x02", b"bodz", &tag));
        assert!(!key.verify(b"\x01\x02", b"body", &tag[..31]));
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = ClusterKey::new(b"super-secret-value").expect("long enough");
        let shown = format!("{key:?}");
        assert!(!shown.contains("super"), "{shown}");
        assert_eq!(shown, "ClusterKey(<redacted>)");
    }
}
