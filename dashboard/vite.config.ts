import { defineConfig } from 'vite';

/** Where `vite dev` forwards API and socket.io traffic; the api's default port. */
const apiTarget = process.env.CITYPULSE_API_URL ?? 'http://127.0.0.1:3000';

export default defineConfig({
  // The api serves dist/ at its root, so absolute asset URLs are fine; same origin for everything.
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // maplibre-gl alone is ~1 MB minified; it is split into its own lazily loaded chunk.
    chunkSizeWarningLimit: 1500,
    sourcemap: true,
  },
  // maplibre-gl 6 ships ES modules and a module worker. The worker file is emitted as an asset
  // (src/map/engine.ts imports it with `?url`) and handed to setWorkerUrl, so it loads from the
  // same origin; pre-bundling would only rewrite what the library resolves at run time.
  optimizeDeps: { exclude: ['maplibre-gl'] },
  server: {
    proxy: {
      '/api': { target: apiTarget, changeOrigin: false },
      '/socket.io': { target: apiTarget, ws: true, changeOrigin: false },
    },
  },
  preview: {
    proxy: {
      '/api': { target: apiTarget },
      '/socket.io': { target: apiTarget, ws: true },
    },
  },
});
