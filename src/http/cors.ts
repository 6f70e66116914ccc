// CORS for browser clients (Connect-Web, gRPC-Web): off unless origins are configured.
// Registered before the routes so its hooks and preflight handling cover them.
import fastifyCors from "@fastify/cors";
import { cors as connectCors } from "@connectrpc/connect";
import type { FastifyInstance } from "fastify";

export async function registerCors(app: FastifyInstance, allowedOrigins: string[]): Promise<void> {
  if (allowedOrigins.length === 0) return;
  await app.register(fastifyCors, {
    origin: allowedOrigins.includes("*") ? "*" : allowedOrigins,
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "X-Request-Id", "Traceparent"],
    exposedHeaders: [...connectCors.exposedHeaders, "X-Request-Id"],
    maxAge: 7200,
  });
}
