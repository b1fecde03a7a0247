#!/usr/bin/env bash
# The fuzz targets (./build.sh fuzz [TARGET..]): decode tokenizer config checkpoint options, MINUTES
# each (10).
# cargo-fuzz needs the nightly toolchain (stable stays the default). Each target starts from its
# seeds; an input that crashes it is copied to fuzz/regressions/<target>/ for
# tests/fuzz_regressions.rs to replay once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/need.sh

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ $# -gt 0 ] || targets=(decode tokenizer config checkpoint options)
cargo +nightly fuzz build -O
# One core per fuzzer: libFuzzer runs one input at a time, and candle's and tokenizers' thread
# pools would only add scheduling noise.
export RAYON_NUM_THREADS=1
found=0
for t in "${targets[@]}"; do
  [ -d fuzz/seeds/$t ] || { echo "no fuzz target $t (decode, tokenizer, config, checkpoint, options)"; exit 2; }
  mkdir -p fuzz/corpus/$t fuzz/artifacts/$t
  # libFuzzer's default limits: 2 GB of memory (as the hostile corpus allows), 20 s an input.
  cargo +nightly fuzz run -O $t fuzz/corpus/$t fuzz/seeds/$t -- -max_total_time=$((${MINUTES:-10} * 60)) \
    -rss_limit_mb=2048 -timeout=20 -max_len=600000 -print_final_stats=1 2>&1 | tee fuzz/artifacts/$t.log \
    | grep -E '^(#[0-9]+ +(DONE|pulse)|==|SUMMARY|stat::number_of_executed_units|artifact_prefix)' || true
  for a in fuzz/artifacts/$t/*; do
    [ -f "$a" ] || continue
    # libFuzzer keeps its slowest input too: slow, not broken.
    case "$(basename "$a")" in slow-unit-*) echo "$t: slowest input kept in $a"; continue ;; esac
    found=1
    cp "$a" fuzz/regressions/$t/
    echo "$t: $a crashes it (copied to fuzz/regressions/$t/; fix, then cargo test --test fuzz_regressions)"
  done
done
exit $found
