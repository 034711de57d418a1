#!/usr/bin/env bash
# Builds the fuzz targets once, then runs every target for SECONDS_PER_TARGET seconds (default 20)
# one after another, and fails if any target crashed (a panic, a failed property assertion, a
# timeout or an out-of-memory). Seeds each target's corpus from fixtures/<vendor>/ and replays
# the committed crash inputs in regressions/<target>/ first. Installs cargo-fuzz 0.13.2 if it is
# missing. Builds on the stable toolchain: libFuzzer with `--sanitizer none` (no nightly
# sanitizers; the code under test is `#![forbid(unsafe_code)]`).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# The build goes to $CARGO_TARGET_DIR (cargo's default, fuzz/target, if unset). A summary table
# (executions, coverage, corpus size per target) is printed at the end; the full libFuzzer logs
# are in fuzz/logs/.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
shift || true
case $seconds in '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac

cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  echo "installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

# The web pages are not under test: skip their npm/Vite build (see the root build.rs).
export CAREBRIDGE_SKIP_WEB=1
export CARGO_TERM_COLOR=never
# Stable toolchain: no ASan (it needs nightly's -Zsanitizer); panics and assertions still abort.
fuzz_flags=(--sanitizer none)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# Seed corpus: the vendor's fixtures (copied, so libFuzzer's own additions stay out of fixtures/).
seed_dir() {
  case $1 in
    chup | chup_verify) echo ../fixtures/chup ;;
    vcita | vsee | timetap) echo "../fixtures/$1" ;;
    *) echo "" ;;
  esac
}

mkdir -p logs
echo "building the fuzz targets (release, debug assertions, overflow checks); log: fuzz/logs/build.log"
build_started=$(date +%s)
if ! cargo fuzz build "${fuzz_flags[@]}" >logs/build.log 2>&1; then
  grep -v '^ *Compiling ' logs/build.log | tail -40 >&2
  echo "FATAL: cargo fuzz build failed" >&2
  exit 1
fi
echo "build took $(($(date +%s) - build_started)) s"

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus" "regressions/$target" "artifacts/$target"
  seeds=$(seed_dir "$target")
  if [ -n "$seeds" ]; then cp -n "$seeds"/*.json "$corpus"/ 2>/dev/null || true; fi
  log="logs/$target.log"
  echo
  echo "==> $target: $seconds s"
  # -timeout: one input taking 10 s is a finding (a hang); -rss_limit_mb: so is 2 GiB of memory.
  if cargo fuzz run "${fuzz_flags[@]}" "$target" "$corpus" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict=json.dict >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$target")
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to|^Reproduce with:|cargo fuzz run' "$log" | head -20 || true
  fi
  rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  pcs=$(grep -oE 'inline 8-bit counters\): [0-9]+' "$log" | grep -oE '[0-9]+$' | head -1 || true)
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  corp=$(grep -oE 'corp: [0-9]+/[0-9a-zA-Z]+' <<<"$last" | sed 's/corp: //' || true)
  summary+=("$(printf '| %-12s | %-6s | %12s | %8s | %14s | %7s | %12s |' \
    "$target" "$status" "${runs:-?}" "${rate:-?}" "${cov:-?} / ${pcs:-?}" "${ft:-?}" "${corp:-?}")")
  echo "$target: $status, ${runs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
done

echo
echo "| target       | result |   executions |  exec/s  | cov / of PCs   |   ft    | corpus       |"
echo "|--------------|--------|--------------|----------|----------------|---------|--------------|"
printf '%s\n' "${summary[@]}"

if [ ${#failed[@]} -gt 0 ]; then
  echo >&2
  echo "FATAL: fuzz targets crashed: ${failed[*]}; the crashing inputs are in fuzz/artifacts/<target>/," >&2
  echo "the logs in fuzz/logs/. Fix the bug, then add the input as a regression (fuzz/README.md)." >&2
  exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${seconds} s each without a crash"
