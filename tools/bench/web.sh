#!/usr/bin/env bash
# The package against onnxruntime-web in headless Chromium (wasm on 1 and 2 threads, f32 and int8;
# WebGPU), then in each engine on one thread, each engine's WebAssembly memory, and a returning
# visitor's time to the first painted photo.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/need.sh

need_reference
out=bench-out
[ -f "$out/model/model.safetensors" ] || .venv-ref/bin/python tools/reference/reference.py "$out" "$(nproc)"
.venv-ref/bin/python tools/bench/onnx_export.py "$out"
# Our int8 rows run the copy a user makes with `groupseg convert` (the peer's, its q8 graphs above).
cargo build --release --bin groupseg
[ -f "$out/model-int8/model.safetensors" ] || target/release/groupseg convert --to int8 --model "$out/model" --out "$out/model-int8"
tools/wasm/build.sh
need_browser
(cd tools/bench/web && npm ci --no-audit --no-fund --loglevel=error)
node tools/bench/web.mjs "$out"
# Each engine (Chromium, Firefox ESR, WebKitGTK): speed on one thread against onnxruntime-web, and the
# WebAssembly memory of f32 and int8 (need_browser installed their drivers).
node tools/bench/engines-speed.mjs "$out"
node tools/bench/engines-memory.mjs "$out"
# A returning visitor's time from opening the page to the first painted photo (f32 and int8, 1 and
# 2 threads), with where it goes.
node tools/bench/first-paint.mjs "$out"
