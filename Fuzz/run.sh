#!/usr/bin/env bash
# Fuzz one of Kiln's loaders with libFuzzer (address sanitizer on, the C code included).
#   Fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
# TARGET: pickle pth safetensors npy npz tfjs image onnx (or "all", SECONDS each).
# The corpus grows in .build-fuzz/corpus/TARGET, starting from seeds written by Kiln's own
# writers; Fuzz/regressions/TARGET holds the committed inputs of crashes found (replayed first).
# A crash, timeout or out-of-memory leaves its input in .build-fuzz/artifacts/ and exits non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
targets="pickle pth safetensors npy npz tfjs image onnx"
target=${1:?usage: Fuzz/run.sh TARGET SECONDS}; seconds=${2:?usage: Fuzz/run.sh TARGET SECONDS}; shift 2
if [ "$target" = all ]; then
    for t in $targets; do "$0" "$t" "$seconds" "$@"; done
    exit 0
fi
case " $targets " in *" $target "*) ;; *) echo "unknown target '$target' (one of: $targets, all)" >&2; exit 64 ;; esac

build="$root/.build-fuzz"
# -sanitize=fuzzer alone instruments only the C code; Swift needs its coverage spelled out.
# A failed build must not fall back on an earlier binary.
buildlog=$(mktemp)
built=0
swift build --package-path "$here" --scratch-path "$build" --sanitize fuzzer --sanitize address \
    -Xswiftc -sanitize-coverage=edge,trace-cmp,pc-table,inline-8bit-counters -q >"$buildlog" 2>&1 && built=1
grep -v 'ld.gold: warning' "$buildlog" || true
rm -f "$buildlog"
binary="$build/debug/kiln-fuzz"
[ "$built" = 1 ] && [ -x "$binary" ] || { echo "fuzz build failed" >&2; exit 1; }

export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=0:${ASAN_OPTIONS:-}"
# Loads are capped lower than the 2 GiB default so that every input runs in milliseconds; the
# limit checks themselves are what is exercised.
export KILN_MAX_LOAD_BYTES="${KILN_MAX_LOAD_BYTES:-256M}"
[ -d "$build/seeds/$target" ] || KILN_FUZZ_SEEDS="$build/seeds" KILN_FUZZ_TARGET="$target" "$binary"
corpus="$build/corpus/$target"; artifacts="$build/artifacts"
mkdir -p "$corpus" "$artifacts" "$here/regressions/$target"
log="$build/last-$target.log"
status=0
KILN_FUZZ_TARGET="$target" "$binary" "$corpus" "$build/seeds/$target" "$here/regressions/$target" \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -max_len="${MAX_LEN:-16384}" \
    -artifact_prefix="$artifacts/$target-" -print_final_stats=1 "$@" >"$log" 2>&1 || status=$?
grep -E '^(==[0-9]+==|SUMMARY|stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|Test unit written)' "$log" | sed "s/^/$target: /" || true
grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | sed "s/^/$target: /" || true
# Coverage must reach the Swift loaders, or the run was blind.
if grep -q 'no interesting inputs were found' "$log"; then echo "fuzz target $target: no coverage feedback (is the Swift code instrumented?)" >&2; exit 1; fi
[ "$status" = 0 ] || { echo "fuzz target $target failed (exit $status): see $log" >&2; exit 1; }
