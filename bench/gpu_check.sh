#!/usr/bin/env bash
# The GPU check, for a lent GPU machine, in under 5 minutes: CPU and GPU loss curves agree per architecture,
# and fit() against a plain PyTorch loop on the GPU with large batches (bench/gpu_check.py says how).
#
#   bench/gpu_check.sh                  # on the GPU machine (needs a CUDA build of torch in $PYTHON's env)
#   bench/gpu_check.sh --device cpu --quick   # the CPU half: the script's own check where no GPU is
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
if [ ! -x "$python" ]; then python=python3; fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
exec timeout 280 "$python" -m bench.gpu_check "$@"
