//! `JSON.parse` for the package's JSON mode (`enableRedisDataCompression: false`).
//!
//! A small parser rather than serde_json: it keeps JavaScript's key order (serde_json's
//! `Value` sorts keys without the crate-wide `preserve_order` feature), parses numbers
//! with correct rounding (std's `f64::from_str`), and shares the decoder's depth and value
//! budget. Strings with a lone surrogate escape (`"\ud800"`), which JavaScript accepts but
//! Rust strings cannot hold, are refused.

use super::value::{JsObject, JsValue};
use super::{Budget, JsWireError};

/// `JSON.parse(text)`.
pub(crate) fn parse(text: &str, budget: &mut Budget) -> Result<JsValue, JsWireError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(budget, 0)?;
    parser.skip_space();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// A position in the text being parsed.
struct Parser<'a> {
    /// The text's bytes (valid UTF-8).
    bytes: &'a [u8],
    /// The next byte to read.
    at: usize,
}

impl Parser<'_> {
    /// An error at the current position.
    fn error(&self, what: &'static str) -> JsWireError {
        JsWireError::Json { at: self.at, what }
    }

    /// The next byte, if any.
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips JSON whitespace.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `word` or fails.
    fn expect(&mut self, word: &'static [u8]) -> Result<(), JsWireError> {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("unexpected token"))
        }
    }

    /// One value, after optional whitespace.
    fn value(&mut self, budget: &mut Budget, depth: usize) -> Result<JsValue, JsWireError> {
        budget.spend(depth)?;
        self.skip_space();
        match self.peek() {
            Some(b'n') => self.expect(b"null").map(|()| JsValue::Null),
            Some(b't') => self.expect(b"true").map(|()| JsValue::Bool(true)),
            Some(b'f') => self.expect(b"false").map(|()| JsValue::Bool(false)),
            Some(b'"') => self.string().map(JsValue::String),
            Some(b'[') => self.array(budget, depth),
            Some(b'{') => self.object(budget, depth),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    /// Consumes ASCII digits; how many.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number, by JSON's grammar.
    fn number(&mut self) -> Result<JsValue, JsWireError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("bad fraction"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("bad exponent"));
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at])
            .map_err(|_| self.error("bad number"))?;
        text.parse::<f64>()
            .map(JsValue::Number)
            .map_err(|_| self.error("bad number"))
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u32, JsWireError> {
        let hex = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let text = std::str::from_utf8(hex).map_err(|_| self.error("bad \\u escape"))?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("bad \\u escape"));
        }
        let code = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(code)
    }

    /// The character of a `\u` escape (a surrogate pair takes two escapes).
    fn unicode_escape(&mut self) -> Result<char, JsWireError> {
        let first = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&first) {
            if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xdc00..0xe000).contains(&second) {
                return Err(self.error("lone surrogate"));
            }
            0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))
    }

    /// A string literal.
    fn string(&mut self) -> Result<String, JsWireError> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            // The run stops at ASCII bytes only, so it is whole UTF-8.
            out.push_str(
                std::str::from_utf8(&self.bytes[start..self.at])
                    .map_err(|_| self.error("bad UTF-8"))?,
            );
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.peek().ok_or_else(|| self.error("unexpected end"))?;
                    self.at += 1;
                    out.push(match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("bad escape")),
                    });
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// An array literal.
    fn array(&mut self, budget: &mut Budget, depth: usize) -> Result<JsValue, JsWireError> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(JsValue::Array(items));
        }
        loop {
            items.push(self.value(budget, depth + 1)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(JsValue::Array(items));
                }
                _ => return Err(self.error("expected , or ]")),
            }
        }
    }

    /// An object literal (a repeated key keeps its first position and last value).
    fn object(&mut self, budget: &mut Budget, depth: usize) -> Result<JsValue, JsWireError> {
        self.at += 1;
        let mut entries = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(JsValue::Object(JsObject::from_entries(entries)));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            budget.spend(depth + 1)?;
            let key = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.error("expected :"));
            }
            self.at += 1;
            entries.push((key, Some(self.value(budget, depth + 1)?)));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(JsValue::Object(JsObject::from_entries(entries)));
                }
                _ => return Err(self.error("expected , or }")),
            }
        }
    }
}
