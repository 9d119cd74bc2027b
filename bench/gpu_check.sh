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
SECTIONS=${SECTIONS:-"denoiser train"}
if [[ $SECTIONS == *denoiser* ]]; then
  run python3 bench/denoiser.py --config lens --height 1024 --width 1024 --steps 20 --dtype bf16 \
    --variants released eager compiled --repeats 3 --json "$OUT/denoiser_20step_cfg.json"
  run python3 bench/denoiser.py --config lens --height 1024 --width 1024 --steps 4 --no-cfg --dtype bf16 \
    --variants released eager compiled --repeats 5 --json "$OUT/denoiser_4step.json"
fi
if [[ $SECTIONS == *train* ]]; then
  # 4.1B training steps (forward + backward + AdamW), FSDP2 on one GPU as the trainer runs, full AC
  run python3 bench/train_step.py --config lens-stage2 --size 1024x1024 --batch 6 --text-tokens 256 \
    --fsdp --ac --compare none --steps 3 --warmup 1
  run python3 bench/train_step.py --config lens-stage1 --size 512x512 --batch 24 --text-tokens 256 \
    --fsdp --ac --compare compile --steps 3 --warmup 1
fi
