import react from '@vitejs/plugin-react';

// The package's wasm, model files and worker are found through `new URL(…, import.meta.url)`, which
// Vite follows; it must not pre-bundle the package in development, or those URLs break.
export default {
  plugins: [react()],
  optimizeDeps: { exclude: ['groupseg'] },
  worker: { format: 'es' },
  build: { target: 'es2022' },
};
