// EventService.WatchEvents as the official SDKs call it (docs/reference/gitpod-v1-events.md
// section 9): POST with `Accept: application/jsonl` (or `Content-Type: application/jsonl`), a plain
// JSON body (possibly empty), and one JSON object per line back, never an envelope or a blank
// line. Headers are flushed at once (the SDK's timeout runs until they arrive). Errors before the
// stream starts are an HTTP status with Connect's error JSON; a stream that must end with an
// error (the server lost its change notifications, a watcher too slow) is cut off, which the SDK
// reports as an error; a clean end (server shutdown) ends the SDK's loop normally.
import type { IncomingMessage, ServerResponse } from "node:http";
import { fromJson, toJsonString } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString, errorToJson } from "@connectrpc/connect/protocol-connect";
import type { onRequestHookHandler } from "fastify";
import { WatchEventsRequestSchema, WatchEventsResponseSchema, type WatchEventsRequest } from "../../gen/gitpod/v1/event_pb.js";
import type { Authenticator, UserCaller } from "../domain/auth.js";
import { permissionDenied } from "../domain/errors.js";
import type { EventHub } from "../domain/events.js";
import { watchEvents } from "./services/event-service.js";
import { isConnectionError } from "../store/db/database.js";

const PROCEDURE = "gitpod.v1.EventService/WatchEvents";
const PATHS = new Set(["/gitpod.v1.EventService/WatchEvents", "/api/gitpod.v1.EventService/WatchEvents"]);

export interface JsonlWatchOptions {
  hub: EventHub;
  authenticator: Authenticator;
  shutdown: AbortSignal;
  readMaxBytes: number;
}

/** True when the request asks for the JSON Lines framing. */
export function wantsJsonl(headers: IncomingMessage["headers"]): boolean {
  return /application\/jsonl/i.test(headers.accept ?? "") || /^application\/jsonl/i.test(headers["content-type"] ?? "");
}

export function jsonlWatch(options: JsonlWatchOptions): onRequestHookHandler {
  const validator = createValidator();
  return function jsonlWatchHook(request, reply, done) {
    if (request.method !== "POST" || !PATHS.has(request.url.split("?")[0]!) || !wantsJsonl(request.headers)) {
      done();
      return;
    }
    reply.hijack();
    const raw = request.raw as IncomingMessage;
    const res = reply.raw as ServerResponse;
    res.setHeader("x-request-id", request.id);
    // Unexpected errors are logged once, with the request id, and answered without internals.
    const publicError = (err: unknown): ConnectError => {
      if (err instanceof ConnectError) return err;
      if (isConnectionError(err)) return new ConnectError("the database is unavailable, retry later", Code.Unavailable);
      request.log.error({ err, procedure: PROCEDURE }, "rpc failed unexpectedly");
      return new ConnectError("internal error", Code.Internal);
    };
    const fail = (err: ConnectError) => {
      if (res.headersSent) return void res.destroy();
      const body = JSON.stringify(errorToJson(err, undefined));
      res.writeHead(codeToHttpStatus(err.code), { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      request.log.info({ procedure: PROCEDURE, protocol: "application/jsonl", code: codeToString(err.code), message: err.rawMessage }, "rpc");
    };
    void (async () => {
      let user: UserCaller;
      let message: WatchEventsRequest;
      try {
        const caller = await options.authenticator.authenticate(raw.headers.authorization ?? null);
        if (caller.kind !== "user") throw permissionDenied("runner access tokens cannot call this method; use a user API key");
        user = caller;
        message = parse(await readBody(raw, options.readMaxBytes));
        const result = validator.validate(WatchEventsRequestSchema, message);
        if (result.kind !== "valid") throw new ConnectError(result.error?.message ?? "invalid request", Code.InvalidArgument);
      } catch (err) {
        return fail(publicError(err));
      }
      const gone = new AbortController();
      res.on("close", () => gone.abort());
      let stream;
      try {
        stream = watchEvents(options.hub, user, message, gone.signal, options.shutdown, true);
      } catch (err) {
        return fail(publicError(err));
      }
      res.writeHead(200, { "content-type": "application/jsonl", "cache-control": "no-store" });
      res.flushHeaders();
      try {
        for await (const event of stream) {
          if (!res.write(`${toJsonString(WatchEventsResponseSchema, event)}\n`)) await new Promise((resolve) => res.once("drain", resolve));
        }
        res.end();
        request.log.info({ procedure: PROCEDURE, protocol: "application/jsonl", code: gone.signal.aborted && !options.shutdown.aborted ? "canceled" : "ok" }, "rpc");
      } catch (err) {
        const code = err instanceof ConnectError ? codeToString(err.code) : "internal";
        request.log.info({ procedure: PROCEDURE, protocol: "application/jsonl", code, message: (err as Error).message }, "rpc (stream cut off)");
        res.destroy();
      }
    })();
  };
}

function parse(body: string): WatchEventsRequest {
  let json: unknown = {};
  if (body.trim() !== "") {
    try {
      json = JSON.parse(body);
    } catch {
      throw new ConnectError("the request body is not JSON", Code.InvalidArgument);
    }
  }
  try {
    return fromJson(WatchEventsRequestSchema, json as never, { ignoreUnknownFields: true });
  } catch (err) {
    throw new ConnectError(`the request is not a WatchEventsRequest: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

function readBody(raw: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    raw.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new ConnectError(`the request body is larger than ${limit} bytes`, Code.ResourceExhausted));
        raw.destroy();
      } else chunks.push(chunk);
    });
    raw.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    raw.on("error", reject);
  });
}
