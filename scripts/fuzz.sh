#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for a bounded time, one after the other, and fails if any
# of them finds a crash (a panic, a failed check, or a sanitizer report).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]          # default 60
#   FUZZ_TARGETS="frame_reader envelope" scripts/fuzz.sh 600
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). Each target reads
# its committed seeds (fuzz/seeds/TARGET, never written to) and grows a scratch corpus in
# fuzz/corpus/TARGET; crashes land in fuzz/artifacts/TARGET. Both are git-ignored.
# Reproduce a crash: cargo +nightly fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
read -r -a targets <<<"${FUZZ_TARGETS:-frame_reader frame_differential client_frame envelope request_target js_wire}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi

# The frame targets need inputs longer than one 8 KiB read and than the 9000 and 20000-byte
# message limits they pick from; the others stay at libFuzzer's default.
max_len() {
    case "$1" in
        frame_reader | frame_differential) echo 40000 ;;
        *) echo 4096 ;;
    esac
}

# -a: debug assertions (integer overflow panics) on top of AddressSanitizer.
cargo +nightly fuzz build -a || exit 1

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    if ! cargo +nightly fuzz run -a "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crashes"
