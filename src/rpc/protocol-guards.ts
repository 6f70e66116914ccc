// Client mistakes that @connectrpc/connect (2.x) answers as if they were the server's, or
// handles expensively, corrected around the router's handlers (they happen while decoding,
// before any interceptor runs, so interceptors cannot correct them):
// - A request message that is not valid protobuf (truncated, illegal tag, invalid UTF-8 in a
//   string, nesting deeper than protobuf-es allows) is answered `internal` with the message
//   "parse binary: …". Such answers are rewritten to `invalid_argument` ("cannot decode the
//   request message: …") wherever the status travels: the JSON error body (Connect), the
//   trailers (gRPC), the trailer frame (gRPC-Web).
// - A Connect GET with `base64=1` and a `message` that is not base64 (also one of the right
//   alphabet that does not decode, such as "Y") is a bare `internal error`; a missing or unknown
//   `encoding` is a plain HTTP 415. Every malformed query parameter (`message`, `base64`,
//   `encoding`, `compression`, or one of them given twice) is answered `invalid_argument`
//   naming it, before the handler runs (see `malformedGetQuery`). A well-formed compression
//   the server does not support stays Connect's `unimplemented`, as the protocol prescribes.
// - A deadline (Connect-Timeout-Ms, grpc-timeout) longer than a 32-bit timer is refused like
//   any deadline above MAX_TIMEOUT_MS, but the library still arms a timer with it first, which
//   Node clamps to 1 ms with a TimeoutOverflowWarning on stderr for every such call (a cheap
//   way to flood the log). Those are answered `invalid_argument` before the handler runs.
// - A gRPC frame flagged compressed without a grpc-encoding is `internal` too ("received
//   compressed envelope, but do not know how to decompress"): rewritten to `invalid_argument`.
// - A JSON syntax error's message quotes a slice of the input, which can split a surrogate pair;
//   over gRPC/gRPC-Web (+json) the library then fails to percent-encode grpc-message, never
//   finishes the answer, and the whole HTTP/2 connection is torn down with every call on it.
//   `jsonTextDecoder` (the router's jsonOptions.textDecoder) reports such errors well formed.
//   As a last resort, a gRPC/gRPC-Web answer whose body fails still ends with a status.
// Found by test/fuzz.test.ts, which also guards this against library upgrades.
import { createAsyncIterable, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { DescMessage } from "@bufbuild/protobuf";
import { answerAfterBody } from "./unread-body.js";
import { unknownEnumNameChecker } from "../protobuf/enum-names.js";
import { ACCEPTED_CONTENT_TYPES } from "./fallbacks.js";

const PARSE_BINARY = "parse binary: ";
const COMPRESSED_WITHOUT_ENCODING = "received compressed envelope, but do not know how to decompress";
const CLIENT_MESSAGE = "cannot decode the request message: ";
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Wraps a routes function so that every handler it registers gets the guards above (and reads a refused body to its end, src/rpc/unread-body.ts). */
export function withProtocolGuards(
  routes: (router: ConnectRouter) => void,
  options: { maxTimeoutMs: number },
): (router: ConnectRouter) => void {
  return (router) => {
    const before = router.handlers.length;
    routes(router);
    for (let i = before; i < router.handlers.length; i++) router.handlers[i] = answerAfterBody(wrap(router.handlers[i]!, options.maxTimeoutMs));
  };
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const grpcTimeoutUnits: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

function wrap(handler: UniversalHandler, maxTimeoutMs: number): UniversalHandler {
  const wrapped = async (request: UniversalServerRequest): Promise<UniversalServerResponse> => {
    if (request.method === "GET" && handler.allowedMethods.includes("GET")) {
      const problem = malformedGetQuery(new URL(request.url, "http://localhost").searchParams);
      if (problem !== undefined) return connectError(400, "invalid_argument", problem);
    }
    const tooLong = overflowingTimeout(request.header);
    if (tooLong !== undefined) {
      const message = `timeout ${tooLong}ms must be <= ${maxTimeoutMs}`;
      const contentType = request.header.get("content-type") ?? "";
      if (!contentType.startsWith("application/grpc")) return connectError(400, "invalid_argument", message);
      // gRPC and gRPC-Web: a trailers-only answer.
      return {
        status: 200,
        header: new Headers({ "content-type": contentType, "grpc-status": "3", "grpc-message": encodeURIComponent(message) }),
      };
    }
    const response = await handler(request);
    // A content type no protocol uses: Connect's answer is a bare 415 without a word of what to send;
    // ours is a Connect error (HTTP 400, as Connect maps invalid_argument).
    if (response.status === 415 && !response.header?.get("content-type")) {
      const sent = request.header.get("content-type");
      return connectError(400, "invalid_argument", `${sent ? `content type ${JSON.stringify(sent)} is not supported` : "the request has no content type"}: send ${ACCEPTED_CONTENT_TYPES}`);
    }
    return rewrite(response);
  };
  // The handler's descriptive properties (requestPath, method, service, protocolNames, ...).
  return Object.assign(wrapped, handler);
}

const GET_PARAMETERS = ["connect", "encoding", "message", "base64", "compression"];
/** An HTTP token (RFC 9110), what a content coding name is. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** What is wrong with a Connect GET's query parameters, or undefined when they are well formed. */
function malformedGetQuery(query: URLSearchParams): string | undefined {
  const quoted = (value: string) => JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  for (const name of GET_PARAMETERS) {
    const count = query.getAll(name).length;
    if (count > 1) return `the ${name} query parameter must be given once, got it ${count} times`;
  }
  const encoding = query.get("encoding");
  if (encoding === null) return 'the encoding query parameter is required ("json" or "proto")';
  if (encoding !== "json" && encoding !== "proto") return `the encoding query parameter must be "json" or "proto", got ${quoted(encoding)}`;
  const base64 = query.get("base64");
  if (base64 !== null && base64 !== "" && base64 !== "0" && base64 !== "1") {
    return `the base64 query parameter must be 1 (the message is base64) or absent, got ${quoted(base64)}`;
  }
  if (base64 === "1" && !isBase64(query.get("message") ?? "")) return `${CLIENT_MESSAGE}the message query parameter is not base64`;
  const compression = query.get("compression");
  if (compression !== null && !TOKEN.test(compression)) {
    return `the compression query parameter must name an encoding such as gzip, got ${quoted(compression)}`;
  }
  return undefined;
}

/** Whether Connect's base64 decoding accepts `text` (standard or URL alphabet, padding optional). */
function isBase64(text: string): boolean {
  if (!BASE64.test(text)) return false;
  try {
    base64Decode(text);
    return true;
  } catch {
    return false; // e.g. a single character: not a whole byte
  }
}

/** The deadline asked for, in ms, when it is too long for a timer (undefined otherwise, also when malformed). */
function overflowingTimeout(header: Headers): number | undefined {
  const connect = header.get("connect-timeout-ms");
  if (connect !== null && /^\d{1,10}$/.test(connect) && Number(connect) > MAX_TIMER_MS) return Number(connect);
  const grpc = /^(\d{1,8})([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  if (grpc && Number(grpc[1]) * grpcTimeoutUnits[grpc[2]!]! > MAX_TIMER_MS) return Number(grpc[1]) * grpcTimeoutUnits[grpc[2]!]!;
  return undefined;
}

function connectError(status: number, code: string, message: string): UniversalServerResponse {
  const body = new TextEncoder().encode(JSON.stringify({ code, message }));
  return {
    status,
    header: new Headers({ "content-type": "application/json", "content-length": String(body.byteLength), "x-should-retry": "false" }),
    body: createAsyncIterable([body]),
  };
}

async function rewrite(response: UniversalServerResponse): Promise<UniversalServerResponse> {
  const contentType = response.header?.get("content-type") ?? "";
  // Connect unary error: the whole (small) JSON body is already there.
  if (response.status === 500 && contentType.startsWith("application/json") && response.body) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of response.body) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    try {
      const encoding = response.header?.get("content-encoding");
      const json = encoding === "gzip" ? gunzipSync(bytes) : encoding === "br" ? brotliDecompressSync(bytes) : bytes;
      const error = JSON.parse(json.toString("utf8")) as { code?: unknown; message?: unknown };
      const message = error.code === "internal" && typeof error.message === "string" ? clientMessageFor(error.message) : undefined;
      if (message !== undefined) {
        const fixed = connectError(400, "invalid_argument", message);
        response.header?.forEach((value, key) => {
          if (key !== "content-length" && key !== "content-encoding") fixed.header!.set(key, value);
        });
        return fixed;
      }
    } catch {
      // not a Connect error body: pass it on unchanged
    }
    return { ...response, body: createAsyncIterable([bytes]) };
  }
  // gRPC: the status is in the trailers, final once the body has been read.
  if (contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web") && response.trailer) {
    const trailer = response.trailer;
    fixGrpcStatus(trailer);
    const body = response.body;
    return body ? { ...response, body: grpcBody(body, trailer) } : response;
  }
  // gRPC-Web: the status is in the trailer frame at the end of the body.
  if (contentType.startsWith("application/grpc-web") && response.body) {
    return { ...response, body: grpcWebBody(response.body, response.header?.get("grpc-encoding") ?? null) };
  }
  return response;
}

/** The client-facing message for an `internal` one that is really the client's fault, else undefined. */
export function clientMessageFor(internalMessage: string): string | undefined {
  if (internalMessage.startsWith(PARSE_BINARY)) return CLIENT_MESSAGE + internalMessage.slice(PARSE_BINARY.length);
  if (internalMessage === COMPRESSED_WITHOUT_ENCODING) return `${internalMessage} (no grpc-encoding header)`;
  // Only request bodies are decompressed, so this is always the client's data.
  if (internalMessage === "decompression failed") return "the request body could not be decompressed";
  return undefined;
}

function fixGrpcStatus(headers: Headers): void {
  if (headers.get("grpc-status") !== "13") return;
  const message = clientMessageFor(decode(headers.get("grpc-message") ?? ""));
  if (message === undefined) return;
  headers.set("grpc-status", "3");
  headers.set("grpc-message", encodeURIComponent(message));
}

/** A gRPC-Web trailer frame (flag 0x80, uncompressed) carrying such a status, rewritten. */
function fixTrailerFrame(chunk: Uint8Array, encoding: string | null): Uint8Array {
  // 0x80: trailer frame; 0x81: compressed with the response's grpc-encoding (only when large).
  if (chunk.byteLength < 5 || (chunk[0] !== 0x80 && chunk[0] !== 0x81)) return chunk;
  const length = new DataView(chunk.buffer, chunk.byteOffset, 5).getUint32(1);
  if (length !== chunk.byteLength - 5) return chunk;
  let payload: Uint8Array = chunk.subarray(5);
  if (chunk[0] === 0x81) {
    try {
      payload = encoding === "gzip" ? gunzipSync(payload) : encoding === "br" ? brotliDecompressSync(payload) : payload;
    } catch {
      return chunk;
    }
    if (payload === chunk.subarray(5)) return chunk;
  }
  const headers = new Headers();
  for (const line of Buffer.from(payload).toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (headers.get("grpc-status") !== "13") return chunk;
  fixGrpcStatus(headers);
  if (headers.get("grpc-status") === "13") return chunk;
  let text = "";
  headers.forEach((value, key) => (text += `${key}: ${value}\r\n`));
  return trailerFrame(text);
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

async function* grpcBody(body: AsyncIterable<Uint8Array>, trailer: Headers): AsyncIterable<Uint8Array> {
  try {
    yield* body;
  } catch {
    // The library failed while finishing the answer: still end the call with a status.
    if (trailer.get("grpc-status") === null || trailer.get("grpc-status") === "0") trailer.set("grpc-status", "13");
    if (!isPercentEncoded(trailer.get("grpc-message"))) trailer.set("grpc-message", "internal%20error");
  }
  fixGrpcStatus(trailer);
}

async function* grpcWebBody(body: AsyncIterable<Uint8Array>, encoding: string | null): AsyncIterable<Uint8Array> {
  let trailerSent = false;
  try {
    for await (const chunk of body) {
      const fixed = fixTrailerFrame(chunk, encoding);
      if (fixed.byteLength > 0 && fixed[0]! & 0x80) trailerSent = true;
      yield fixed;
    }
  } catch {
    if (!trailerSent) yield trailerFrame("grpc-status: 13\r\ngrpc-message: internal%20error\r\n");
  }
}

function isPercentEncoded(value: string | null): boolean {
  return value !== null && /^[\x21-\x7e ]*$/.test(value);
}

function trailerFrame(text: string): Uint8Array {
  const payload = Buffer.from(text, "utf8");
  const out = Buffer.alloc(5 + payload.length);
  out[0] = 0x80;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

const SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const utf8 = new TextDecoder();

/** The router's jsonOptions plus `jsonTextDecoder` (Connect passes jsonOptions on to its JSON codec, which reads it). */
export function withSafeJsonDecoding<T extends object>(jsonOptions: T): T {
  return { ...jsonOptions, textDecoder: jsonTextDecoder };
}

/**
 * The jsonOptions for requests of one message type: as `jsonOptions`, and a JSON text with an enum
 * name the field does not have is `invalid_argument` naming the field and the allowed names
 * (src/protobuf/enum-names.ts) instead of being read as "unset".
 */
export function withKnownEnumNames<T extends object>(jsonOptions: T, input: DescMessage): T {
  const check = unknownEnumNameChecker(input);
  if (check === undefined) return jsonOptions;
  const decoder = (jsonOptions as { textDecoder?: { decode(input?: Uint8Array): string } }).textDecoder ?? jsonTextDecoder;
  return {
    ...jsonOptions,
    textDecoder: {
      decode(bytes?: Uint8Array): string {
        const text = decoder.decode(bytes);
        const problem = check(text);
        if (problem !== undefined) throw new ConnectError(problem.message, Code.InvalidArgument, { "x-should-retry": "false" });
        return text;
      },
    },
  };
}

/**
 * jsonOptions.textDecoder for the Connect router: decodes like the default, and when the text
 * holds characters outside the BMP (the only way a JSON syntax error's message can end up with
 * half a surrogate pair) reports a syntax error itself, with a well-formed message.
 */
export const jsonTextDecoder = {
  decode(input?: Uint8Array): string {
    const text = utf8.decode(input);
    if (SURROGATE.test(text)) {
      try {
        JSON.parse(text);
      } catch (err) {
        const reason = (err instanceof Error ? err.message : String(err)).replace(LONE_SURROGATE, "\uFFFD");
        throw new ConnectError(`${CLIENT_MESSAGE}${reason}`, Code.InvalidArgument);
      }
    }
    return text;
  },
};
