#!/usr/bin/env bash
# User-space instructions and heap allocations per request and reply, counted by callgrind.
# A count, not a time: it repeats from run to run on this shared machine (where timed `rpc`
# runs spread by 10-20 %), so a change to the request path shows in one run of each build.
# The kernel's share (system calls) is not counted; compare that with `strace -c -f -p PID`.
#
#   bench/callgrind.sh [crosswire|floor] [REQUESTS_PER_CLIENT]
#
# The server (one worker thread) runs under valgrind. 10 clients (tests/js/requests.mjs) send
# 50 `say` requests each, unmeasured; the counters are zeroed; each client sends
# REQUESTS_PER_CLIENT more (default 1,000), one after another; the counters are dumped.
# crosswire runs without its message rate limit: a client of this closed loop goes past its
# 1,000 messages/s even under valgrind, and the throttle's timers would be counted.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-crosswire}
per_client=${2:-1000}
clients=10
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[[ -d tests/js/node_modules/ws ]] ||
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
case $kind in
    crosswire)
        cargo build -q --profile release-lto -p crosswire-bench
        # `serve` listens on a free port of its own and prints it.
        server=(./target/release-lto/crosswire-bench serve --kind crosswire --name n1 --threads 1 --rate-limit 0) ;;
    floor)
        cargo build -q --release --locked --manifest-path ../shared/floor/Cargo.toml --target-dir target/floor
        # floor takes the port it is given (and prints it back): a free one.
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        server=(./target/floor/release/floor --port "$port" --threads 1) ;;
    *) echo "usage: bench/callgrind.sh [crosswire|floor] [REQUESTS_PER_CLIENT]" >&2; exit 2 ;;
esac
work=$(mktemp -d)
vpid=
trap '[[ -n $vpid ]] && kill "$vpid" 2>/dev/null; rm -rf "$work"' EXIT
# `serve` ends when its stdin closes: it is kept open.
tail -f /dev/null | valgrind --tool=callgrind --callgrind-out-file="$work/out" \
    "${server[@]}" >"$work/stdout" 2>"$work/valgrind.log" &
vpid=$!
for _ in $(seq 100); do
    grep -q listening "$work/stdout" 2>/dev/null && break
    sleep 0.2
done
port=$(grep -o 'listening 127.0.0.1:[0-9]*' "$work/stdout" | cut -d: -f2) ||
    { echo "the server did not start:" >&2; cat "$work/stdout" "$work/valgrind.log" >&2; exit 1; }
node tests/js/requests.mjs "$port" "$clients" 50 >/dev/null
callgrind_control --zero "$vpid" >/dev/null 2>&1
node tests/js/requests.mjs "$port" "$clients" "$per_client" >/dev/null
callgrind_control --dump "$vpid" >/dev/null 2>&1
kill "$vpid"
wait "$vpid" 2>/dev/null || true
vpid=
requests=$((clients * per_client))
# The dump taken after the load is part 1 (`out.1`). Calls to malloc: `cfn=` names the callee
# (by a number once it has been named), the `calls=` line after it counts the calls.
awk -v n="$requests" -v kind="$kind" '
    /^summary:/ { instructions = $2 }
    /^c?fn=\([0-9]+\) malloc$/ { match($0, /\([0-9]+\)/); id = substr($0, RSTART, RLENGTH) }
    /^cfn=/ { callee = $1; sub(/^cfn=/, "", callee) }
    /^calls=/ { if (id != "" && callee == id) { split($1, c, "="); mallocs += c[2] } }
    END {
        printf "%s: %d requests, %.0f instructions and %.2f malloc calls per request\n",
            kind, n, instructions / n, mallocs / n
    }' "$work/out.1"
