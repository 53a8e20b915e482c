#!/usr/bin/env bash
# valgrind memcheck over the unsafe kernel code: the kernel conformance suite (every precision) and
# the determinism tests, for the portable and AVX2 kernels (valgrind has no AVX-512: under it the
# CPU reports none, and the tests are told to run only these two). valgrind runs one thread at a
# time, so the three test binaries run side by side, each logging to target/memcheck/NAME.log;
# the long batch-length sweeps keep their edge lengths only (DENSEBATCH_MEMCHECK). Exits non-zero
# if any memory error is found. Extra arguments go to valgrind. Needs valgrind; takes 20-50 min.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "memcheck.sh: valgrind is not installed" >&2; exit 2; }

# Build the three test binaries and find their paths.
mapfile -t bins < <(
  cargo test --no-run --message-format=json --lib --test determinism --test batch_determinism |
    python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["profile"]["test"]:
        print(msg["target"]["name"], msg["executable"])
'
)

export DENSEBATCH_TEST_KERNELS=portable,avx2-fma DENSEBATCH_MEMCHECK=1
mkdir -p target/memcheck
pids=()
names=()
for entry in "${bins[@]}"; do
  name=${entry%% *}
  exe=${entry#* }
  tests=()
  # In the library: the conformance suite of the portable and AVX2 kernels in every precision
  # (avx2_fma also matches the AVX2 build of the wide-panel kernel), and the check that the
  # detected kernel runs.
  [[ $name == densebatch ]] && tests=(kernels::conformance::portable kernels::conformance::avx2_fma)
  echo "memcheck: $name (log: target/memcheck/$name.log)" >&2
  (
    start=$SECONDS
    status=0
    valgrind --error-exitcode=1 --track-origins=yes --fair-sched=yes "$@" \
      "$exe" --test-threads=1 "${tests[@]}" >"target/memcheck/$name.log" 2>&1 || status=$?
    echo "memcheck: $name: exit $status after $((SECONDS - start)) s;" \
      "$(grep -m1 'ERROR SUMMARY' "target/memcheck/$name.log" | sed 's/^==[0-9]*== //')" >&2
    exit $status
  ) &
  pids+=($!)
  names+=("$name")
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "memcheck: ${names[$i]} FAILED" >&2; failed=1; }
done
[[ $failed == 0 ]] && echo "memcheck: 0 errors" >&2
exit $failed
