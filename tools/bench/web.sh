#!/usr/bin/env bash
# The package against onnxruntime-web in headless Chromium (wasm on 1 and 2 threads, WebGPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/need.sh

need_reference
out=bench-out
[ -f "$out/model/model.safetensors" ] || .venv-ref/bin/python tools/reference/reference.py "$out" "$(nproc)"
.venv-ref/bin/python tools/bench/onnx_export.py "$out"
tools/wasm/build.sh
need_browser
(cd tools/bench/web && npm ci --no-audit --no-fund --loglevel=error)
node tools/bench/web.mjs "$out"
