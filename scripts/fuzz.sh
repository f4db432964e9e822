#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang with ASan + UBSan, into build-fuzz/) and runs each
# for a fixed time. Exits non-zero when a harness finds anything: the reproducer is kept in
# build-fuzz/findings/<target>-crash-..., rerun it with build-fuzz/fuzz/fuzz_<target> <file>.
# Usage: scripts/fuzz.sh [--seconds N] [--jobs J] [--build-only] [target ...]
#   --seconds N   time per target (default 30; CI's short pass). A longer hunt: --seconds 600
#   --jobs J      targets run at once (default: the number of cores)
#   targets       json rle coco_dataset coco_results pickle checkpoint image serve_request (default: all)
# Inputs that grow the coverage are kept in build-fuzz/corpus/<target>/ and reused by the next run;
# the committed seeds in fuzz/corpus/<target>/ are only read.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(json rle coco_dataset coco_results pickle checkpoint image serve_request)
seconds=30
jobs=$(nproc)
build_only=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")

build="${INSTSEG_FUZZ_BUILD:-build-fuzz}"  # the environment may name another tree
scripts/sanitize.sh --configure-only
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
[[ $build_only -eq 1 ]] && exit 0

# Per-input limits: the largest seed is under 4 KB; a few MB of RSS and well under a second per
# input is the normal cost, so these only catch runaway memory and hangs. A malloc above
# -malloc_limit_mb (= rss_limit_mb) is reported as a finding too.
declare -A max_len=([json]=8192 [rle]=4096 [coco_dataset]=16384 [coco_results]=16384
                    [pickle]=4096 [checkpoint]=8192 [image]=8192
                    [serve_request]=4096)
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OPENCV_LOG_LEVEL="${OPENCV_LOG_LEVEL:-FATAL}"  # corrupt images are the point: no log per input
mkdir -p "$build/findings" "$build/fuzz-logs"

run_target() {
  local t=$1
  mkdir -p "$build/corpus/$t"
  local seeds=()
  [[ -d "fuzz/corpus/$t" ]] && seeds=("fuzz/corpus/$t")  # rle has none: it starts from nothing
  # Leaks found after an input are findings, except in the .pth reader: LibTorch leaks ~400 bytes
  # of miniz state for each corrupt zip it refuses (see sanitize.sh), which is most inputs.
  local leaks=1
  [[ $t == checkpoint ]] && leaks=0
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=$leaks}" \
    "$build/fuzz/fuzz_$t" "$build/corpus/$t" "${seeds[@]}" -detect_leaks=$leaks \
    -max_total_time="$seconds" -max_len="${max_len[$t]}" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$build/findings/$t-" >"$build/fuzz-logs/$t.log" 2>&1
}

failed=()
pids=()
names=()
wait_one() {
  local i=$1
  if wait "${pids[$i]}"; then
    echo "fuzz: ${names[$i]}: no finding ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz-logs/${names[$i]}.log" | grep -o '[0-9]*$') inputs in ${seconds}s)"
  else
    echo "fuzz: ${names[$i]}: FINDING; log $build/fuzz-logs/${names[$i]}.log"
    grep -E -m1 -A12 'ERROR|runtime error|invariant failed|uncaught|Test unit written' "$build/fuzz-logs/${names[$i]}.log" || tail -20 "$build/fuzz-logs/${names[$i]}.log"
    failed+=("${names[$i]}")
  fi
}
for t in "${targets[@]}"; do
  [[ -n "${max_len[$t]:-}" ]] || { echo "fuzz.sh: unknown target $t" >&2; exit 2; }
  if [[ ${#pids[@]} -ge $jobs ]]; then
    wait_one 0
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
  run_target "$t" &
  pids+=($!)
  names+=("$t")
done
for i in "${!pids[@]}"; do wait_one "$i"; done

n=${#targets[@]}
echo "fuzz: $((n - ${#failed[@]})) passed, ${#failed[@]} failed"
[[ ${#failed[@]} -eq 0 ]]
