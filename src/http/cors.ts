// CORS for browser clients (Connect-Web, gRPC-Web): off unless origins are configured.
// Registered before the routes so its hooks and preflight handling cover them.
import fastifyCors from "@fastify/cors";
import { cors as connectCors } from "@connectrpc/connect";
import type { FastifyInstance } from "fastify";

/**
 * What the official (Stainless) SDK sends on every call (node_modules/@gitpod/sdk: client.js
 * buildHeaders, internal/detect-platform.js); a preflight that does not allow them all fails.
 */
export const SDK_REQUEST_HEADERS = [
  "X-Stainless-Lang",
  "X-Stainless-Package-Version",
  "X-Stainless-OS",
  "X-Stainless-Arch",
  "X-Stainless-Runtime",
  "X-Stainless-Runtime-Version",
  "X-Stainless-Retry-Count",
  "X-Stainless-Timeout",
  "User-Agent",
];

export async function registerCors(app: FastifyInstance, allowedOrigins: string[]): Promise<void> {
  if (allowedOrigins.length === 0) return;
  await app.register(fastifyCors, {
    origin: allowedOrigins.includes("*") ? "*" : allowedOrigins,
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "X-Request-Id", "Traceparent", ...SDK_REQUEST_HEADERS],
    // x-should-retry: the SDK reads it to skip retries that cannot succeed (src/rpc/interceptors.ts).
    exposedHeaders: [...connectCors.exposedHeaders, "X-Request-Id", "X-Should-Retry"],
    maxAge: 7200,
  });
}
