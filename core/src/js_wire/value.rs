//! JavaScript values as the package sees them after `notepack.decode` or `JSON.parse`.
//!
//! Numbers are `f64` (JavaScript has no other), objects keep JavaScript's own key order
//! (array-index keys first, ascending, then the others in insertion order), and the
//! non-JSON values notepack can produce (`Buffer`, `ArrayBuffer`, `Date`) have variants of
//! their own so that re-encoding gives notepack's bytes back.

use std::collections::HashMap;
use std::fmt::Write as _;

/// One JavaScript value.
///
/// `undefined` has no variant: decoders drop it from objects and turn it into `null` in
/// arrays, as both `JSON.stringify` and `notepack.encode` do when the package re-sends it.
#[derive(Debug, Clone)]
pub(crate) enum JsValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number (`NaN` and infinities only come from msgpack floats).
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<JsValue>),
    /// A plain object.
    Object(JsObject),
    /// A Node.js `Buffer`: msgpack bin, or the bytes of an ext notepack does not know
    /// (which it decodes as `[type, Buffer]`).
    Buffer(Vec<u8>),
    /// An `ArrayBuffer`: notepack's legacy ext type 0.
    ArrayBuffer(Vec<u8>),
    /// A `Date`: milliseconds since the Unix epoch, already time-clipped; `NaN` when invalid.
    Date(f64),
}

impl PartialEq for JsValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Number(a), Self::Number(b)) | (Self::Date(a), Self::Date(b)) => {
                a == b || (a.is_nan() && b.is_nan())
            }
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Object(a), Self::Object(b)) => a == b,
            (Self::Buffer(a), Self::Buffer(b)) | (Self::ArrayBuffer(a), Self::ArrayBuffer(b)) => {
                a == b
            }
            _ => false,
        }
    }
}

impl JsValue {
    /// JavaScript truthiness (`if (value)`).
    pub(crate) fn is_truthy(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Bool(b) => *b,
            Self::Number(n) => *n != 0.0 && !n.is_nan(),
            Self::String(s) => !s.is_empty(),
            _ => true,
        }
    }

    /// The value as a string, if it is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// `JSON.stringify(value)`.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out);
        out
    }
}

/// A plain object's own enumerable properties, in JavaScript's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JsObject {
    /// The properties, in the order `Object.keys` lists them.
    entries: Vec<(String, JsValue)>,
}

impl JsObject {
    /// Builds an object the way assigning `entries` one by one to `{}` would: a repeated
    /// key keeps its first position and its last value, an `undefined` (`None`) value
    /// leaves no property (notepack and `JSON.stringify` skip it), and array-index keys
    /// come first in ascending order.
    pub(crate) fn from_entries(entries: Vec<(String, Option<JsValue>)>) -> Self {
        let mut slots: Vec<(String, Option<JsValue>)> = Vec::with_capacity(entries.len());
        let mut index: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            match index.get(&key) {
                Some(&at) => {
                    if let Some(slot) = slots.get_mut(at) {
                        slot.1 = value;
                    }
                }
                None => {
                    index.insert(key.clone(), slots.len());
                    slots.push((key, value));
                }
            }
        }
        let mut kept: Vec<(String, JsValue)> = slots
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .collect();
        // A stable sort: array indices first, ascending; the rest keep insertion order.
        kept.sort_by_key(|(key, _)| array_index(key).map_or((1, 0), |i| (0, i)));
        Self { entries: kept }
    }

    /// The value of `key`, if the object has it.
    pub(crate) fn get(&self, key: &str) -> Option<&JsValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The position of `key` in [`JsObject::entries`].
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    /// The properties in order.
    pub(crate) fn entries(&self) -> &[(String, JsValue)] {
        &self.entries
    }
}

/// `key` as an array index (a canonical decimal below 2^32 - 1), if it is one.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|&n| n < u64::from(u32::MAX))
        .and_then(|n| u32::try_from(n).ok())
}

/// Appends `JSON.stringify(value)` to `out`.
fn write_json(value: &JsValue, out: &mut String) {
    match value {
        JsValue::Null => out.push_str("null"),
        JsValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        JsValue::Number(n) if n.is_finite() => write_number(*n, out),
        JsValue::Number(_) => out.push_str("null"),
        JsValue::String(s) => write_json_string(s, out),
        JsValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        JsValue::Object(object) => {
            out.push('{');
            for (i, (key, item)) in object.entries().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
        JsValue::Buffer(bytes) => {
            // Buffer.prototype.toJSON.
            out.push_str("{\"type\":\"Buffer\",\"data\":[");
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b}");
            }
            out.push_str("]}");
        }
        JsValue::ArrayBuffer(_) => out.push_str("{}"),
        JsValue::Date(ms) => match iso_date(*ms) {
            Some(iso) => write_json_string(&iso, out),
            None => out.push_str("null"),
        },
    }
}

/// Appends `s` quoted the way `JSON.stringify` quotes strings.
pub(crate) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `Number.prototype.toString()` of `n` (ECMA-262 Number::toString, radix 10).
pub(crate) fn write_number(n: f64, out: &mut String) {
    if n.is_nan() {
        return out.push_str("NaN");
    }
    if n == 0.0 {
        return out.push('0');
    }
    if n.is_infinite() {
        return out.push_str(if n > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if n < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, as JavaScript does.
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let point = exp.parse::<i64>().unwrap_or(0) + 1; // JavaScript's `n`
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n(
            '0',
            usize::try_from(point - k).unwrap_or(0),
        ));
    } else if 0 < point && point <= 21 {
        let (int, frac) = digits.split_at(usize::try_from(point).unwrap_or(0));
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n(
            '0',
            usize::try_from(-point).unwrap_or(0),
        ));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = point - 1;
        let _ = write!(out, "e{}{}", if e >= 0 { "+" } else { "-" }, e.abs());
    }
}

/// `Date.prototype.toISOString()` of a time-clipped `ms`; `None` for an invalid date.
fn iso_date(ms: f64) -> Option<String> {
    if !ms.is_finite() {
        return None;
    }
    // Time-clipped values are integers within ±8.64e15, exact in i64.
    #[allow(clippy::cast_possible_truncation)]
    let ms = ms as i64;
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { "-" } else { "+" }, year.abs())
    };
    Some(format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    ))
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// ECMAScript TimeClip: `NaN` beyond ±8.64e15 ms, else the value truncated toward zero.
pub(crate) fn time_clip(ms: f64) -> f64 {
    if !ms.is_finite() || ms.abs() > 8.64e15 {
        f64::NAN
    } else {
        ms.trunc() + 0.0
    }
}
