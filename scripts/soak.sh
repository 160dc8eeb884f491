#!/usr/bin/env bash
# Soak test of one crosswire server (not part of the default test run).
#
#   scripts/soak.sh [SECONDS] [crosswire-bench flags...]
#
# Builds crosswire-bench (release) and runs its `soak` scenario for SECONDS (default 300):
# 15,000 WebSocket connections with the client heartbeat (empty text frame every 10 s) and the
# server's protocol pings (every 10 s), churn (25 connections a second leave, half cleanly,
# half by dropping TCP without a close frame, and reconnect with the same socket id), and a
# broadcast of a 200-byte push to everyone 5 times a second. At the end it prints the server's
# RSS and open descriptors (start / peak / end / after every client left), connections held,
# broadcasts each connection had to receive against those it got, heartbeats answered, how
# connections ended, and the server's counters; the JSON line also goes to
# bench/results/soak-<date>.jsonl. Exits non-zero when a check fails (descriptor leak, a
# missing broadcast, an unanswered heartbeat, a connection lost or not reconnected).
#
# Flags are passed on, e.g. `scripts/soak.sh 180 --soak-clients 10000 --churn-rate 50`;
# see `./target/release/crosswire-bench --help` (the --soak-* and --churn-* flags).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=300
if [[ $# -gt 0 && $1 != -* ]]; then
    seconds=$1
    shift
fi
cargo build --release -p crosswire-bench
mkdir -p bench/results
out="bench/results/soak-$(date +%Y-%m-%dT%H-%M-%S).jsonl"
echo "writing $out" >&2
./target/release/crosswire-bench soak --soak-duration "$seconds" "$@" > "$out"
