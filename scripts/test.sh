#!/usr/bin/env bash
# The whole test suite, as CI runs it. Works on a fresh machine with the Rust toolchain;
# installs whatever the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Redis tests start their own redis-server processes on free ports (the system service
# is not needed); nats-server is for the NATS broker; Chromium for the browser test of the
# chat example (tests/browser/; Playwright never downloads a browser of its own).
packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
command -v nats-server >/dev/null || packages+=(nats-server)
[ -x /usr/bin/chromium ] || packages+=(chromium)
if [ ${#packages[@]} -gt 0 ]; then
    echo "== installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# tests/hostile_clients.rs drives real Node.js WebSocket clients (tests/js/: the `ws` package,
# pinned in tests/js/package-lock.json). `npm ci` reinstalls exactly that; output only on error.
echo "== node clients"; npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
# The Node.js package itself, for core's js_wire byte-compatibility test against its notepack.io.
mkdir -p target && rm -rf target/js-package && cp -r ../shared/js-package/package target/js-package && npm ci --omit=dev --prefix target/js-package --no-audit --no-fund --loglevel=error >/dev/null

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== package"; out=$(cargo package --workspace --exclude crosswire-bench --no-verify --allow-dirty 2>&1) || { echo "$out"; exit 1; }
# The multi-process test runs the `cluster` example binary itself.
echo "== examples"; cargo build --examples --all-features
# The JavaScript client (clients/js): its tests run against the `cluster` example binary.
echo "== js client"; npm ci --prefix clients/js --no-audit --no-fund --loglevel=error >/dev/null
npm test --prefix clients/js
# The chat example (examples/chat.rs) in headless Chromium: two pages on two nodes, a restart.
echo "== browser"; npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
npm test --prefix tests/browser
echo "== tests";  cargo test --workspace --all-targets --all-features
echo "== doctests"; cargo test --workspace --doc --all-features
echo "== docs";   RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
echo "all checks passed"
