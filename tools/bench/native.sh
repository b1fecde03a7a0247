#!/usr/bin/env bash
# Full-size CPU benchmark against transformers and onnxruntime (the Python reference), and
# full-size parity: our --raw-logits against transformers' segmentation_logits.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/need.sh

need_reference
out=bench-out
threads=$(nproc)
.venv-ref/bin/python tools/reference/reference.py "$out" "$threads"
# The peer's graph: the image encoder exported to ONNX (checked against transformers).
.venv-ref/bin/python tools/bench/onnx_export.py "$out"
cargo build --release --bin groupseg
# Our int8 row runs the copy a user makes with `groupseg convert` (onnxruntime's, the q8 graphs above).
[ -f "$out/model-int8/model.safetensors" ] || target/release/groupseg convert --to int8 --model "$out/model" --out "$out/model-int8"
GROUPSEG_BENCH_DIR="$out" GROUPSEG_BENCH_PYTHON=.venv-ref/bin/python cargo bench --bench forward
# Full-size parity: our --raw-logits against transformers' segmentation_logits, per-pixel argmax.
labels=$(.venv-ref/bin/python -c "import json; print(', '.join(json.load(open('$out/reference.json'))['labels']))")
target/release/groupseg segment "$out/photo448.png" --model "$out/model" --labels "$labels" \
  --out "$out/segment" --raw-logits "$out/ours_logits.npy"
.venv-ref/bin/python - "$out" <<'PY'
import sys, numpy as np
out = sys.argv[1]
ref, ours = np.load(f"{out}/reference_logits.npy"), np.load(f"{out}/ours_logits.npy")
agree = (ref.argmax(0) == ours.argmax(0)).mean()
print(f"full-size parity: argmax agreement {agree * 100:.3f} % of {ref.shape[1]}x{ref.shape[2]} pixels; "
  f"max |diff| {np.abs(ref - ours).max():.2e} on logits up to {np.abs(ref).max():.1f}")
sys.exit(0 if agree >= 0.995 else 1)
PY
