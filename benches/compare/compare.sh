#!/usr/bin/env bash
# Reproduce the headline comparison against ONNX Runtime and numpy from a clone.
# Usage, from the repository root:  benches/compare/compare.sh [run_engines.py options...]
#   e.g. benches/compare/compare.sh --models mnist-mlp --batches 1,32,512 --json target/compare/out.json
# First use creates the venv (target/compare-venv, pinned requirements) and the models
# (target/compare/models). COMPARE_DIR and COMPARE_VENV move them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${COMPARE_DIR:-target/compare}
venv=${COMPARE_VENV:-target/compare-venv}
[[ -x $venv/bin/python ]] || "$here/setup_venv.sh" "$venv"
for model in tiny-mlp mnist-mlp wide-mlp mnist-sigmoid mnist-tanh mnist-gelu; do
  [[ -f $work/models/$model/model.onnx ]] || "$venv/bin/python" "$here/make_models.py" "$work/models" --models "$model"
done
cargo build --release --example refbench
exec "$venv/bin/python" "$here/run_engines.py" --models-dir "$work/models" \
  --ours "$PWD/target/release/examples/refbench {model_dir} {batch} {threads} {reps} {warmup}" "$@"
