// webpack 5 follows the package's `new URL(…, import.meta.url)` references (the wasm module, the demo
// model's files) as asset files and its `new Worker(new URL(…))` as a worker bundle; nothing else is
// needed. The page is dist/index.html beside the bundle.
const fs = require('node:fs');
const path = require('node:path');

/** Emits public/index.html beside the bundle. */
class Page {
  apply(compiler) {
    const { Compilation, sources } = compiler.webpack;
    compiler.hooks.thisCompilation.tap('Page', (compilation) => {
      compilation.hooks.processAssets.tap({ name: 'Page', stage: Compilation.PROCESS_ASSETS_STAGE_ADDITIONAL }, () => {
        compilation.emitAsset('index.html', new sources.RawSource(fs.readFileSync(path.join(__dirname, 'public', 'index.html'))));
      });
    });
  }
}

module.exports = {
  entry: './src/index.js',
  output: { path: path.resolve(__dirname, 'dist'), filename: 'main.js', clean: true, publicPath: 'auto' },
  module: {
    // The demo model's files come as URLs, not parsed modules.
    rules: [{ test: /\.(json|safetensors|wasm)$/, resourceQuery: { not: [/raw/] }, dependency: 'url', type: 'asset/resource' }],
  },
  plugins: [new Page()],
  performance: { hints: false },
  // Cross-origin isolation lets the package's worker run WebAssembly on every core (webpack-dev-server
  // sends these; a site serving dist/ must send them too).
  devServer: { headers: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } },
};
