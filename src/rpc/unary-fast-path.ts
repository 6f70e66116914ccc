// A short path for the common shape of a call: a unary Connect POST (JSON or binary) or a unary
// gRPC call over HTTP/2, with an uncompressed request and no deadline header. Connect's universal
// handler turns every call into web-standard objects (Headers, AbortSignals linked to deadline and
// shutdown timers, async iterables for both bodies, envelope pipelines of async generators) and
// back; with protobuf-es reflection for JSON, that was most of the server's CPU per call
// (bench/README.md). This path runs the same interceptors and handlers, parses with Connect's own
// serialization, writes errors with Connect's own encoders (gRPC trailers included) and negotiates
// response compression as Connect does; it creates the web objects only when something reads
// them, and writes answers through the compiled encoders (src/protobuf/json-encoder.ts,
// src/protobuf/binary-encoder.ts).
//
// Anything unusual is Connect's: other protocols (gRPC-Web, Connect GET, streaming), compressed
// requests, deadlines, other content types and declared lengths over the limit never come here;
// a body that turns out too large, malformed or undecodable is handed with the bytes already read
// to Connect's own handler for the method, so that every error is exactly Connect's.
// test/fast-path.test.ts compares the two answer by answer; the rest of the suite runs over it.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethodUnary, DescService, JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  compressionNegotiate,
  createAsyncIterable,
  createMethodSerializationLookup,
  type Compression,
  type Serialization,
  type UniversalHandler,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { grpcStatusOk, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { createMessage } from "../protobuf/create-message.js";
import { encodeBinary } from "../protobuf/binary-encoder.js";
import { encodeJson } from "../protobuf/json-encoder.js";
import { withKnownEnumNames } from "./protocol-guards.js";

/** A service and its implementation, as given to `router.service()`. */
export interface ServiceRoute {
  service: DescService;
  impl: object;
}

export function serviceRoute<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): ServiceRoute {
  return { service, impl };
}

export type FastPathProtocol = "connect_json" | "connect_proto" | "grpc";

export interface FastPathOptions {
  services: ServiceRoute[];
  /** Path prefixes the services are mounted at besides the root (e.g. "/api"). */
  prefixes: string[];
  interceptors: Interceptor[];
  jsonOptions: Partial<JsonReadOptions & JsonWriteOptions>;
  readMaxBytes: number;
  contextValues: (request: FastifyRequest) => ContextValues;
  /** Connect's own handlers (by request path without prefix), for what this path hands back. */
  connectHandlers: UniversalHandler[];
  /** Called for each call the short path takes (a metric). */
  onServed?: (protocol: FastPathProtocol) => void;
}

// What connect-fastify gives Connect by default, and Connect's default threshold.
const acceptCompression: Compression[] = [compressionGzip, compressionBrotli];
const COMPRESS_MIN_BYTES = 1024;
const CONNECT_CONTENT_TYPES = new Map<string, boolean>([
  ["application/json", false],
  ["application/json; charset=utf-8", false],
  ["application/json;charset=utf-8", false],
  ["application/proto", true],
]);
const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const ENVELOPE_HEADER_BYTES = 5;

interface FastMethod {
  service: DescService;
  method: DescMethodUnary;
  /** The interceptor chain around the implementation, composed once. */
  call: (request: UnaryRequest) => Promise<UnaryResponse>;
  json: Serialization<object>;
  binary: Serialization<object>;
  connect: UniversalHandler;
}

/** An onRequest hook that answers eligible calls itself and passes every other request on. */
export function unaryFastPath(options: FastPathOptions): onRequestHookHandler {
  const connectHandlers = new Map(options.connectHandlers.map((handler) => [handler.requestPath, handler]));
  const methods = new Map<string, FastMethod>();
  for (const { service, impl } of options.services) {
    for (const described of service.methods) {
      if (described.methodKind !== "unary") continue;
      const method = described as DescMethodUnary;
      const implementation = (impl as Record<string, unknown>)[method.localName];
      const path = `/${service.typeName}/${method.name}`;
      const connect = connectHandlers.get(path);
      if (typeof implementation !== "function" || connect === undefined) continue; // Connect answers unimplemented
      const serialization = createMethodSerializationLookup(method, undefined, withKnownEnumNames(options.jsonOptions, method.input), {
        readMaxBytes: options.readMaxBytes,
        writeMaxBytes: 0xffffffff, // Connect's default
      });
      const entry: FastMethod = {
        service,
        method,
        call: compose(method, implementation.bind(impl) as UnaryImplementation, options.interceptors),
        json: serialization.getI(false) as Serialization<object>,
        binary: serialization.getI(true) as Serialization<object>,
        connect,
      };
      for (const prefix of ["", ...options.prefixes]) methods.set(prefix + path, entry);
    }
  }

  return function unaryFastPathHook(request, reply, done) {
    const entry = methods.get(request.routeOptions.url ?? "");
    const protocol = entry && protocolOf(request, options.readMaxBytes);
    if (entry === undefined || protocol === undefined) {
      done();
      return;
    }
    options.onServed?.(protocol);
    serve(entry, protocol, request, reply, options).catch((err: unknown) => {
      // Only a failure to write the answer gets here (the client is gone).
      request.log.warn({ err }, "could not write the response");
    });
  };
}

function protocolOf(request: FastifyRequest, readMaxBytes: number): FastPathProtocol | undefined {
  if (request.method !== "POST") return undefined;
  const headers = request.headers;
  const contentType = headers["content-type"];
  if (contentType === undefined) return undefined;
  const length = headers["content-length"];
  let protocol: FastPathProtocol;
  const binary = CONNECT_CONTENT_TYPES.get(contentType);
  if (binary !== undefined) {
    if (headers["content-encoding"] !== undefined || headers["connect-timeout-ms"] !== undefined) return undefined;
    protocol = binary ? "connect_proto" : "connect_json";
  } else if (GRPC_CONTENT_TYPES.has(contentType) && request.raw.httpVersionMajor === 2) {
    const encoding = headers["grpc-encoding"];
    if ((encoding !== undefined && encoding !== "identity") || headers["grpc-timeout"] !== undefined) return undefined;
    protocol = "grpc";
  } else {
    return undefined;
  }
  // A body declared too large gets Connect's own handling and error.
  return length === undefined || (/^\d{1,10}$/.test(length) && Number(length) <= bodyLimit(protocol, readMaxBytes)) ? protocol : undefined;
}

/** Most bytes a request body may have: one message, plus its envelope header for gRPC. */
function bodyLimit(protocol: FastPathProtocol, readMaxBytes: number): number {
  return protocol === "grpc" ? readMaxBytes + ENVELOPE_HEADER_BYTES : readMaxBytes;
}

type UnaryImplementation = (message: object, context: HandlerContext) => unknown;

function compose(method: DescMethodUnary, implementation: UnaryImplementation, interceptors: Interceptor[]) {
  const invoke = async (request: UnaryRequest): Promise<UnaryResponse> => {
    const context = handlerContext(request);
    // Handlers may return a message init; make it a message, as Connect's normalize() does.
    const output = createMessage(method.output, (await implementation(request.message, context)) as never);
    return {
      stream: false,
      service: request.service,
      method,
      message: output as never,
      // The handler's response headers, made when someone reads them.
      get header() {
        return context.responseHeader;
      },
      get trailer() {
        return context.responseTrailer;
      },
    };
  };
  // Outermost first, as in Connect's applyInterceptors.
  return interceptors.reduceRight<(request: UnaryRequest) => Promise<UnaryResponse>>((next, interceptor) => interceptor(next as never) as never, invoke);
}

function handlerContext(request: UnaryRequest): HandlerContext {
  let responseHeader: Headers | undefined;
  let responseTrailer: Headers | undefined;
  return {
    method: request.method,
    service: request.service,
    requestMethod: request.requestMethod,
    protocolName: (request as FastRequest).protocolName,
    url: request.url,
    timeoutMs: () => undefined,
    values: request.contextValues,
    get signal() {
      return request.signal;
    },
    get requestHeader() {
      return request.header;
    },
    get responseHeader() {
      return (responseHeader ??= new Headers());
    },
    get responseTrailer() {
      return (responseTrailer ??= new Headers());
    },
  };
}

type RawRequest = IncomingMessage | Http2ServerRequest;

async function serve(entry: FastMethod, protocol: FastPathProtocol, request: FastifyRequest, reply: FastifyReply, options: FastPathOptions): Promise<void> {
  const raw = request.raw as RawRequest;
  const declared = request.headers["content-length"];
  let body: Body;
  try {
    body = await readBody(raw, declared === undefined ? undefined : Number(declared), bodyLimit(protocol, options.readMaxBytes));
  } catch (err) {
    // The client went away while sending: there is no one to answer.
    request.log.debug({ err }, "request body not received");
    reply.hijack();
    raw.destroy();
    return;
  }
  const input = body.complete ? decode(entry, protocol, body.bytes) : undefined;
  if (input === undefined) return handBack(entry, request, reply, body, options.contextValues(request));

  let output: object | undefined;
  let error: ConnectError | undefined;
  let responseHeader: Headers | undefined;
  let responseTrailer: Headers | undefined;
  let bytes: string | Uint8Array | undefined;
  try {
    const response = await entry.call(fastRequest(entry, protocol, raw, reply.raw as ServerResponse, input, options.contextValues(request)));
    responseHeader = response.header;
    responseTrailer = response.trailer;
    output = response.message;
    bytes = protocol === "connect_json" ? encodeJson(entry.method.output, output) : encodeBinary(entry.method.output, output);
  } catch (err) {
    // Interceptors have made errors from the chain public already; anything else is an encoder's.
    if (!(err instanceof ConnectError)) request.log.error({ err, procedure: `${entry.service.typeName}/${entry.method.name}` }, "rpc failed unexpectedly");
    error = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
  }
  if (protocol === "grpc") return writeGrpc(request, reply, bytes as Uint8Array | undefined, error, responseHeader, responseTrailer);
  return writeConnect(request, reply, protocol, bytes, error, responseHeader, responseTrailer, options.jsonOptions);
}

/** The request message, or undefined when Connect should decide what is wrong with the body. */
function decode(entry: FastMethod, protocol: FastPathProtocol, bytes: Uint8Array): object | undefined {
  let payload = bytes;
  if (protocol === "grpc") {
    // Exactly one uncompressed message; anything else (several, truncated, flagged) is Connect's.
    if (bytes.byteLength < ENVELOPE_HEADER_BYTES || bytes[0] !== 0) return undefined;
    const length = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readUInt32BE(1);
    if (length !== bytes.byteLength - ENVELOPE_HEADER_BYTES) return undefined;
    payload = bytes.subarray(ENVELOPE_HEADER_BYTES);
  }
  try {
    return (protocol === "connect_json" ? entry.json : entry.binary).parse(payload);
  } catch {
    return undefined;
  }
}

async function writeConnect(
  request: FastifyRequest,
  reply: FastifyReply,
  protocol: FastPathProtocol,
  body: string | Uint8Array | undefined,
  error: ConnectError | undefined,
  header: Headers | undefined,
  trailer: Headers | undefined,
  jsonOptions: FastPathOptions["jsonOptions"],
): Promise<void> {
  header?.forEach((value, key) => reply.header(key, value));
  // Trailers travel as `trailer-*` headers in Connect unary answers.
  trailer?.forEach((value, key) => reply.header(`trailer-${key}`, value));
  let status = 200;
  let contentType = protocol === "connect_json" ? "application/json" : "application/proto";
  if (error !== undefined) {
    status = codeToHttpStatus(error.code);
    contentType = "application/json";
    error.metadata.forEach((value, key) => reply.header(key, value));
    body = errorToJsonBytes(error, jsonOptions);
  }
  reply.code(status).header("content-type", contentType);
  // A Buffer, so that Fastify sends the content type as it is (a string would get "; charset=utf-8").
  const bytes = typeof body === "string" ? Buffer.from(body) : Buffer.from(body!.buffer, body!.byteOffset, body!.byteLength);
  const compression = compressionNegotiate(acceptCompression, null, headerValue(request.headers["accept-encoding"]), "accept-encoding").response;
  if (compression !== null && bytes.byteLength >= COMPRESS_MIN_BYTES) {
    reply.header("content-encoding", compression.name);
    reply.send(Buffer.from(await compression.compress(bytes)));
  } else {
    reply.send(bytes);
  }
}

async function writeGrpc(
  request: FastifyRequest,
  reply: FastifyReply,
  message: Uint8Array | undefined,
  error: ConnectError | undefined,
  header: Headers | undefined,
  trailer: Headers | undefined,
): Promise<void> {
  // Plain objects, as Node takes them; Headers only where Connect's encoder needs one.
  const responseHeader = nodeHeaders(header);
  responseHeader["content-type"] = "application/grpc+proto";
  const compression = compressionNegotiate(acceptCompression, null, headerValue(request.headers["grpc-accept-encoding"]), "grpc-accept-encoding").response;
  if (compression !== null) responseHeader["grpc-encoding"] = compression.name;
  let responseTrailer: Record<string, string>;
  if (error !== undefined) {
    const withStatus = new Headers(trailer);
    setTrailerStatus(withStatus, error);
    responseTrailer = nodeHeaders(withStatus);
  } else {
    responseTrailer = nodeHeaders(trailer);
    responseTrailer["grpc-status"] = grpcStatusOk;
  }
  let envelope: Buffer | undefined;
  if (error === undefined && message !== undefined) {
    let payload = message;
    let flags = 0;
    if (compression !== null && payload.byteLength >= COMPRESS_MIN_BYTES) {
      payload = await compression.compress(payload);
      flags = 1;
    }
    envelope = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + payload.byteLength);
    envelope[0] = flags;
    envelope.writeUInt32BE(payload.byteLength, 1);
    envelope.set(payload, ENVELOPE_HEADER_BYTES);
  }
  // Written at once (headers, the message, then the trailers Node sends after it), without the
  // async iteration of Connect's universal response: the answer is complete here.
  reply.hijack();
  copyReplyHeaders(reply);
  const response = reply.raw as unknown as Http2ServerResponse;
  response.writeHead(200, responseHeader);
  response.addTrailers(responseTrailer);
  if (envelope === undefined) response.end();
  else response.end(envelope);
}

/** `Headers` as Node wants them for writeHead and addTrailers (one entry per name). */
function nodeHeaders(headers: Headers | undefined): Record<string, string> {
  const object: Record<string, string> = Object.create(null);
  headers?.forEach((value, key) => (object[key] = value));
  return object;
}

/** Hands the call to Connect's own handler, with the part of the body already read. */
async function handBack(entry: FastMethod, request: FastifyRequest, reply: FastifyReply, body: Body, contextValues: ContextValues): Promise<void> {
  const raw = request.raw as RawRequest;
  // The request as connect-fastify would give it to Connect, but with the body we have read.
  const universal: UniversalServerRequest = {
    ...universalRequestFromNodeRequest(raw, reply.raw, undefined, contextValues),
    body: body.complete || body.ended ? createAsyncIterable([body.bytes]) : restOf(body.chunks, raw),
  };
  reply.hijack();
  const response = await entry.connect(universal);
  copyReplyHeaders(reply);
  await universalResponseToNodeResponse(response, reply.raw);
}

async function* restOf(chunks: Buffer[], raw: RawRequest): AsyncIterable<Uint8Array> {
  yield* chunks;
  for await (const chunk of raw) yield chunk as Buffer;
}

/** Headers set on the reply before the answer (x-request-id, CORS), as connect-fastify copies them. */
function copyReplyHeaders(reply: FastifyReply): void {
  for (const [key, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) reply.raw.setHeader(key, value);
  }
}

interface FastRequest extends UnaryRequest {
  readonly protocolName: string;
}

function fastRequest(
  entry: FastMethod,
  protocol: FastPathProtocol,
  raw: RawRequest,
  rawResponse: ServerResponse,
  message: object,
  contextValues: ContextValues,
): FastRequest {
  let header: Headers | undefined;
  let signal: AbortSignal | undefined;
  let url: string | undefined;
  return {
    stream: false,
    service: entry.service,
    method: entry.method,
    requestMethod: "POST",
    protocolName: protocol === "grpc" ? "grpc" : "connect",
    message: message as never,
    contextValues,
    get url() {
      return (url ??= absoluteUrl(raw));
    },
    get header() {
      return (header ??= webHeaders(raw));
    },
    get signal() {
      return (signal ??= closeSignal(raw, rawResponse));
    },
  };
}

function absoluteUrl(raw: RawRequest): string {
  const encrypted = "encrypted" in raw.socket && raw.socket.encrypted;
  const authority = "authority" in raw ? raw.authority : raw.headers.host;
  return `${encrypted ? "https" : "http"}://${authority ?? "localhost"}${raw.url ?? ""}`;
}

/** The request's headers as `Headers`, without HTTP/2 pseudo-headers (as connect-node makes them). */
function webHeaders(raw: RawRequest): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) headers.append(name, item);
    else headers.append(name, value);
  }
  return headers;
}

/** Aborted when the client goes away before the answer is complete. */
function closeSignal(raw: RawRequest, rawResponse: ServerResponse): AbortSignal {
  const controller = new AbortController();
  const target = "stream" in raw ? raw : rawResponse;
  target.once("close", () => {
    if (!rawResponse.writableFinished) controller.abort(new ConnectError("the client closed the request", Code.Canceled));
  });
  return controller.signal;
}

type Body =
  | { complete: true; bytes: Uint8Array }
  | { complete: false; ended: true; bytes: Uint8Array }
  | { complete: false; ended: false; chunks: Buffer[] };

/**
 * The whole body when it ends within `limit` bytes and matches its content-length; otherwise what
 * was read (with the stream paused if it has not ended), for Connect to take over.
 */
function readBody(raw: RawRequest, length: number | undefined, limit: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const cleanup = () => {
      raw.off("data", onData);
      raw.off("end", onEnd);
      raw.off("error", onError);
      raw.off("aborted", onAborted);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.byteLength;
      chunks.push(chunk);
      if (received > limit || (length !== undefined && received > length)) {
        raw.pause();
        cleanup();
        resolve({ complete: false, ended: false, chunks });
      }
    };
    const onEnd = () => {
      cleanup();
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      // Shorter than its content-length: Connect names the mismatch.
      resolve(length !== undefined && received !== length ? { complete: false, ended: true, bytes } : { complete: true, bytes });
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onAborted = () => onError(new Error("the client aborted the request"));
    raw.on("data", onData);
    raw.once("end", onEnd);
    raw.once("error", onError);
    raw.once("aborted", onAborted);
  });
}

function headerValue(value: string | string[] | undefined): string | null {
  return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
}
