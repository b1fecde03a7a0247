// The package's wasm and model files are found through `new URL(…, import.meta.url)`, which Vite
// copies as assets; it must not pre-bundle the package in development, or those URLs break.
export default {
  optimizeDeps: { exclude: ['groupseg'] },
  build: { target: 'es2022' },
};
