//! The bare baseline server: fastwebsockets + hyper, no framework. To be written.

use super::ServerSpec;

pub(super) async fn start(
    _spec: &ServerSpec,
) -> Result<Box<dyn Fn() -> serde_json::Value + Send>, String> {
    Err("the baseline server is not written yet".into())
}
