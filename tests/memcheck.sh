#!/usr/bin/env bash
# valgrind memcheck over the unsafe kernel code: the kernel conformance suite and the determinism
# tests, for the portable and AVX2 kernels (valgrind has no AVX-512: under it the CPU reports none,
# and the tests are told to run only these two). Exits non-zero on the first memory error.
# Extra arguments go to valgrind. Needs valgrind; takes long (see README, "Robustness").
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

export DENSEBATCH_TEST_KERNELS=portable,avx2-fma
run() {
  echo "memcheck: $*" >&2
  valgrind --quiet --error-exitcode=1 --track-origins=yes "${VALGRIND_ARGS[@]}" "$@"
}
VALGRIND_ARGS=("$@")
for entry in "${bins[@]}"; do
  name=${entry%% *}
  exe=${entry#* }
  case $name in
    densebatch)
      # The conformance suite of the portable and AVX2 kernels (avx2_fma also matches the
      # AVX2 build of the wide-panel kernel), and the check that the detected kernel runs.
      run "$exe" --test-threads=2 kernels::conformance::portable:: kernels::conformance::avx2_fma \
        kernels::conformance::portable_and_detected ;;
    *) run "$exe" --test-threads=2 ;;
  esac
done
echo "memcheck: 0 errors" >&2
