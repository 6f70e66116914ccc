// A short path for the commonest call: a Connect unary POST with a JSON body, no compression of
// the request and no deadline. Connect's universal handler turns every call
// into web-standard objects (Headers, AbortSignals linked to deadline and shutdown timers, async
// iterables for both bodies) and back; with protobuf-es reflection for the JSON, that was most
// of the server's CPU per call (bench/README.md). This path runs the same interceptors and the
// same handlers, parses with Connect's own serialization (same limits, same errors), writes
// errors with Connect's own encoder and negotiates response compression as Connect does, but
// creates the web objects only when something reads them, and writes responses through the
// compiled JSON encoder (src/json-encoder.ts).
//
// Any other call (binary, gRPC, gRPC-Web, GET, compressed bodies, deadlines, other content
// types, a declared length over the limit) is left to Connect. The whole test suite runs over this path wherever it calls
// with Connect JSON; test/json-lane.test.ts compares the two paths response by response.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { DescMethodUnary, DescService } from "@bufbuild/protobuf";
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
import { compressionNegotiate, createMethodSerializationLookup, type Compression } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { createMessage } from "./create-message.js";
import { encodeJson } from "./json-encoder.js";

/** A service and its implementation, as given to `router.service()`. */
export interface ServiceRoute {
  service: DescService;
  impl: object;
}

export function serviceRoute<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): ServiceRoute {
  return { service, impl };
}

export interface JsonLaneOptions {
  services: ServiceRoute[];
  /** Path prefixes the services are mounted at besides the root (e.g. "/api"). */
  prefixes: string[];
  interceptors: Interceptor[];
  jsonOptions: Partial<JsonReadOptions & JsonWriteOptions>;
  readMaxBytes: number;
  contextValues: (request: FastifyRequest) => ContextValues;
  /** Called for each call the short path takes (a metric). */
  onServed?: () => void;
}

// What connect-fastify gives Connect by default, and Connect's default threshold.
const acceptCompression: Compression[] = [compressionGzip, compressionBrotli];
const COMPRESS_MIN_BYTES = 1024;
const JSON_CONTENT_TYPES = new Set(["application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"]);

interface LaneMethod {
  service: DescService;
  method: DescMethodUnary;
  /** The interceptor chain around the implementation, composed once. */
  call: (request: UnaryRequest) => Promise<UnaryResponse>;
  parse: (bytes: Uint8Array) => object;
}

/** An onRequest hook that answers eligible calls itself and passes every other request on. */
export function connectJsonLane(options: JsonLaneOptions): onRequestHookHandler {
  const methods = new Map<string, LaneMethod>();
  for (const { service, impl } of options.services) {
    for (const described of service.methods) {
      if (described.methodKind !== "unary") continue;
      const method = described as DescMethodUnary;
      const implementation = (impl as Record<string, unknown>)[method.localName];
      if (typeof implementation !== "function") continue; // Connect answers unimplemented
      const serialization = createMethodSerializationLookup(method, undefined, options.jsonOptions, {
        readMaxBytes: options.readMaxBytes,
        writeMaxBytes: 0xffffffff, // Connect's default
      });
      const input = serialization.getI(false);
      const entry: LaneMethod = {
        service,
        method,
        call: compose(method, implementation.bind(impl) as UnaryImplementation, options.interceptors),
        parse: (bytes) => input.parse(bytes),
      };
      for (const prefix of ["", ...options.prefixes]) methods.set(`${prefix}/${service.typeName}/${method.name}`, entry);
    }
  }

  return function connectJsonLaneHook(request, reply, done) {
    const entry = methods.get(request.routeOptions.url ?? "");
    if (entry === undefined || !eligible(request, options.readMaxBytes)) {
      done();
      return;
    }
    options.onServed?.();
    serve(entry, request, reply, options).catch((err: unknown) => {
      // Only a failure to write the answer gets here (the socket is gone); log it like Connect would.
      request.log.warn({ err }, "could not write the response");
    });
  };
}

function eligible(request: FastifyRequest, readMaxBytes: number): boolean {
  if (request.method !== "POST") return false;
  const headers = request.headers;
  const contentType = headers["content-type"];
  if (contentType === undefined || !JSON_CONTENT_TYPES.has(contentType)) return false;
  if (headers["content-encoding"] !== undefined || headers["connect-timeout-ms"] !== undefined) return false;
  const length = headers["content-length"];
  // A body declared too large gets Connect's own handling and error.
  return length === undefined || (/^\d{1,10}$/.test(length) && Number(length) <= readMaxBytes);
}

type UnaryImplementation = (message: object, context: HandlerContext) => unknown;

/** A request whose web objects (Headers, AbortSignal, URL) are made on first use. */
interface LaneRequest extends UnaryRequest {
  readonly rawRequest: IncomingMessage | Http2ServerRequest;
}

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
      // Read by interceptors that add headers or trailers; made only then.
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
    protocolName: "connect",
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

async function serve(entry: LaneMethod, request: FastifyRequest, reply: FastifyReply, options: JsonLaneOptions): Promise<void> {
  const raw = request.raw as IncomingMessage | Http2ServerRequest;
  let status = 200;
  let body: string | Uint8Array;
  let response: UnaryResponse | undefined;
  let metadata: Headers | undefined;
  try {
    const declared = request.headers["content-length"];
    const bytes = await readBody(raw, declared === undefined ? undefined : Number(declared), options.readMaxBytes);
    const laneRequest = unaryRequest(entry, raw, reply.raw as ServerResponse, entry.parse(bytes), options.contextValues(request));
    response = await entry.call(laneRequest);
    body = encodeJson(entry.method.output, response.message);
  } catch (err) {
    // The interceptors have already made errors from the chain public; what else gets here is a
    // response the encoder refused.
    if (!(err instanceof ConnectError)) request.log.error({ err, procedure: `${entry.service.typeName}/${entry.method.name}` }, "rpc failed unexpectedly");
    const error = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
    status = codeToHttpStatus(error.code);
    body = errorToJsonBytes(error, options.jsonOptions);
    metadata = error.metadata;
  }
  copyHeaders(reply, response, metadata);
  reply.code(status).header("content-type", "application/json");
  const compression = compressionNegotiate(acceptCompression, null, headerValue(request.headers["accept-encoding"]), "accept-encoding").response;
  // A Buffer, so that Fastify sends the content type as it is (a string would get "; charset=utf-8").
  const bytes = typeof body === "string" ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (compression !== null && bytes.byteLength >= COMPRESS_MIN_BYTES) {
    reply.header("content-encoding", compression.name);
    reply.send(Buffer.from(await compression.compress(bytes)));
  } else {
    reply.send(bytes);
  }
}

/** Response headers and trailers set by interceptors or the handler (trailers as `trailer-*`, as Connect sends them), and an error's metadata. */
function copyHeaders(reply: FastifyReply, response: UnaryResponse | undefined, metadata: Headers | undefined): void {
  if (response !== undefined) {
    const described = Object.getOwnPropertyDescriptors(response);
    // Only look at headers that exist; reading a lazy getter would create them.
    const header = described.header?.value as Headers | undefined;
    const trailer = described.trailer?.value as Headers | undefined;
    header?.forEach((value, key) => reply.header(key, value));
    trailer?.forEach((value, key) => reply.header(`trailer-${key}`, value));
  }
  metadata?.forEach((value, key) => reply.header(key, value));
}

function unaryRequest(
  entry: LaneMethod,
  raw: IncomingMessage | Http2ServerRequest,
  rawResponse: ServerResponse,
  message: object,
  contextValues: ContextValues,
): LaneRequest {
  let header: Headers | undefined;
  let signal: AbortSignal | undefined;
  let url: string | undefined;
  return {
    stream: false,
    service: entry.service,
    method: entry.method,
    requestMethod: "POST",
    message: message as never,
    contextValues,
    rawRequest: raw,
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

function absoluteUrl(raw: IncomingMessage | Http2ServerRequest): string {
  const encrypted = "encrypted" in raw.socket && raw.socket.encrypted;
  const authority = "authority" in raw ? raw.authority : raw.headers.host;
  return `${encrypted ? "https" : "http"}://${authority ?? "localhost"}${raw.url ?? ""}`;
}

/** The request's headers as `Headers`, without HTTP/2 pseudo-headers (as connect-node makes them). */
function webHeaders(raw: IncomingMessage | Http2ServerRequest): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) headers.append(name, item);
    else headers.append(name, value);
  }
  return headers;
}

/** Aborted when the client goes away before the answer is complete. */
function closeSignal(raw: IncomingMessage | Http2ServerRequest, rawResponse: ServerResponse): AbortSignal {
  const controller = new AbortController();
  const target = "stream" in raw ? raw : rawResponse;
  target.once("close", () => {
    if (!rawResponse.writableFinished) controller.abort(new ConnectError("the client closed the request", Code.Canceled));
  });
  return controller.signal;
}

/** The whole body, held to its content-length and to readMaxBytes with Connect's errors. */
function readBody(raw: IncomingMessage | Http2ServerRequest, length: number | undefined, readMaxBytes: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const fail = (error: ConnectError) => {
      cleanup();
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.byteLength;
      chunks.push(chunk);
      if (length !== undefined && received > length) fail(new ConnectError(`protocol error: promised ${length} bytes, received ${received}`, Code.InvalidArgument));
      else if (received > readMaxBytes) fail(new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
    };
    const onEnd = () => {
      if (length !== undefined && received < length) return fail(new ConnectError(`protocol error: promised ${length} bytes, received ${received}`, Code.InvalidArgument));
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    const onError = (err: Error) => fail(new ConnectError("the request body could not be read", Code.Canceled, undefined, undefined, err));
    const onAborted = () => onError(new Error("the client aborted the request"));
    const cleanup = () => {
      raw.off("data", onData);
      raw.off("end", onEnd);
      raw.off("error", onError);
      raw.off("aborted", onAborted);
    };
    raw.on("data", onData);
    raw.once("end", onEnd);
    raw.once("error", onError);
    raw.once("aborted", onAborted);
  });
}

function headerValue(value: string | string[] | undefined): string | null {
  return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
}
