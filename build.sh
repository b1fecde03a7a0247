#!/usr/bin/env bash
# groupseg's one entry point. Installs what each step needs, then does it.
#   ./build.sh test       everything CI runs: native tests, wasm32 build + bindings, browser tests
#   ./build.sh serve      build the wasm module and serve www/ on http://127.0.0.1:${PORT:-8080}
#   ./build.sh package    the npm package (ES module, TypeScript types, wasm) in pkg/
#   ./build.sh bench      full-size CPU benchmark against transformers and onnxruntime (Python reference)
#   ./build.sh bench-web  the package against onnxruntime-web in headless Chromium (wasm 1/2 threads, WebGPU), then per engine
#   ./build.sh fixtures   regenerate tests/fixtures with transformers (needs the Python reference)
#   ./build.sh shapes     train the shapes demo model again (needs the Python reference; ~3.5 hours, resumable)
#   ./build.sh fuzz [T..] run the fuzz targets (decode tokenizer config checkpoint options), MINUTES each (10)
#   ./build.sh lexicon    rewrite src/phrases/lexicon.txt from wink-lexicon (npm)
# Each step's work is a script of its own: tools/wasm/build.sh (the modules and the package),
# tools/bench/, tools/shapes/train.sh, tools/fuzz/run.sh; tools/need.sh installs what they need.
set -euo pipefail
cd "$(dirname "$0")"
source tools/need.sh

case "${1:-}" in
  test)
    need_vulkan
    need_coco_checker
    cargo test
    cargo check --benches
    # Built once, for the page (www/pkg) and as the npm package the examples install (pkg).
    tools/wasm/build.sh pkg www/pkg
    need_browser
    # The examples against the freshly built package, with their bundlers from npm: plain Vite,
    # React on Vite, and webpack 5 (the last two through the package's worker entry).
    for example in vite react webpack; do
      (cd examples/$example && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
    done
    (cd tests/browser && npm test)
    ;;
  serve)
    tools/wasm/build.sh www/pkg
    # Cross-origin isolated, so the page's WebAssembly runs on every core.
    exec python3 tools/serve.py www "${PORT:-8080}"
    ;;
  package) tools/wasm/build.sh pkg ;;
  bench) exec tools/bench/native.sh ;;
  bench-web) exec tools/bench/web.sh ;;
  shapes) exec tools/shapes/train.sh ;;
  fuzz) shift; exec tools/fuzz/run.sh "$@" ;;
  fixtures)
    need_reference
    .venv-ref/bin/python tests/fixtures/make_fixtures.py
    ;;
  lexicon) (cd tools/lexicon && npm ci --no-audit --no-fund --loglevel=error && node build.mjs) ;;
  *)
    sed -n '2,11p' "$0"
    exit 2
    ;;
esac
