//! crosswire-core's request-target parser (`RequestInfo::parse`, `core/src/transport.rs`): the
//! path and query of every upgrade request, as sent by any peer.
//!
//! Input: `[options byte][target ...]`, the target taken as UTF-8 (lossy, as hyper hands over
//! only valid request lines). Checks: no panic; every parameter `params()` lists is found by
//! `param()` with the same (last) value; the path has no query part; the decoded parameters
//! agree with `form_urlencoded`'s own reading of the query.

#![no_main]

use std::collections::HashMap;

use crosswire_core::{ParseOptions, RequestInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let options = ParseOptions {
        lowercase_keys: flags & 1 != 0,
        strip_leading_slash: flags & 2 != 0,
    };
    let target = String::from_utf8_lossy(rest);
    let info = RequestInfo::parse(&target, options, None);
    let params = info.params();
    for (key, value) in &params {
        assert_eq!(info.param(key), Some(value.as_str()), "param({key:?})");
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    assert!(path.ends_with(info.path()), "path {:?} of {target:?}", info.path());
    let expected: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let k = if options.lowercase_keys { k.to_lowercase() } else { k.into_owned() };
            (k, v.into_owned())
        })
        .collect();
    assert_eq!(params, expected, "parameters of {target:?}");
});
