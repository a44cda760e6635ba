#!/usr/bin/env bash
# Every fuzz target (fuzz/, libFuzzer through cargo-fuzz) for SECONDS each
# (default 15): first each input that once crashed (fuzz/regressions/<t>/),
# then the stored corpus (fuzz/corpus/<t>/, read only) plus new inputs in a
# scratch directory. A crash fails the run and names the input: copy it into
# fuzz/regressions/<t>/ with the fix. Stable toolchain: RUSTC_BOOTSTRAP=1
# lets cargo-fuzz use the sanitizer flags.
#   scripts/fuzz.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-15}"
shift || true
tools="${BERTH_TOOLS:-$HOME/.cache/berth-tools}"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $tools (once)"
  start=$(date +%s)
  cargo install --locked cargo-fuzz --root "$tools"
  echo "cargo-fuzz installed in $(( $(date +%s) - start )) s"
fi
export RUSTC_BOOTSTRAP=1
target_dir="${BERTH_FUZZ_TARGET:-$HOME/.cache/berth-fuzz-target}"
cargo fuzz build --target-dir "$target_dir"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
summary="$target_dir/fuzz-summary.txt"
: > "$summary"
for t in "${targets[@]}"; do
  scratch=$(mktemp -d)
  mkdir -p "fuzz/corpus/$t"
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    cargo fuzz run --target-dir "$target_dir" "$t" fuzz/regressions/"$t"/* -- -runs=1 \
      -artifact_prefix="$scratch/" >"$scratch/regressions.log" 2>&1 || {
      cat "$scratch/regressions.log"
      echo "fuzz target $t: a stored regression input fails again" >&2
      exit 1
    }
  fi
  if ! cargo fuzz run --target-dir "$target_dir" "$t" "$scratch" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$scratch/" >"$scratch/run.log" 2>&1; then
    tail -60 "$scratch/run.log"
    echo "fuzz target $t crashed; the input is in $scratch (copy it into fuzz/regressions/$t/)" >&2
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/run.log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$scratch/run.log" | tail -1 | grep -o '[0-9]*' || echo 0)
  echo "$t: $execs executions in ${secs} s, coverage $cov, 0 crashes" | tee -a "$summary"
  rm -rf "$scratch"
done
