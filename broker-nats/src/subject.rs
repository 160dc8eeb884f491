//! How a crosswire channel becomes a NATS subject, and back.
//!
//! NATS splits subjects into tokens at `.`, treats the tokens `*` and `>` as wildcards, and
//! refuses whitespace and empty tokens. Channel names may contain any of these, so each
//! channel is encoded as **one** token under the prefix: `{prefix}.{token}`, where `token`
//! keeps the bytes `A`-`Z`, `a`-`z`, `0`-`9`, `_` and `-` as they are and writes every other
//! byte of the UTF-8 name as `~` followed by two uppercase hex digits (`a.b` → `a~2Eb`,
//! `~` → `~7E`). The empty channel is the single token `~`, which no other name produces (every
//! other `~` is followed by two hex digits). The encoding is injective: [`decode_token`]
//! undoes it exactly.

/// Whether `byte` is kept as it is in a subject token.
fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// The subject token for `channel`: only `[A-Za-z0-9_~-]`, never empty.
pub(crate) fn encode_token(channel: &str) -> String {
    if channel.is_empty() {
        return "~".to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut token = String::with_capacity(channel.len());
    for &byte in channel.as_bytes() {
        if plain(byte) {
            token.push(char::from(byte));
        } else {
            token.push('~');
            token.push(char::from(HEX[usize::from(byte >> 4)]));
            token.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    token
}

/// The channel a token produced by [`encode_token`] stands for; `None` for anything
/// [`encode_token`] cannot produce.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn decode_token(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'~' {
            let hex = token.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            {
                return None;
            }
            let value = u8::from_str_radix(hex, 16).ok()?;
            if plain(value) {
                return None; // never escaped by encode_token
            }
            out.push(value);
            i += 3;
        } else if plain(byte) {
            out.push(byte);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject for `channel` under `prefix`.
pub(crate) fn subject(prefix: &str, channel: &str) -> String {
    format!("{prefix}.{}", encode_token(channel))
}

/// Why `prefix` cannot start subjects, or `None` when it can: it must be one or more
/// non-empty tokens separated by `.`, without whitespace, `*` or `>`.
pub(crate) fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        return Some("it is empty");
    }
    if prefix.chars().any(char::is_whitespace) {
        return Some("it contains whitespace");
    }
    if prefix.contains(['*', '>']) {
        return Some("it contains a wildcard (`*` or `>`)");
    }
    if prefix.split('.').any(str::is_empty) {
        return Some("it has an empty token (a leading, trailing or doubled `.`)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hostile() -> Vec<String> {
        let mut names: Vec<String> = [
            "a.b",
            "*",
            ">",
            "a b",
            "",
            "~",
            "~7E",
            "~~",
            "a\tb",
            "a\nb",
            "a\r\nb",
            ".",
            "..",
            "a.*",
            "a.>",
            "ws:chat",
            "csbp:server_bridge",
            "A",
            "a",
            "-",
            "_",
            "%2E",
            "~2E",
            "日本語",
            "émoji 🎉",
            "\u{0}",
            "\u{7f}",
            "a\u{a0}b",
            "a\u{2028}b",
            "$SYS",
            "_INBOX",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        names.push("x".repeat(256));
        names.push("é".repeat(128)); // 256 bytes
        names.push(".".repeat(256));
        names.extend((0u8..=127).map(|b| char::from(b).to_string()));
        names
    }

    #[test]
    fn tokens_are_single_safe_tokens() {
        for name in hostile() {
            let token = encode_token(&name);
            assert!(!token.is_empty(), "{name:?}");
            assert!(
                token.bytes().all(|b| plain(b) || b == b'~'),
                "{name:?} → {token:?}"
            );
            let subject = subject("crosswire", &name);
            assert_eq!(subject.matches('.').count(), 1, "{subject:?}");
            assert!(!subject.contains(['*', '>']), "{subject:?}");
            assert!(!subject.chars().any(char::is_whitespace), "{subject:?}");
            assert!(subject.is_ascii(), "{subject:?}");
        }
    }

    #[test]
    fn encoding_is_injective_and_reversible() {
        let mut seen: HashMap<String, String> = HashMap::new();
        for name in hostile() {
            let token = encode_token(&name);
            assert_eq!(
                decode_token(&token).as_deref(),
                Some(name.as_str()),
                "{token:?}"
            );
            if let Some(other) = seen.insert(token.clone(), name.clone()) {
                assert_eq!(other, name, "two names map to {token:?}");
            }
        }
        // Exhaustive over all strings of up to two bytes from a mixed alphabet.
        let alphabet = [
            'a', 'Z', '0', '_', '-', '~', '.', ' ', '*', '>', 'é', '7', 'E',
        ];
        let mut names = vec![String::new()];
        for a in alphabet {
            names.push(a.to_string());
            for b in alphabet {
                names.push(format!("{a}{b}"));
                for c in alphabet {
                    names.push(format!("{a}{b}{c}"));
                }
            }
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for name in names {
            let token = encode_token(&name);
            assert_eq!(decode_token(&token).as_deref(), Some(name.as_str()));
            if let Some(other) = seen.insert(token.clone(), name.clone()) {
                assert_eq!(other, name, "two names map to {token:?}");
            }
        }
    }

    #[test]
    fn readable_examples() {
        assert_eq!(encode_token("ws:chat"), "ws~3Achat");
        assert_eq!(encode_token("a.b"), "a~2Eb");
        assert_eq!(encode_token("~"), "~7E");
        assert_eq!(encode_token(""), "~");
        assert_eq!(encode_token("room_1-a"), "room_1-a");
        assert_eq!(subject("crosswire", "a b"), "crosswire.a~20b");
    }

    #[test]
    fn decoding_rejects_what_encoding_never_produces() {
        for token in ["", "~2", "~zz", "~2e", "~41", "a.b", "~~", "~FF", "a*"] {
            assert_eq!(decode_token(token), None, "{token:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_problem("crosswire"), None);
        assert_eq!(prefix_problem("app.crosswire"), None);
        for bad in ["", "a b", "a.*", ">", "a..b", ".a", "a."] {
            assert!(prefix_problem(bad).is_some(), "{bad:?}");
        }
    }
}
