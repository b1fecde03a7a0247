# What the build's steps need, installed when missing. Sourced by build.sh and the scripts under
# tools/ (from the repository root).

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

need_vulkan() {
  # Without a GPU the GPU tests run natively on Mesa's lavapipe (Vulkan on the CPU).
  if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
  fi
}

need_browser() {
  # Debian's browsers, never downloaded ones: Chromium (WebGPU on its SwiftShader adapter) driven by
  # playwright-core, Firefox ESR by puppeteer-core over WebDriver BiDi, and WebKitGTK (Safari's
  # engine) by its WebKitWebDriver, under Xvfb.
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/firefox-esr ] || [ ! -x /usr/bin/WebKitWebDriver ] || ! command -v Xvfb >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium firefox-esr webkit2gtk-driver xvfb
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
