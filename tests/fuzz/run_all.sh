#!/usr/bin/env bash
# Runs every fuzz target in turn, each until 10 million executions or SECONDS_PER_TARGET seconds
# (default 1800), whichever comes first, with AddressSanitizer (cargo-fuzz's default), a 2 GiB
# memory limit and a 10 s hang limit, seeded from tests/fuzz/corpus (make_seeds.py writes it).
# Needs `cargo install cargo-fuzz --version 0.13.2 --locked`; the stable toolchain runs it with
# RUSTC_BOOTSTRAP=1. Crashes land in tests/fuzz/artifacts/<target>/. Prints each target's
# execution count. Usage: tests/fuzz/run_all.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUSTC_BOOTSTRAP=1
seconds=${SECONDS_PER_TARGET:-1800}
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(spec_json safetensors npy refbench_folder onnx cli_input server_http server_grpc)
fi
[[ -d tests/fuzz/corpus ]] || python3 tests/fuzz/make_seeds.py
cargo fuzz build --fuzz-dir tests/fuzz
for target in "${targets[@]}"; do
  mkdir -p "tests/fuzz/corpus/$target"
  log="tests/fuzz/artifacts/$target.log"
  mkdir -p tests/fuzz/artifacts
  status=0
  cargo fuzz run --fuzz-dir tests/fuzz "$target" "tests/fuzz/corpus/$target" -- \
    -runs=10000000 -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=10 -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "$target: exit $status, $execs executions, $secs per second"
done
