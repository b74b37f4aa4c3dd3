#!/usr/bin/env bash
# Fuzzing (README "Fuzzing"): builds the cargo-fuzz targets in fuzz/ and runs
# each for SECONDS (default 60), one libFuzzer process at a time. Installs
# cargo-fuzz into .tools/cargo when missing. Exits non-zero on the first
# crash, printing its log tail and the input that reproduces it.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. New inputs accumulate in fuzz/corpus/<target>
# (ignored by git); the checked-in seeds are read from fuzz/seeds/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
shift || true
TOOLS="$PWD/.tools/cargo"
export PATH="$TOOLS/bin:$PATH" RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz.sh: installing cargo-fuzz into .tools/cargo"
  cargo install cargo-fuzz --locked --quiet --root "$TOOLS"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

build_log=fuzz/target/fuzz-build.log
mkdir -p fuzz/target
if ! cargo fuzz build >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  echo "fuzz.sh: build failed (full log: $build_log)" >&2
  exit 1
fi

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/target/fuzz-$t.log"
  start=$SECONDS
  # -timeout: an input running 10 s is a hang, reported like a crash.
  if ! cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$SECS" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "fuzz.sh: $t FAILED (full log: $log; reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t <artifact above>)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz: $t ok, ${runs:-?} executions in $((SECONDS - start)) s, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
done
