#!/usr/bin/env bash
# Fuzzes mproc's frame reader and codec with libFuzzer (Clang, ASan + UBSan): configures
# build-fuzz, builds the fuzz targets (fuzz/), and runs each for N seconds (default 60) on
# its seed corpus (fuzz/corpus/<target>/) plus what earlier runs found (build-fuzz/corpus/).
# Exits non-zero on the first finding; the input that triggered it is saved as
# build-fuzz/artifacts/<target>-crash-... (rerun it with: build-fuzz/fuzz/<target> <file>).
#
# Usage: scripts/fuzz.sh [seconds-per-target]
# Environment: FUZZ_BUILD_DIR (default: build-fuzz), FUZZ_JOBS (parallel fuzzing processes
# per target, default 1), FUZZ_ARGS (extra libFuzzer flags, e.g. -max_len=100000).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
build=${FUZZ_BUILD_DIR:-build-fuzz}
fuzz_jobs=${FUZZ_JOBS:-1}
targets=(fuzz_codec fuzz_frame fuzz_socket)

step() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ $seconds =~ ^[0-9]+$ ]] || die "seconds-per-target must be a number, not '$seconds'"
command -v clang++ >/dev/null || die "clang++ not found (scripts/setup.sh installs it)"

if [ ! -f "$build/CMakeCache.txt" ]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  step "configure: $build (Clang, ASan + UBSan, libFuzzer)"
  CC=clang CXX=clang++ cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMPROC_SANITIZE=address,undefined -DMPROC_BUILD_FUZZERS=ON -DMPROC_BUILD_TESTS=OFF \
    -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCHMARKS=OFF -DMPROC_INSTALL=OFF >/dev/null
fi
step "build: ${targets[*]}"
cmake --build "$build" --target "${targets[@]}" -j "$(nproc 2>/dev/null || echo 2)"

# Findings are what libFuzzer reports (crash, sanitizer error, uncaught exception, timeout) and
# memory: a decode must stay within a small multiple of its input, so one allocation over
# 512 MiB or a process over 2 GiB is a finding too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
root=$PWD
build=$(cd "$build" && pwd)
mkdir -p "$build/artifacts"
# shellcheck disable=SC2206  # FUZZ_ARGS is a list of words on purpose
extra=(${FUZZ_ARGS:-})
if [ "$fuzz_jobs" -gt 1 ]; then extra+=(-jobs="$fuzz_jobs" -workers="$fuzz_jobs"); fi
for target in "${targets[@]}"; do
  work="$build/corpus/$target"
  mkdir -p "$work"
  step "fuzz: $target for $seconds s (corpus: $work + fuzz/corpus/$target)"
  start=$SECONDS
  # From the build tree: with -jobs, libFuzzer writes a log per job into the current directory.
  (cd "$build" && "$build/fuzz/$target" "$work" "$root/fuzz/corpus/$target" -max_total_time="$seconds" \
     -timeout=10 -malloc_limit_mb=512 -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/$target-" \
     -print_final_stats=1 "${extra[@]}" >"$build/$target.log" 2>&1) ||
    { tail -n 60 "$build/$target.log" >&2; die "$target found a failure (log: $build/$target.log)"; }
  grep -E '^stat::number_of_executed_units|^Done' "$build/$target.log" | tail -n 2 || true
  step "fuzz: $target clean after $((SECONDS - start)) s"
done
