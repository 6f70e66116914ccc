// The web dashboard (web/, built by Vite into dist/web): its files, served from memory on the
// API's own port. Hashed assets are immutable for a year; index.html is revalidated on every
// load (ETag), so a new build reaches browsers at once. Every answer carries a
// Content-Security-Policy that allows only this origin. The API paths are not touched: only the
// built files and the dashboard's own page paths are routes here.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

export interface DashboardOptions {
  /** The built app (dist/web); when it has no index.html, `/` explains how to build it. */
  dir: string;
  /** Served as /dashboard.json: what the app needs to know of this server's settings. */
  settings: DashboardSettings;
  warn: (message: string) => void;
}

export interface DashboardSettings {
  /** RUNNER_LIVENESS_WINDOW_SECONDS: silent this long, a signed-up runner is INACTIVE. */
  livenessWindowSeconds: number;
  /** The heartbeat interval runners are told to keep (the development runner's default). */
  heartbeatSeconds: number;
  /** How long an exchange token of CreateRunner or CreateRunnerToken is valid. */
  exchangeTokenTtlSeconds: number;
}

/** Only this origin: no inline scripts or styles, no frames, no plugins. */
export const DASHBOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; " +
  "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/** Paths the app routes itself (history API); each answers index.html. */
const PAGE_ROUTES = ["/", "/runners", "/runners/:runnerId"];

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
  ".map": "application/json; charset=utf-8",
};

interface StaticFile {
  body: Buffer;
  gzip: Buffer | undefined;
  type: string;
  etag: string;
  cacheControl: string;
}

const IMMUTABLE = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";

export function registerDashboard(app: FastifyInstance, options: DashboardOptions): void {
  const files = loadFiles(options.dir);
  const index = files.get("/index.html");
  const settings = JSON.stringify(options.settings);
  app.get("/dashboard.json", async (_request, reply) => {
    securityHeaders(reply).header("cache-control", REVALIDATE).header("content-type", "application/json; charset=utf-8");
    return settings;
  });
  if (!index) {
    options.warn(`the web dashboard is not built (no ${join(options.dir, "index.html")}): run \`npm run build\` to serve it at /`);
    app.get("/", async (_request, reply) => {
      securityHeaders(reply).code(503).header("content-type", "text/plain; charset=utf-8").header("cache-control", REVALIDATE);
      return "The web dashboard is not built. Run `npm run build` (npm ci and npm start do it) and restart the server.\n";
    });
    return;
  }
  for (const [path, file] of files) {
    if (path === "/index.html") continue;
    app.get(path, (request, reply) => send(request, reply, file));
  }
  for (const path of PAGE_ROUTES) app.get(path, (request, reply) => send(request, reply, index));
}

function send(request: FastifyRequest, reply: FastifyReply, file: StaticFile): FastifyReply {
  securityHeaders(reply).header("cache-control", file.cacheControl).header("etag", file.etag).header("vary", "accept-encoding");
  if (request.headers["if-none-match"] === file.etag) return reply.code(304).send();
  reply.header("content-type", file.type);
  if (file.gzip && /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""))) {
    return reply.header("content-encoding", "gzip").send(file.gzip);
  }
  return reply.send(file.body);
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header("content-security-policy", DASHBOARD_CSP)
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .header("x-frame-options", "DENY");
}

/** Every file of the build, by URL path. Vite names what it builds under assets/ by content hash. */
function loadFiles(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(join(dir, "index.html"))) return files;
  for (const path of walk(dir)) {
    const urlPath = "/" + relative(dir, path).split("\\").join("/");
    if (urlPath.endsWith(".map")) continue; // source maps stay on disk
    const body = readFileSync(path);
    const type = TYPES[extname(path)] ?? "application/octet-stream";
    const compressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 1024;
    files.set(urlPath, {
      body,
      gzip: compressible ? gzipSync(body, { level: 9 }) : undefined,
      type,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
      cacheControl: urlPath.startsWith("/assets/") ? IMMUTABLE : REVALIDATE,
    });
  }
  return files;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? walk(path) : [path];
  });
}
