// The console is built into ../crates/console/assets, which the server embeds: a plain
// `cargo build` then needs no Node.js (see docs/console.md).
import { defineConfig } from 'vite';

const api = process.env.CONSOLE_API_URL ?? 'http://127.0.0.1:1026';

export default defineConfig({
  base: '/',
  build: {
    // CONSOLE_OUT: somewhere else (scripts/build-console.sh --check compares the two).
    outDir: process.env.CONSOLE_OUT ?? '../crates/console/assets',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      output: {
        manualChunks: (id) => (id.includes('node_modules/maplibre-gl') ? 'maplibre' : undefined),
      },
    },
  },
  server: {
    // `npx vite` against a running `citybrain serve --demo` (CONSOLE_API_URL) while developing.
    proxy: {
      '/ngsi-ld': api,
      '/platform': api,
      '/ingest': api,
      '/open311': api,
      '/health': api,
      '/metrics': api,
    },
  },
});
