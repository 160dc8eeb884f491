//! notepack.io's MessagePack, byte for byte (the package's `enableRedisDataCompression`).
//!
//! Encoding follows notepack 3's `encode.js`: integers (finite numbers with no fraction,
//! `-0` included) take the smallest of positive fixint, uint 8/16/32 or negative fixint,
//! int 8/16/32; integers beyond 32 bits go to uint 64 (non-negative) or int 64 (negative),
//! wrapped modulo 2^64 as notepack's shifts do; every other number is a float 64. Strings,
//! arrays, maps and bins take the smallest length form. Decoding follows `decode.js`,
//! including its legacy forms (fixext 1 type 0 is `undefined`, ext type 0 an `ArrayBuffer`,
//! fixext 8 type 0 a `Date`); peers' claimed lengths are checked against the bytes left
//! before anything is allocated.

use std::convert::Infallible;

use rmp::encode::{self as enc, ByteBuf, ValueWriteError};
use rmp::Marker;

use super::value::{time_clip, write_number, JsObject, JsValue};
use super::{Budget, JsWireError};

/// Unwraps the result of a write into a [`ByteBuf`], which cannot fail.
fn infallible<T>(result: Result<T, ValueWriteError<Infallible>>) -> T {
    match result {
        Ok(value) => value,
        Err(ValueWriteError::InvalidMarkerWrite(e) | ValueWriteError::InvalidDataWrite(e)) => {
            match e {}
        }
    }
}

/// A length as msgpack's 32-bit field (the decoder caps messages far below 4 GiB).
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// `notepack.encode(value)`.
pub(crate) fn encode(value: &JsValue) -> Vec<u8> {
    let mut buf = ByteBuf::new();
    write_value(&mut buf, value);
    buf.into_vec()
}

/// Writes one value as notepack does.
fn write_value(buf: &mut ByteBuf, value: &JsValue) {
    match value {
        JsValue::Null => {
            let Ok(()) = enc::write_nil(buf);
        }
        JsValue::Bool(b) => {
            let Ok(()) = enc::write_bool(buf, *b);
        }
        JsValue::Number(n) => write_number_value(buf, *n),
        JsValue::String(s) => {
            infallible(enc::write_str_len(buf, len32(s.len())));
            buf.as_mut_vec().extend_from_slice(s.as_bytes());
        }
        JsValue::Array(items) => {
            infallible(enc::write_array_len(buf, len32(items.len())));
            for item in items {
                write_value(buf, item);
            }
        }
        JsValue::Object(object) => {
            infallible(enc::write_map_len(buf, len32(object.entries().len())));
            for (key, item) in object.entries() {
                infallible(enc::write_str_len(buf, len32(key.len())));
                buf.as_mut_vec().extend_from_slice(key.as_bytes());
                write_value(buf, item);
            }
        }
        JsValue::Buffer(bytes) | JsValue::ArrayBuffer(bytes) => {
            infallible(enc::write_bin_len(buf, len32(bytes.len())));
            buf.as_mut_vec().extend_from_slice(bytes);
        }
        JsValue::Date(ms) => write_date(buf.as_mut_vec(), *ms),
    }
}

/// Writes a number with notepack's choice of form.
fn write_number_value(buf: &mut ByteBuf, n: f64) {
    if !n.is_finite() || n.floor() != n {
        // JavaScript writes the one canonical NaN.
        let n = if n.is_nan() { f64::NAN } else { n };
        infallible(enc::write_f64(buf, n));
    } else if (0.0..4_294_967_296.0).contains(&n) {
        // Exact: an integer below 2^32 (`-0` included, written as 0).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        infallible(enc::write_uint(buf, n as u64));
    } else if (-2_147_483_648.0..0.0).contains(&n) {
        #[allow(clippy::cast_possible_truncation)]
        infallible(enc::write_sint(buf, n as i64));
    } else if n > 0.0 {
        infallible(enc::write_u64(buf, wrap_to_u64(n)));
    } else {
        #[allow(clippy::cast_possible_wrap)]
        infallible(enc::write_i64(buf, wrap_to_u64(n) as i64));
    }
}

/// An integral `n` modulo 2^64 (two's complement for negatives), as notepack's
/// `hi`/`lo` split computes it for numbers beyond 32 bits.
pub(crate) fn wrap_to_u64(n: f64) -> u64 {
    let bits = n.to_bits();
    let exponent = i32::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let fraction = bits & ((1 << 52) - 1);
    let mantissa = if exponent == 0 {
        fraction
    } else {
        fraction | (1 << 52)
    };
    let shift = exponent - 1075; // n = mantissa * 2^shift
    let magnitude = match u32::try_from(shift) {
        Ok(left) if left < 64 => mantissa << left,
        Ok(_) => 0,
        Err(_) => u32::try_from(-shift)
            .ok()
            .filter(|&right| right < 64)
            .map_or(0, |right| mantissa >> right),
    };
    if n < 0.0 {
        magnitude.wrapping_neg()
    } else {
        magnitude
    }
}

/// Writes a `Date` as notepack does: timestamp 32, 64 or 96 (an invalid date is a
/// timestamp 96 of zeros).
fn write_date(out: &mut Vec<u8>, ms: f64) {
    if ms.is_nan() {
        out.extend_from_slice(&[0xc7, 0x0c, 0xff]);
        out.extend_from_slice(&[0; 12]);
        return;
    }
    let s = (ms / 1e3).floor();
    let ns = (ms - s * 1e3) * 1e6;
    // Both are integers: |ms| <= 8.64e15, and ns is in [0, 1e9).
    #[allow(clippy::cast_possible_truncation)]
    let (s_int, ns_int) = (s as i64, ns as u32);
    if s >= 0.0 && ns >= 0.0 && s <= 17_179_869_183.0 {
        #[allow(clippy::cast_sign_loss)]
        let seconds = s_int as u64;
        if ns_int == 0 && seconds <= u64::from(u32::MAX) {
            out.extend_from_slice(&[0xd6, 0xff]);
            out.extend_from_slice(&u32::try_from(seconds).unwrap_or(0).to_be_bytes());
        } else {
            out.extend_from_slice(&[0xd7, 0xff]);
            out.extend_from_slice(&((u64::from(ns_int) << 34) | seconds).to_be_bytes());
        }
    } else {
        out.extend_from_slice(&[0xc7, 0x0c, 0xff]);
        out.extend_from_slice(&ns_int.to_be_bytes());
        out.extend_from_slice(&s_int.to_be_bytes());
    }
}

/// `notepack.decode(bytes)`: one value filling all of `bytes`.
pub(crate) fn decode(bytes: &[u8], budget: &mut Budget) -> Result<JsValue, JsWireError> {
    let mut reader = Reader { rest: bytes };
    let value = reader.value(budget, 0)?;
    if !reader.rest.is_empty() {
        return Err(JsWireError::Msgpack("trailing bytes"));
    }
    // `undefined` at the top is no object either; callers reject it as `null`.
    Ok(value.unwrap_or(JsValue::Null))
}

/// The bytes not read yet.
struct Reader<'a> {
    /// What is left.
    rest: &'a [u8],
}

/// The error for input that ends early.
const TRUNCATED: JsWireError = JsWireError::Msgpack("truncated");

impl<'a> Reader<'a> {
    /// Takes the next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], JsWireError> {
        if n > self.rest.len() {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], JsWireError> {
        self.take(N)?.try_into().map_err(|_| TRUNCATED)
    }

    /// A big-endian unsigned length of `N` bytes.
    fn length<const N: usize>(&mut self) -> Result<usize, JsWireError> {
        let raw = self.array::<N>()?;
        let mut n = 0usize;
        for b in raw {
            n = (n << 8) | usize::from(b);
        }
        Ok(n)
    }

    /// An ext's type byte.
    fn ext_type(&mut self) -> Result<i8, JsWireError> {
        Ok(i8::from_be_bytes(self.array::<1>()?))
    }

    /// One value; `None` is `undefined`.
    fn value(&mut self, budget: &mut Budget, depth: usize) -> Result<Option<JsValue>, JsWireError> {
        budget.spend(depth)?;
        let [byte] = self.array::<1>()?;
        let number = |n: f64| Ok(Some(JsValue::Number(n)));
        match Marker::from_u8(byte) {
            Marker::FixPos(n) => number(f64::from(n)),
            Marker::FixNeg(n) => number(f64::from(n)),
            Marker::Null => Ok(Some(JsValue::Null)),
            Marker::False => Ok(Some(JsValue::Bool(false))),
            Marker::True => Ok(Some(JsValue::Bool(true))),
            Marker::U8 => number(f64::from(self.array::<1>()?[0])),
            Marker::U16 => number(f64::from(u16::from_be_bytes(self.array()?))),
            Marker::U32 => number(f64::from(u32::from_be_bytes(self.array()?))),
            #[allow(clippy::cast_precision_loss)]
            Marker::U64 => number(u64::from_be_bytes(self.array()?) as f64),
            Marker::I8 => number(f64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => number(f64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => number(f64::from(i32::from_be_bytes(self.array()?))),
            #[allow(clippy::cast_precision_loss)]
            Marker::I64 => number(i64::from_be_bytes(self.array()?) as f64),
            Marker::F32 => number(f64::from(f32::from_be_bytes(self.array()?))),
            Marker::F64 => number(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(n) => self.string(usize::from(n)),
            Marker::Str8 => self.length::<1>().and_then(|n| self.string(n)),
            Marker::Str16 => self.length::<2>().and_then(|n| self.string(n)),
            Marker::Str32 => self.length::<4>().and_then(|n| self.string(n)),
            Marker::Bin8 => self.length::<1>().and_then(|n| self.buffer(n)),
            Marker::Bin16 => self.length::<2>().and_then(|n| self.buffer(n)),
            Marker::Bin32 => self.length::<4>().and_then(|n| self.buffer(n)),
            Marker::FixArray(n) => self.list(usize::from(n), budget, depth),
            Marker::Array16 => self.length::<2>().and_then(|n| self.list(n, budget, depth)),
            Marker::Array32 => self.length::<4>().and_then(|n| self.list(n, budget, depth)),
            Marker::FixMap(n) => self.map(usize::from(n), budget, depth),
            Marker::Map16 => self.length::<2>().and_then(|n| self.map(n, budget, depth)),
            Marker::Map32 => self.length::<4>().and_then(|n| self.map(n, budget, depth)),
            Marker::Ext8 => self.length::<1>().and_then(|n| self.ext(n, true)),
            Marker::Ext16 => self.length::<2>().and_then(|n| self.ext(n, false)),
            Marker::Ext32 => self.length::<4>().and_then(|n| self.ext(n, false)),
            Marker::FixExt1 => self.fixext1(),
            Marker::FixExt2 => self.fixext(2),
            Marker::FixExt4 => self.fixext4(),
            Marker::FixExt8 => self.fixext8(),
            Marker::FixExt16 => self.fixext(16),
            Marker::Reserved => Err(JsWireError::Msgpack("reserved marker 0xc1")),
        }
    }

    /// A string of `n` bytes; invalid UTF-8 becomes U+FFFD, as `Buffer#toString` does.
    fn string(&mut self, n: usize) -> Result<Option<JsValue>, JsWireError> {
        let bytes = self.take(n)?;
        Ok(Some(JsValue::String(
            String::from_utf8_lossy(bytes).into_owned(),
        )))
    }

    /// A bin of `n` bytes: a `Buffer`.
    fn buffer(&mut self, n: usize) -> Result<Option<JsValue>, JsWireError> {
        Ok(Some(JsValue::Buffer(self.take(n)?.to_vec())))
    }

    /// An array of `n` values (`undefined` items become `null`).
    fn list(
        &mut self,
        n: usize,
        budget: &mut Budget,
        depth: usize,
    ) -> Result<Option<JsValue>, JsWireError> {
        // Every item takes at least one byte.
        if n > self.rest.len() {
            return Err(TRUNCATED);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(budget, depth + 1)?.unwrap_or(JsValue::Null));
        }
        Ok(Some(JsValue::Array(items)))
    }

    /// A map of `n` pairs, built as notepack's `value[key] = ...` builds it.
    fn map(
        &mut self,
        n: usize,
        budget: &mut Budget,
        depth: usize,
    ) -> Result<Option<JsValue>, JsWireError> {
        // Every pair takes at least two bytes.
        if n > self.rest.len() / 2 {
            return Err(TRUNCATED);
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let key = property_key(self.value(budget, depth + 1)?)?;
            let value = self.value(budget, depth + 1)?;
            // `value.__proto__ = v` sets the prototype (or nothing): no own property.
            if key != "__proto__" {
                entries.push((key, value));
            }
        }
        Ok(Some(JsValue::Object(JsObject::from_entries(entries))))
    }

    /// ext 8/16/32 with `n` data bytes; type 0 is an `ArrayBuffer`, and in an ext 8 type -1
    /// is a timestamp 96 (notepack reads 12 bytes whatever the ext length says).
    fn ext(&mut self, n: usize, ext8: bool) -> Result<Option<JsValue>, JsWireError> {
        match self.ext_type()? {
            0 => Ok(Some(JsValue::ArrayBuffer(self.take(n)?.to_vec()))),
            -1 if ext8 => self.timestamp96(),
            kind => self.typed(kind, n),
        }
    }

    /// `[type, Buffer]`, notepack's value for an ext it does not know.
    fn typed(&mut self, kind: i8, n: usize) -> Result<Option<JsValue>, JsWireError> {
        let data = self.take(n)?.to_vec();
        Ok(Some(JsValue::Array(vec![
            JsValue::Number(f64::from(kind)),
            JsValue::Buffer(data),
        ])))
    }

    /// fixext 1: type 0 is notepack's legacy `undefined` (its data byte skipped).
    fn fixext1(&mut self) -> Result<Option<JsValue>, JsWireError> {
        match self.ext_type()? {
            0 => self.take(1).map(|_| None),
            kind => self.typed(kind, 1),
        }
    }

    /// fixext 2 or 16: always `[type, Buffer]`.
    fn fixext(&mut self, n: usize) -> Result<Option<JsValue>, JsWireError> {
        let kind = self.ext_type()?;
        self.typed(kind, n)
    }

    /// fixext 4: type -1 is a timestamp 32.
    fn fixext4(&mut self) -> Result<Option<JsValue>, JsWireError> {
        match self.ext_type()? {
            -1 => {
                let seconds = u32::from_be_bytes(self.array()?);
                Ok(Some(JsValue::Date(f64::from(seconds) * 1e3)))
            }
            kind => self.typed(kind, 4),
        }
    }

    /// fixext 8: type -1 is a timestamp 64, type 0 notepack's legacy date (int 64 ms).
    fn fixext8(&mut self) -> Result<Option<JsValue>, JsWireError> {
        match self.ext_type()? {
            0 => {
                let hi = i32::from_be_bytes(self.array()?);
                let lo = u32::from_be_bytes(self.array()?);
                let ms = f64::from(hi) * 4_294_967_296.0 + f64::from(lo);
                Ok(Some(JsValue::Date(time_clip(ms))))
            }
            -1 => {
                let hi = u32::from_be_bytes(self.array()?);
                let lo = u32::from_be_bytes(self.array()?);
                let s = f64::from(hi & 0x3) * 4_294_967_296.0 + f64::from(lo);
                let ms = s * 1e3 + f64::from(hi >> 2) / 1e6;
                Ok(Some(JsValue::Date(time_clip(ms))))
            }
            kind => self.typed(kind, 8),
        }
    }

    /// A timestamp 96's 12 bytes.
    fn timestamp96(&mut self) -> Result<Option<JsValue>, JsWireError> {
        let ns = u32::from_be_bytes(self.array()?);
        let hi = i32::from_be_bytes(self.array()?);
        let lo = u32::from_be_bytes(self.array()?);
        let ms = (f64::from(hi) * 4_294_967_296.0 + f64::from(lo)) * 1e3 + f64::from(ns) / 1e6;
        Ok(Some(JsValue::Date(time_clip(ms))))
    }
}

/// A decoded map key as JavaScript's `ToPropertyKey` makes it; keys whose text depends on
/// more than the value (objects, arrays, buffers, dates) are refused.
fn property_key(key: Option<JsValue>) -> Result<String, JsWireError> {
    match key {
        None => Ok("undefined".to_owned()),
        Some(JsValue::String(s)) => Ok(s),
        Some(JsValue::Null) => Ok("null".to_owned()),
        Some(JsValue::Bool(b)) => Ok(b.to_string()),
        Some(JsValue::Number(n)) => {
            let mut out = String::new();
            write_number(n, &mut out);
            Ok(out)
        }
        Some(_) => Err(JsWireError::UnsupportedKey),
    }
}
