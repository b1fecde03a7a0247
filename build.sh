#!/usr/bin/env bash
# groupseg's one entry point. Installs what each step needs, then does it.
#   ./build.sh test       everything CI runs: native tests, wasm32 build + bindings, browser tests
#   ./build.sh serve      build the wasm module and serve www/ on http://127.0.0.1:${PORT:-8080}
#   ./build.sh package    the npm package (ES module, TypeScript types, wasm) in pkg/
#   ./build.sh bench      full-size CPU benchmark against transformers and onnxruntime (Python reference)
#   ./build.sh bench-web  the package against onnxruntime-web in headless Chromium (wasm 1/2 threads, WebGPU)
#   ./build.sh fixtures   regenerate tests/fixtures with transformers (needs the Python reference)
#   ./build.sh shapes     train the shapes demo model again (needs the Python reference; ~3.5 hours, resumable)
#   ./build.sh fuzz [T..] run the fuzz targets (decode tokenizer config checkpoint options), MINUTES each (10)
#   ./build.sh lexicon    rewrite src/phrases/lexicon.txt from wink-lexicon (npm)
set -euo pipefail
cd "$(dirname "$0")"

WASM_TARGET=wasm32-unknown-unknown
# Mesa's Vulkan loader warns on every start without one (tests, bench and CLI all open the GPU).
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

need_wasm_tools() {
  rustup target list --installed | grep -qx "$WASM_TARGET" || rustup target add "$WASM_TARGET"
  # wasm-bindgen-cli must be exactly the wasm-bindgen version Cargo.lock pins.
  local want
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    # Without --locked: one of its locked dependency versions is not served by our registry mirror.
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

# The threaded module: atomics and an imported shared memory (up to 4 GiB, wasm32's whole space; the
# TLS exports let wasm-bindgen give each worker its own thread-locals) need std
# rebuilt with them, which only the nightly toolchain does; its own target dir keeps the stable
# build's cache. RUSTFLAGS replaces .cargo/config's, so simd128 is repeated here. $1: more target
# features (",+relaxed-simd"), $2: its target dir.
build_threaded_wasm() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  rustup component list --toolchain nightly --installed | grep -q '^rust-src' || rustup component add rust-src --toolchain nightly
  local link="--shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base"
  RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128$1 -C link-args=${link// / -C link-args=}" \
    cargo +nightly build --lib --release --target "$WASM_TARGET" --features threads \
    -Z build-std=panic_abort,std --target-dir "$2"
}

# Each module is built twice: with WebAssembly SIMD only, and with relaxed SIMD too (fused
# multiply-adds in the matrix products; Chromium has it, Safari not yet), which the package loads
# where the browser validates it. Both have the same bindings, checked here (but for comments, which
# quote a closure shim's index in its module), so the relaxed build ships as a second .wasm beside
# the first: $1 the built module, $2 the bindings' folder.
add_relaxed_module() {
  local tmp
  tmp=$(mktemp -d)
  wasm-bindgen --target web --out-name groupseg_wasm --out-dir "$tmp" "$1"
  if ! diff -q <(grep -v '^ *//' "$tmp/groupseg_wasm.js") <(grep -v '^ *//' "$2/groupseg_wasm.js") >/dev/null; then
    echo "the relaxed-SIMD module's bindings differ from the plain module's ($1)" >&2
    exit 1
  fi
  mv "$tmp/groupseg_wasm_bg.wasm" "$2/groupseg_wasm_relaxed_bg.wasm"
  rm -rf "$tmp"
}

# The npm package's contents in $1: the wasm modules (single-threaded, and threaded in threaded/) with
# their bindings, and the JS API over them.
build_wasm() {
  local out="${1:-www/pkg}"
  need_wasm_tools
  cargo build --lib --release --target "$WASM_TARGET"
  RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" cargo build --lib --release --target "$WASM_TARGET" --target-dir target/relaxed
  build_threaded_wasm "" target/threaded
  build_threaded_wasm ",+relaxed-simd" target/threaded-relaxed
  rm -rf "$out"
  wasm-bindgen --target web --out-name groupseg_wasm --out-dir "$out" "target/$WASM_TARGET/release/groupseg.wasm"
  add_relaxed_module "target/relaxed/$WASM_TARGET/release/groupseg.wasm" "$out"
  wasm-bindgen --target web --out-name groupseg_wasm --out-dir "$out/threaded" \
    "target/threaded/$WASM_TARGET/release/groupseg.wasm"
  add_relaxed_module "target/threaded-relaxed/$WASM_TARGET/release/groupseg.wasm" "$out/threaded"
  cp js/index.js js/index.d.ts js/worker.js js/worker-entry.js js/worker.d.ts js/package.json js/README.md "$out/"
  cp js/threaded/threads.js js/threaded/thread-worker.js "$out/threaded/"
  # The shapes demo model ships inside the package: the page and apps work with no network.
  mkdir -p "$out/models" && cp -r models/shapes-demo "$out/models/"
  echo "wasm modules: $(du -h "$out/groupseg_wasm_bg.wasm" | cut -f1), threaded $(du -h "$out/threaded/groupseg_wasm_bg.wasm" | cut -f1), each again with relaxed SIMD, in $out/"
}

need_vulkan() {
  # Without a GPU the GPU tests run natively on Mesa's lavapipe (Vulkan on the CPU).
  if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
  fi
}

need_browser() {
  # Debian's Chromium (WebGPU on its SwiftShader adapter) driven by playwright-core; never a
  # downloaded browser.
  if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium
  fi
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
}

need_coco_checker() {
  # pycocotools (PyPI), the COCO reader nobody here wrote, checks our COCO files in the tests.
  if [ ! -x .venv-coco/bin/python ]; then
    python3 -m venv .venv-coco || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv .venv-coco; }
    .venv-coco/bin/pip install -q -r tools/coco/requirements.txt
  fi
}

need_reference() {
  # The Python reference (torch + transformers) is a developer tool: several GB, never needed by CI.
  if [ ! -x .venv-ref/bin/python ]; then
    python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tools/reference/requirements.txt
  fi
}

build_examples() {
  # The examples against the freshly built package in pkg/, with their bundlers from npm: plain Vite,
  # React on Vite, and webpack 5 (the last two through the package's worker entry).
  (cd examples/vite && npm ci --no-audit --no-fund --loglevel=error && npx vite build --logLevel warn)
  (cd examples/react && npm ci --no-audit --no-fund --loglevel=error && npx vite build --logLevel warn)
  (cd examples/webpack && npm ci --no-audit --no-fund --loglevel=error && npx webpack --mode production --no-stats)
}

case "${1:-}" in
  test)
    need_vulkan
    need_coco_checker
    cargo test
    cargo check --benches
    build_wasm
    build_wasm pkg
    need_browser
    build_examples
    (cd tests/browser && npm test)
    ;;
  serve)
    build_wasm
    # Cross-origin isolated, so the page's WebAssembly runs on every core.
    exec python3 tools/serve.py www "${PORT:-8080}"
    ;;
  package)
    build_wasm pkg
    ;;
  bench)
    need_reference
    out=bench-out
    threads=$(nproc)
    .venv-ref/bin/python tools/reference/reference.py "$out" "$threads"
    # The peer's graph: the image encoder exported to ONNX (checked against transformers).
    .venv-ref/bin/python tools/bench/onnx_export.py "$out"
    cargo build --release --bin groupseg
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
    ;;
  bench-web)
    need_reference
    out=bench-out
    [ -f "$out/model/model.safetensors" ] || .venv-ref/bin/python tools/reference/reference.py "$out" "$(nproc)"
    .venv-ref/bin/python tools/bench/onnx_export.py "$out"
    build_wasm
    need_browser
    (cd tools/bench/web && npm ci --no-audit --no-fund --loglevel=error)
    node tools/bench/web.mjs "$out"
    ;;
  shapes)
    # Trains the shapes demo model from scratch in three stages (12,000 steps at 64 pixels, about
    # 3 hours on 2 idle cores; then 400 steps at 128 pixels and 300 with the background-flat term,
    # 25 minutes; SEED to change; rerun to resume a stage cut off by its 100-minute guard), ships it
    # to models/shapes-demo and rewrites the accuracy test's scenes and transformers' figures for it.
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
    ;;
  fuzz)
    # cargo-fuzz needs the nightly toolchain (stable stays the default). Each target starts from its
    # seeds; an input that crashes it is copied to fuzz/regressions/<target>/ for
    # tests/fuzz_regressions.rs to replay once fixed.
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    shift
    targets=("$@")
    [ $# -gt 0 ] || targets=(decode tokenizer config checkpoint options)
    cargo +nightly fuzz build -O
    # One core per fuzzer: libFuzzer runs one input at a time, and candle's and tokenizers' thread
    # pools would only add scheduling noise.
    export RAYON_NUM_THREADS=1
    found=0
    for t in "${targets[@]}"; do
      [ -d fuzz/seeds/$t ] || { echo "no fuzz target $t (decode, tokenizer, config, checkpoint, options)"; exit 2; }
      mkdir -p fuzz/corpus/$t fuzz/artifacts/$t
      # libFuzzer's default limits: 2 GB of memory (as the hostile corpus allows), 20 s an input.
      cargo +nightly fuzz run -O $t fuzz/corpus/$t fuzz/seeds/$t -- -max_total_time=$((${MINUTES:-10} * 60)) \
        -rss_limit_mb=2048 -timeout=20 -max_len=600000 -print_final_stats=1 2>&1 | tee fuzz/artifacts/$t.log \
        | grep -E '^(#[0-9]+ +(DONE|pulse)|==|SUMMARY|stat::number_of_executed_units|artifact_prefix)' || true
      for a in fuzz/artifacts/$t/*; do
        [ -f "$a" ] || continue
        # libFuzzer keeps its slowest input too: slow, not broken.
        case "$(basename "$a")" in slow-unit-*) echo "$t: slowest input kept in $a"; continue ;; esac
        found=1
        cp "$a" fuzz/regressions/$t/
        echo "$t: $a crashes it (copied to fuzz/regressions/$t/; fix, then cargo test --test fuzz_regressions)"
      done
    done
    exit $found
    ;;
  fixtures)
    need_reference
    .venv-ref/bin/python tests/fixtures/make_fixtures.py
    ;;
  lexicon)
    (cd tools/lexicon && npm ci --no-audit --no-fund --loglevel=error && node build.mjs)
    ;;
  *)
    sed -n '2,10p' "$0"
    exit 2
    ;;
esac
