//! Runs the Node.js client scripts of `tests/js/` (real `ws` clients, pinned in
//! `tests/js/package-lock.json`) and reads the one JSON line each prints as its report.
//!
//! Needs `node` on the `PATH` and `tests/js/node_modules`, which `scripts/test.sh` installs
//! (`npm ci --prefix tests/js`); without them a test fails saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// What to do when the Node.js side is missing.
const INSTALL_HINT: &str = "run scripts/test.sh, which installs the Node.js clients \
     (`npm ci --prefix tests/js`; needs Node.js 18 or later and npm)";

/// The `tests/js` folder.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Panics with [`INSTALL_HINT`] unless `node` runs and the `ws` package is installed.
pub async fn require_node() {
    let version = Command::new("node").arg("--version").output().await;
    match version {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`node --version` failed ({}): {INSTALL_HINT}", out.status),
        Err(error) => panic!("Node.js (`node`) not found ({error}): {INSTALL_HINT}"),
    }
    let ws = js_dir().join("node_modules/ws/package.json");
    assert!(ws.exists(), "{} is missing: {INSTALL_HINT}", ws.display());
}

/// Runs `node tests/js/SCRIPT ARGS…` and returns the last line of its stdout parsed as JSON.
/// The script's stderr goes to the test's output. Panics if it does not exit within `limit`
/// (the process is killed), exits with an error, or prints no JSON line.
pub async fn run_script(script: &str, args: &[String], limit: Duration) -> Value {
    require_node().await;
    let child = Command::new("node")
        .arg(js_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("start node {script}: {error}: {INSTALL_HINT}"));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node {script} {args:?} did not finish within {limit:?}"))
        .unwrap_or_else(|error| panic!("node {script}: {error}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {script} {args:?} failed ({}); stdout: {stdout}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("node {script}: no JSON report ({error}) in {stdout:?}"))
}
