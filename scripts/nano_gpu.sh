#!/usr/bin/env bash
# Lens-Nano on one GPU, in one device session (docs/nano-experiments.md):
#   1. the bundled model: `lens nano build` (world shards, denoiser, export, CFG sweep at 4 images/prompt)
#   2. experiment (a), concurrently: dense vs brief vs mixed captions, Nano-Eval over steps
#   3. experiment (b): the model at the held-out buckets (1:2, 2:1, the largest area)
#   4. the colour-swap probe (`lens eval probe`): does it colour what the caption names?
# Needs the frozen components in $COMPONENTS (`lens nano build-components`), and on a machine without
# the package installed, the wheels in .wheels/. Everything worth keeping lands in $OUT:
# the transformer split in 15 MB parts (files back from the device are capped at 16 MiB) and results.tgz.
# SMOKE=1 runs the same path in about a minute.
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/nano_gpu_out}
WORK=${WORK:-/tmp/nano_gpu}
COMPONENTS=${COMPONENTS:-.nano_carry/components}
rm -rf "$WORK"  # a warm machine keeps /tmp between calls: never resume a smoke run by accident
mkdir -p "$OUT" "$WORK"
if ! $PY -c "import lens" 2>/dev/null; then
  $PY -m pip install -q --no-deps .wheels/*.whl 2>&1 | grep -v WARNING | tail -1
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"

if [[ ${SMOKE:-0} == 1 ]]; then
  SAMPLES=1500 MAIN_MIN=0.3 ARM_STEPS=10 ARM_EVERY=10 GUID="2" EVAL_N=1 SIZE_N=1
else
  SAMPLES=${SAMPLES:-80000} MAIN_MIN=${MAIN_MIN:-5} ARM_STEPS=${ARM_STEPS:-1200} ARM_EVERY=${ARM_EVERY:-300}
  GUID=${GUID:-"1.5 2 3 4.5"} EVAL_N=4 SIZE_N=2
fi
DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
COMMON=(--set train.device=$DEVICE --set data.shuffle_buffer=4000)

# 1. the main model (the world stage writes the shards the arms share)
$PY -m lens nano build "$WORK/main" --components "$COMPONENTS" --samples "$SAMPLES" --jobs 15 \
  "${COMMON[@]}" --set data.batch_size=64 --set data.workers=6 --set train.steps=1000000 \
  --set train.max_minutes="$MAIN_MIN" --set checkpoint.interval=1000 --set log.every=100 \
  --set log.eval_every=1000 --set log.sample_every=2000 --guidance $GUID --eval-samples $EVAL_N \
  > "$WORK/main.log" 2>&1 &
MAIN=$!

# 2. experiment (a), once the shards exist; also scored by held-out loss (dense and brief prompts)
$PY -m lens world generate --out "$WORK/heldout" --n 96 --size 128x128 --seed 99 --shard-size 96 > /dev/null
until [[ -f $WORK/main/world/done.json ]] || ! kill -0 $MAIN 2>/dev/null; do sleep 2; done
$PY -m lens nano captions-experiment "$WORK/captions" --steps "$ARM_STEPS" --eval-every "$ARM_EVERY" \
  --loss-shards "$WORK/heldout" \
  --set encoders.source="$WORK/main/frozen" --set "data.shards=$WORK/main/world/part-*/*.tar" "${COMMON[@]}" \
  --set data.batch_size=32 --set data.workers=2 --set train.max_minutes="$MAIN_MIN" \
  > "$WORK/captions.log" 2>&1 &
ARMS=$!

# keep the weights as soon as they exist (in case the rest runs out of time)
until [[ -f $WORK/main/pipeline/lens_training.json ]] || ! kill -0 $MAIN 2>/dev/null; do sleep 2; done
if [[ -f $WORK/main/pipeline/lens_training.json ]]; then
  split -b 15M "$WORK/main/pipeline/transformer/diffusion_pytorch_model.safetensors" "$OUT/transformer.part-"
  sha256sum "$WORK/main/pipeline/transformer/diffusion_pytorch_model.safetensors"
fi
wait $MAIN; echo "main build exit $?"; tail -14 "$WORK/main.log"

# 3. experiment (b): the held-out buckets, at the default CFG the sweep chose
if [[ -f $WORK/main/pipeline/model_index.json ]]; then
  G=$($PY -c "import json; print(json.load(open('$WORK/main/pipeline/model_index.json'))['default_guidance_scale'])")
  $PY -m lens eval nano-run --model "$WORK/main/pipeline" --prompts reasoner --guidance "$G" \
    --size 128x128 96x192 192x96 192x192 --n-samples $SIZE_N --batch-size 156 \
    --json "$WORK/buckets.json" 2>&1 | grep -v "Loading"
fi
# 4. does the model colour what its caption names? (the colour-swap probe: ~0 on every CPU-sized model)
if [[ -f $WORK/main/pipeline/model_index.json ]]; then
  for T in object background; do
    $PY -m lens eval probe --model "$WORK/main/pipeline" --target $T --scenes 64 2>&1 | grep -v "Loading"
  done | tee "$WORK/binding.md"
fi
wait $ARMS; echo "captions experiment exit $?"; tail -24 "$WORK/captions.log"

# what comes back: logs, metrics, eval tables, the pipeline without its transformer weights
tar -czf "$OUT/results.tgz" -C "$WORK" --exclude='*.safetensors' --exclude='checkpoints' --exclude='world' \
  --exclude='events.out.*' main captions buckets.json binding.md main.log captions.log 2>/dev/null
ls -la "$OUT"
