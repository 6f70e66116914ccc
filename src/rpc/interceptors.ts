// Cross-cutting behaviour of every RPC, outermost first: observe (log + hide internals),
// authenticate, fold SDK query parameters into list requests, validate.
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import type { FastifyBaseLogger } from "fastify";
import { isConnectionError } from "../store/db/database.js";
import { atStreamEnd } from "../ops/stream-end.js";
import { clientMessageFor } from "./protocol-guards.js";
import { type Authenticator, callerKey } from "../domain/auth.js";
import { IdentityService, Principal } from "../../gen/gitpod/v1/identity_pb.js";
import { auditScope } from "../store/db/audit-context.js";
import { clientAddressKey } from "../ops/rate-limit.js";
import { PaginationRequestSchema, type PaginationRequest } from "../../gen/gitpod/v1/pagination_pb.js";
import { create } from "@bufbuild/protobuf";

export const requestIdKey = createContextKey<string>("", { description: "request id" });
export const loggerKey = createContextKey<FastifyBaseLogger | undefined>(undefined, { description: "request logger" });

/** One log line per RPC; unexpected errors are logged once and answered without internals. */
export function observeInterceptor(): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const log = req.contextValues.get(loggerKey);
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const failed = (err: unknown): ConnectError => {
      let error = toPublicError(err);
      // The official (Stainless) SDKs retry 409 and 5xx answers unless told not to (finding: a
      // retried `unimplemented` costs seconds and can never succeed).
      if (NOT_RETRYABLE.has(error.code)) error.metadata.set("x-should-retry", "false");
      if (error.code === Code.InvalidArgument && isJsonRequest(req)) error = inJsonNames(error);
      const fields = {
        procedure,
        protocol: req.header.get("content-type"),
        code: wireCode(error.code),
        ms: elapsed(started),
        message: error.rawMessage,
      };
      if (error.code === Code.Internal) log?.error({ ...fields, err }, "rpc failed unexpectedly");
      else if (error.code === Code.Unavailable) log?.warn({ ...fields, cause: (err as Error).message }, "rpc");
      else log?.info(fields, "rpc");
      return error;
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw failed(err);
    }
    if (!res.stream) {
      log?.info({ procedure, protocol: req.header.get("content-type"), code: "ok", ms: elapsed(started) }, "rpc");
      return res;
    }
    // A stream's line is written when it ends (a client that went away ends it canceled).
    return atStreamEnd(res, (end) => {
      if (end.kind === "failed") return failed(end.error);
      const code = end.kind === "completed" ? "ok" : "canceled";
      log?.info({ procedure, protocol: req.header.get("content-type"), code, ms: elapsed(started) }, "rpc");
      return undefined;
    });
  };
}

/** Connect JSON, gRPC(-Web) with +json, or a Connect GET with encoding=json. */
function isJsonRequest(req: { header: Headers; url: string }): boolean {
  return /^application\/(?:json|[a-z-]+\+json)/.test(req.header.get("content-type") ?? "") || /[?&]encoding=json(?:&|$)/.test(req.url);
}

// "spec.desired_phase: value is required [required]": the field path before the first ": ".
const FIELD_PATH = /^[a-z][a-z0-9_]*(?:\[[^\]]*\])*(?:\.[a-z][a-z0-9_]*(?:\[[^\]]*\])*)*(?=: )/;

/**
 * The same error with the field path of its message in the JSON names the client sent
 * (`spec.desiredPhase` for `spec.desired_phase`: protobuf's lowerCamelCase JSON names). The
 * buf.validate.Violations detail keeps the protobuf names, as protovalidate defines it.
 */
function inJsonNames(error: ConnectError): ConnectError {
  const path = FIELD_PATH.exec(error.rawMessage)?.[0];
  if (path === undefined || !path.includes("_")) return error;
  const jsonPath = path.replace(/(?<!\[[^\]]*)_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
  const renamed = new ConnectError(jsonPath + error.rawMessage.slice(path.length), error.code, error.metadata, undefined, error.cause);
  renamed.details = error.details;
  return renamed;
}

/** Codes whose calls fail the same way when sent again unchanged. */
const NOT_RETRYABLE = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
]);

/** The code as clients see it on the wire ("invalid_argument"), so logs and errors match. */
function wireCode(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (letter, index: number) => (index ? "_" : "") + letter.toLowerCase());
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}

function toPublicError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    // A streaming request is decoded inside the call (a unary one before it: protocol-guards.ts).
    const clientMessage = err.code === Code.Internal ? clientMessageFor(err.rawMessage) : undefined;
    return clientMessage === undefined ? err : new ConnectError(clientMessage, Code.InvalidArgument);
  }
  if (isConnectionError(err)) return new ConnectError("the database is unavailable, retry later", Code.Unavailable);
  return new ConnectError("internal error", Code.Internal);
}

// Methods that authenticate by their request body rather than the Authorization header.
const publicMethods = new Set([`${IdentityService.typeName}/${IdentityService.method.exchangeToken.name}`]);

export function authInterceptor(authenticator: Authenticator): Interceptor {
  return (next) => async (req) => {
    if (!publicMethods.has(`${req.service.typeName}/${req.method.name}`)) {
      req.contextValues.set(callerKey, await authenticator.authenticate(req.header.get("authorization")));
    }
    return next(req);
  };
}

/**
 * The official (Stainless) SDKs send list paging as query parameters on the POST
 * (`?token=…&pageSize=…`). Fold them into `pagination` when the body leaves them unset.
 */
export function paginationQueryInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (req.stream || !req.url.includes("?")) return next(req);
    const message = req.message as { pagination?: PaginationRequest };
    if (!req.method.input.fields.some((field) => field.localName === "pagination")) return next(req);
    const query = new URL(req.url).searchParams;
    const token = query.get("token");
    const pageSize = query.get("pageSize") ?? query.get("page_size");
    if (token === null && pageSize === null) return next(req);
    const pagination = (message.pagination ??= create(PaginationRequestSchema));
    // The SDK re-sends the first page's body with each next page's ?token=: the query wins.
    if (token !== null) pagination.token = token;
    if (pageSize !== null && pagination.pageSize === 0) {
      if (!/^\d{1,9}$/.test(pageSize)) {
        throw new ConnectError("pagination.page_size: query parameter pageSize must be a whole number", Code.InvalidArgument);
      }
      pagination.pageSize = Number(pageSize);
    }
    return next(req);
  };
}

/**
 * Runs each call in its audit scope (src/store/db/audit-context.ts): who calls, the RPC, the
 * request id, the call's start on the server's clock, and the client address when enabled.
 * Statements that change something record it in the audit log in their own transaction.
 */
export function auditInterceptor(options: { now: () => Date; clientAddress: boolean }): Interceptor {
  return (next) => (req) =>
    auditScope((setActor) => {
      const caller = req.contextValues.get(callerKey);
      if (caller) {
        setActor({
          action: req.method.name,
          actorId: caller.kind === "user" ? caller.userId : caller.runnerId,
          principal: caller.kind === "user" ? Principal.USER : Principal.RUNNER,
          requestId: req.contextValues.get(requestIdKey),
          clientAddress: options.clientAddress ? req.contextValues.get(clientAddressKey) : undefined,
          at: options.now(),
        });
      }
      return next(req);
    });
}

export function validateInterceptor(): Interceptor {
  return createValidateInterceptor();
}
