#!/usr/bin/env bash
# The whole test suite, as CI runs it. Works on a fresh machine with the Rust toolchain;
# installs whatever the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Redis tests start their own redis-server processes on free ports (the system service
# is not needed); nats-server is for the NATS broker.
if ! command -v redis-server >/dev/null || ! command -v nats-server >/dev/null; then
    echo "== installing redis-server and nats-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server nats-server >/dev/null
fi

# tests/hostile_clients.rs drives real Node.js WebSocket clients (tests/js/: the `ws` package,
# pinned in tests/js/package-lock.json). `npm ci` reinstalls exactly that; output only on error.
echo "== node clients"; npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets --all-features -- -D warnings
# The multi-process test runs the `cluster` example binary itself.
echo "== examples"; cargo build --examples --all-features
echo "== tests";  cargo test --workspace --all-targets --all-features
echo "== doctests"; cargo test --workspace --doc --all-features
echo "== docs";   RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
echo "all checks passed"
