// Builds the dashboard (web/) into dist/web, which the server serves at / (src/http/dashboard.ts).
// `npm run build` (and so `npm ci` and `npm start`) runs it after tsc.
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  plugins: [react()],
  // The API is on the same origin; `vite` alone (dev server) proxies nothing: use `npm start`.
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    // Hashed names under assets/ (immutable caching); nothing inlined as data: URLs, which the
    // Content-Security-Policy (only 'self') would refuse.
    assetsDir: "assets",
    assetsInlineLimit: 0,
    sourcemap: true,
    target: "es2022",
    reportCompressedSize: false,
    // Most of it is the generated schema of the gitpod.v1 messages the app reads (about 130 KiB gzipped in all).
    chunkSizeWarningLimit: 800,
  },
  logLevel: "warn",
});
