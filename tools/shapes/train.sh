#!/usr/bin/env bash
# The shapes demo, trained again (./build.sh shapes).
# Trains the shapes demo model from scratch in three stages (12,000 steps at 64 pixels, about
# 3 hours on 2 idle cores; then 400 steps at 128 pixels and 300 with the background-flat term,
# 25 minutes; SEED to change; rerun to resume a stage cut off by its 100-minute guard), ships it
# to models/shapes-demo and rewrites the accuracy test's scenes and transformers' figures for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/need.sh

need_reference
.venv-ref/bin/pip install -q matplotlib
run=shapes-out
pools=$run/pools
# Training scenes from seeds the evaluation never uses (pictures and captions only, no masks).
[ -f $pools/easy.npz ] || .venv-ref/bin/python tools/shapes/pool.py $pools/easy.npz --first 20000000 --count 20000 \
  --max-objects 2 --backgrounds plain
[ -f $pools/full.npz ] || .venv-ref/bin/python tools/shapes/pool.py $pools/full.npz --first 10000000 --count 120000
# One training stage: resumes its own checkpoint; stops the verb until the stage is done.
stage() {
  local dir=$run/$1; shift
  local resume=()
  [ -f $dir/checkpoint.pt ] && resume=(--resume)
  .venv-ref/bin/python tools/shapes/train.py $dir --pool $pools/full.npz --seed "${SEED:-0}" "$@" "${resume[@]}"
  grep -q '"done"' $dir/log.jsonl 2>/dev/null || { echo "$dir stopped early: run ./build.sh shapes again to resume"; exit 1; }
}
stage train --easy-pool $pools/easy.npz --easy-steps 500 --steps 12000 --warmup 200 --eval-every 1000 --shapes-only 0.5
# Fine-tuning on scenes resized to 128 pixels: the 4-pixel patches fall finer on the shapes' edges.
stage finetune --init $run/train/model --side 128 --batch 32 --steps 400 --lr 2e-4 --warmup 20 --eval-every 100
# Background groups taught to favour no object phrase.
stage background --init $run/finetune/model --side 128 --batch 32 --steps 300 --lr 1e-4 --warmup 20 \
  --eval-every 100 --background-flat 1
.venv-ref/bin/python tools/shapes/export.py $run/background/model models/shapes-demo \
  --stage $run/train --stage $run/finetune --stage $run/background
cp $run/train/curves.png docs/shapes-training.png
.venv-ref/bin/python tools/shapes/samples.py www/samples
read -r threshold side < <(.venv-ref/bin/python -c "import json; s = json.load(open('models/shapes-demo/config.json'))['segmentation']; print(s['background_threshold'], s['short_side'])")
rm -rf tests/fixtures/shapes-eval
.venv-ref/bin/python tools/shapes/evaluate.py models/shapes-demo tests/fixtures/shapes-eval/transformers.json \
  --threshold "$threshold" --side "$side" --write-scenes tests/fixtures/shapes-eval
