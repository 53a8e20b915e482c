#!/usr/bin/env bash
# Creates the comparison harness's Python environment from the pinned requirements.
# Usage (from the repository root):  benches/compare/setup_venv.sh [VENV_DIR]   (default target/compare-venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-target/compare-venv}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
"$venv/bin/python" -c "import numpy, onnx, onnxruntime; print('venv ready:', '$venv')"
