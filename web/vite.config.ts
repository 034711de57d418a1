// Two pages, one build: the dashboard (index.html → /) and GraphiQL (playground/index.html →
// /playground/). Built with `--base ./` so every asset URL is relative and the gateway can serve
// the pages under any prefix. Nothing is loaded from a CDN: GraphiQL's Monaco workers are
// bundled through `graphiql/setup-workers/vite`.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  // `npm run dev`: the pages with hot reload, /graphql (HTTP and websocket) proxied to a running
  // gateway (CAREBRIDGE_URL, default the development address).
  server: {
    proxy: {
      '/graphql': { target: process.env.CAREBRIDGE_URL ?? 'http://127.0.0.1:8080', ws: true },
    },
  },
  build: {
    // Hashed file names under assets/ are what the gateway caches for a year.
    assetsDir: 'assets',
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: {
        dashboard: resolve(import.meta.dirname, 'index.html'),
        playground: resolve(import.meta.dirname, 'playground/index.html'),
      },
    },
  },
});
