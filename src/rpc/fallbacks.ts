// What a client that took a wrong turn gets instead of Fastify's own error shapes: a Connect
// error (or a gRPC status) saying what is accepted. An unknown procedure names the one that was
// probably meant; a body of a content type no protocol uses lists the ones that are. (`GET /` is
// the web dashboard: src/http/dashboard.ts.)
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

export const ACCEPTED_CONTENT_TYPES =
  "application/json or application/proto (Connect), application/grpc (+proto or +json) or application/grpc-web (+proto or +json)";

/** A procedure path: /package.Service/Method, also under /api. */
const PROCEDURE = /^(?:\/api)?\/([A-Za-z_][\w.]*\.[A-Za-z_]\w*)\/([A-Za-z_]\w*)$/;

/** Registers the not-found and content-type answers for the procedures `procedures` ("gitpod.v1.RunnerService/ListRunners"). */
export function registerRpcFallbacks(app: FastifyInstance, procedures: string[]): void {
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0]!;
    const procedure = PROCEDURE.exec(path);
    if (procedure === null) {
      return send(reply, request, 404, "not_found", `no route ${request.method} ${path}: the API is POST /<package>.<Service>/<Method>, e.g. POST /gitpod.v1.RunnerService/ListRunners (see README.md)`);
    }
    const name = `${procedure[1]}/${procedure[2]}`;
    if (procedures.includes(name)) {
      return send(reply, request, 501, "unimplemented", `${name} takes POST (and GET for side-effect-free methods with ?encoding=&message=), not ${request.method}`);
    }
    const meant = closest(name, procedures);
    return send(reply, request, 501, "unimplemented", `no procedure ${name}${meant ? `; did you mean ${meant}?` : ""}`);
  });

  // Fastify refuses a body whose content type has no parser before Connect sees it.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" || error.code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH") {
      const contentType = request.headers["content-type"];
      const sent = contentType ? `content type ${JSON.stringify(contentType)} is not supported` : "the request has no content type";
      return send(reply, request, 400, "invalid_argument", `${sent}: send ${ACCEPTED_CONTENT_TYPES}`);
    }
    return reply.send(error); // Fastify's default answer
  });
}

/**
 * A Connect error (its HTTP status as Connect maps the code, so Connect clients and the SDK read the
 * same), or for a gRPC request a trailers-only status; with `x-should-retry: false`.
 */
function send(reply: FastifyReply, request: FastifyRequest, status: number, code: string, message: string): FastifyReply {
  reply.header("x-should-retry", "false");
  const contentType = request.headers["content-type"] ?? "";
  if (/^application\/grpc/.test(contentType)) {
    const grpcCode = code === "unimplemented" ? 12 : code === "not_found" ? 5 : 3;
    return reply
      .code(200)
      .header("content-type", contentType.startsWith("application/grpc-web") ? contentType : "application/grpc")
      .header("grpc-status", String(grpcCode))
      .header("grpc-message", encodeURIComponent(message))
      .send();
  }
  return reply.code(status).type("application/json").send({ code, message });
}

/** The known procedure nearest to `name` when it is near enough to be a typo (or the same method in another case). */
function closest(name: string, procedures: string[]): string | undefined {
  let best: { procedure: string; distance: number } | undefined;
  for (const procedure of procedures) {
    const distance = procedure.toLowerCase() === name.toLowerCase() ? 0 : editDistance(name, procedure);
    if (best === undefined || distance < best.distance) best = { procedure, distance };
  }
  if (best === undefined) return undefined;
  const method = name.slice(name.lastIndexOf("/") + 1);
  return best.distance <= Math.max(2, Math.floor(method.length / 3)) ? best.procedure : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
