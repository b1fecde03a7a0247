#!/usr/bin/env bash
# The npm package's contents: the wasm modules (single-threaded, and threaded in threaded/), each
# also built with relaxed SIMD, with their bindings, the JS API over them and the shapes demo model,
# written to each folder named (default www/pkg).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/need.sh


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

need_wasm_tools
cargo build --lib --release --target "$WASM_TARGET"
RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" cargo build --lib --release --target "$WASM_TARGET" --target-dir target/relaxed
build_threaded_wasm "" target/threaded
build_threaded_wasm ",+relaxed-simd" target/threaded-relaxed
outs=("$@")
[ $# -gt 0 ] || outs=(www/pkg)
out=${outs[0]}
rm -rf "$out"
wasm-bindgen --target web --out-name groupseg_wasm --out-dir "$out" "target/$WASM_TARGET/release/groupseg.wasm"
add_relaxed_module "target/relaxed/$WASM_TARGET/release/groupseg.wasm" "$out"
wasm-bindgen --target web --out-name groupseg_wasm --out-dir "$out/threaded" \
  "target/threaded/$WASM_TARGET/release/groupseg.wasm"
add_relaxed_module "target/threaded-relaxed/$WASM_TARGET/release/groupseg.wasm" "$out/threaded"
cp js/*.js js/index.d.ts js/worker.d.ts js/package.json js/README.md "$out/"
cp js/threaded/threads.js js/threaded/thread-worker.js "$out/threaded/"
# The shapes demo model ships inside the package: the page and apps work with no network.
mkdir -p "$out/models" && cp -r models/shapes-demo "$out/models/"
for copy in "${outs[@]:1}"; do
  rm -rf "$copy" && cp -r "$out" "$copy"
done
echo "wasm modules: $(du -h "$out/groupseg_wasm_bg.wasm" | cut -f1), threaded $(du -h "$out/threaded/groupseg_wasm_bg.wasm" | cut -f1), each again with relaxed SIMD, in ${outs[*]}"
