#!/usr/bin/env bash
# One device session: every GPU number docs/benchmarks.md records. Run on the lent GPU machine with
# the repo as working directory; diffusers (pure Python) is carried as a wheel in .wheels/.
set -u
python3 -m pip install -q --no-deps .wheels/*.whl 2>&1 | grep -v WARNING | tail -1
export PYTHONPATH=$PWD/src
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-240}" "$@" 2>&1 | tail -"${TAIL:-8}"; }
run python3 bench/denoiser.py --config lens --height 1024 --width 1024 --steps 20 --dtype bf16 \
  --variants released eager compiled --repeats 3 --json "$OUT/denoiser_20step_cfg.json"
run python3 bench/denoiser.py --config lens --height 1024 --width 1024 --steps 4 --no-cfg --dtype bf16 \
  --variants released eager compiled --repeats 5 --json "$OUT/denoiser_4step.json"
if [ -f bench/train_step.py ]; then
  run python3 bench/train_step.py ${TRAIN_ARGS_512:---preset lens-stage1 --height 512 --width 512 --batch 24}
  run python3 bench/train_step.py ${TRAIN_ARGS_1024:---preset lens-stage2 --height 1024 --width 1024 --batch 6}
fi
