// The OIDC issuer's public documents: discovery (`/.well-known/openid-configuration`) and the
// signing keys (`/.well-known/jwks.json`). No credentials; cacheable (Cache-Control, ETag and
// If-None-Match); any origin may read them. Served at the root and, when PUBLIC_URL has a path,
// under that path too, so a proxy may forward the path with or without its prefix.
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

export interface OidcEndpointsOptions {
  /** PUBLIC_URL; undefined when the server is not an issuer (the documents are then 404). */
  issuer: string | undefined;
  discovery: () => Record<string, unknown> | undefined;
  /** The published public keys (JWKs). */
  jwks: () => Promise<Record<string, unknown>[]>;
  discoveryMaxAgeSeconds: number;
  jwksMaxAgeSeconds: number;
  onError: (err: unknown) => void;
}

export function registerOidcEndpoints(app: FastifyInstance, options: OidcEndpointsOptions): void {
  const prefixes = new Set(["", options.issuer === undefined ? "" : new URL(options.issuer).pathname.replace(/\/+$/, "")]);
  const notIssuer = (reply: FastifyReply) =>
    reply.code(404).header("cache-control", "no-store").send({ error: "not_found", message: "this server is not an OIDC issuer: PUBLIC_URL is not set" });

  for (const prefix of prefixes) {
    app.get(`${prefix}/.well-known/openid-configuration`, async (request, reply) => {
      const document = options.discovery();
      if (document === undefined) return notIssuer(reply);
      return sendCacheable(request, reply, JSON.stringify(document), options.discoveryMaxAgeSeconds);
    });
    app.get(`${prefix}/.well-known/jwks.json`, async (request, reply) => {
      if (options.issuer === undefined) return notIssuer(reply);
      let keys: Record<string, unknown>[];
      try {
        keys = await options.jwks();
      } catch (err) {
        options.onError(err);
        return reply.code(503).header("cache-control", "no-store").header("retry-after", "5").send({ error: "unavailable", message: "the signing keys cannot be read right now" });
      }
      return sendCacheable(request, reply, JSON.stringify({ keys }), options.jwksMaxAgeSeconds);
    });
  }
}

function sendCacheable(request: FastifyRequest, reply: FastifyReply, body: string, maxAgeSeconds: number) {
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
  reply
    .header("cache-control", `public, max-age=${maxAgeSeconds}`)
    .header("etag", etag)
    .header("access-control-allow-origin", "*")
    .header("content-type", "application/json; charset=utf-8");
  const ifNoneMatch = request.headers["if-none-match"];
  if (ifNoneMatch !== undefined && ifNoneMatch.split(",").some((tag) => tag.trim() === etag || tag.trim() === "*")) {
    return reply.code(304).send();
  }
  return reply.send(body);
}
