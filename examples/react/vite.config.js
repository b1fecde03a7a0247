import react from '@vitejs/plugin-react';

// Cross-origin isolation (these two headers) lets the package's worker run WebAssembly on every core;
// a site serving the built app must send them too.
const isolated = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

// The package's wasm, model files and worker are found through `new URL(…, import.meta.url)`, which
// Vite follows; it must not pre-bundle the package in development, or those URLs break.
export default {
  plugins: [react()],
  optimizeDeps: { exclude: ['groupseg'] },
  worker: { format: 'es' },
  build: { target: 'es2022' },
  server: { headers: isolated },
  preview: { headers: isolated },
};
