#!/usr/bin/env bash
# Builds crosswire-bench (profile release-lto: fat LTO, one codegen unit, as ../shared/floor is
# built) and runs every scenario against the baseline and crosswire.
# JSON lines go to bench/results/<date>.jsonl, the tables to the terminal (stderr).
# Extra arguments are passed on, e.g. `bench/run.sh --duration 5` or `bench/run.sh fanout`.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=all
if [[ $# -gt 0 && $1 != -* ]]; then
    scenario=$1
    shift
fi
cargo build --profile release-lto -p crosswire-bench
# The reference bare server (`--server floor` / `all`), when ../shared/floor is beside the checkout.
if [[ -d ../shared/floor ]]; then
    cargo build --release --locked --manifest-path ../shared/floor/Cargo.toml --target-dir target/floor
fi
mkdir -p bench/results
out="bench/results/$(date +%Y-%m-%dT%H-%M-%S).jsonl"
echo "writing $out" >&2
./target/release-lto/crosswire-bench "$scenario" "$@" > "$out"
