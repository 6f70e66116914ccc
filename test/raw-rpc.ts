// Raw HTTP for tests that must send what no RPC client would: exact header lists (duplicates,
// odd values), arbitrary bodies and frames, over HTTP/1.1 (node:http) or h2c (node:http2), and
// reading back status, headers, trailers and body as they are. Also parses the outcome of a
// call per protocol (Connect, gRPC, gRPC-Web) so tests can check it is well formed.
import * as http from "node:http";
import * as http2 from "node:http2";
import { brotliDecompressSync, gunzipSync } from "node:zlib";

export type WireProtocol = "connect-json" | "connect-binary" | "grpc" | "grpc-web";

export interface RawRequest {
  method: "POST" | "GET";
  /** Path and query, e.g. /gitpod.v1.RunnerService/GetRunner */
  path: string;
  /** In order, duplicates allowed; `host` (HTTP/1.1) is added when absent. */
  headers: [string, string][];
  body: Uint8Array;
  http: "1.1" | "2";
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: Buffer;
}

const connectionSpecific = new Set(["te", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"]);

/** Sends requests over one keep-alive HTTP/1.1 agent and one reused h2c session. */
export class RawClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private session: http2.ClientHttp2Session | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs = 15_000,
  ) {}

  send(request: RawRequest): Promise<RawResponse> {
    const sent = request.http === "2" ? this.sendH2(request) : this.sendH1(request);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no response within ${this.timeoutMs} ms (server hang?)`)), this.timeoutMs);
    });
    return Promise.race([sent, timeout]).finally(() => clearTimeout(timer));
  }

  private sendH1(request: RawRequest): Promise<RawResponse> {
    const headers = request.headers.some(([name]) => name.toLowerCase() === "host")
      ? request.headers
      : [["host", `${this.host}:${this.port}`] as [string, string], ...request.headers];
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, method: request.method, path: request.path, agent: this.agent, headers: headers.flat() },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: flatten(res.headers),
              trailers: flatten(res.trailers),
              body: Buffer.concat(chunks),
            }),
          );
        },
      );
      req.on("error", reject);
      req.end(request.body.length > 0 ? Buffer.from(request.body) : undefined);
    });
  }

  private h2(): http2.ClientHttp2Session {
    if (process.env.RAW_H2_FRESH || !this.session || this.session.closed || this.session.destroyed) {
      const session = http2.connect(`http://${this.host}:${this.port}`);
      session.on("error", () => {}); // surfaces on the streams
      session.unref();
      this.session = session;
    }
    return this.session;
  }

  private sendH2(request: RawRequest): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      // HTTP/2 has no duplicate single-value headers; the last one wins here.
      const headers: http2.OutgoingHttpHeaders = { ":method": request.method, ":path": request.path };
      for (const [name, value] of request.headers) {
        const lower = name.toLowerCase();
        // Connection-specific headers are illegal in HTTP/2; node:http2 refuses to send them.
        if (connectionSpecific.has(lower) && !(lower === "te" && value === "trailers")) continue;
        headers[lower] = value;
      }
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.h2().request(headers, { endStream: false });
      } catch (err) {
        reject(err);
        return;
      }
      let status = 0;
      let responseHeaders: Record<string, string> = {};
      let trailers: Record<string, string> = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        responseHeaders = flatten(h);
      });
      stream.on("trailers", (t) => (trailers = flatten(t)));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", reject);
      const done = () => {
        if (status === 0) reject(new Error(`stream closed without a response (rst code ${stream.rstCode})`));
        else resolve({ status, headers: responseHeaders, trailers, body: Buffer.concat(chunks) });
      };
      // The answer is complete when the server ends its side, even if it did not read all of
      // ours (a refused oversized upload): like a gRPC client, stop sending then.
      stream.on("end", () => {
        done();
        // Only when our upload is still going: resetting every stream would look like an
        // HTTP/2 rapid-reset attack, and the server rightly closes such a session.
        if (!stream.closed && !stream.writableFinished) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      stream.on("close", done);
      stream.end(request.body.length > 0 ? Buffer.from(request.body) : undefined);
    });
  }

  close(): void {
    this.agent.destroy();
    this.session?.destroy();
  }
}

function flatten(headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders | NodeJS.Dict<string | string[]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}

/** A gRPC / gRPC-Web length-prefixed frame: 1 flag byte, 4-byte big-endian length, payload. */
export function frame(payload: Uint8Array, flags = 0, declaredLength = payload.length): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, flags);
  view.setUint32(1, declaredLength >>> 0);
  out.set(payload, 5);
  return out;
}

/** Splits a framed body; undefined when the frames do not add up exactly. */
export function parseFrames(body: Uint8Array): { flags: number; payload: Uint8Array }[] | undefined {
  const frames: { flags: number; payload: Uint8Array }[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (body.length - offset < 5) return undefined;
    const view = new DataView(body.buffer, body.byteOffset + offset, 5);
    const length = view.getUint32(1);
    if (body.length - offset - 5 < length) return undefined;
    frames.push({ flags: view.getUint8(0), payload: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return frames;
}

/** gRPC status numbers by the names Connect uses on the wire. */
export const grpcCodeNames = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
  "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
] as const;

/** The HTTP status the Connect protocol pairs with each error code. */
export const connectHttpStatus: Record<string, number> = {
  canceled: 499, unknown: 500, invalid_argument: 400, deadline_exceeded: 504, not_found: 404, already_exists: 409,
  permission_denied: 403, resource_exhausted: 429, failed_precondition: 400, aborted: 409, out_of_range: 400,
  unimplemented: 501, internal: 500, unavailable: 503, data_loss: 500, unauthenticated: 401,
};

export interface Outcome {
  /** "ok", a Connect/gRPC code name, or "http_<status>" for a plain HTTP answer (no RPC reached). */
  code: string;
  message: string;
  /** Protocol violations found in the response; empty when it is well formed. */
  problems: string[];
  /** The response message payload on success (binary protobuf or JSON text). */
  payload?: Uint8Array;
}

/**
 * Reads a response the way a client would, by the protocol its content type announces (a
 * server answers a Connect request whatever the client hoped for). A plain HTTP status with no
 * RPC semantics (404 for an unknown path, 415 for an unknown content type, ...) is reported as
 * `http_<status>`.
 */
export function outcomeOf(response: RawResponse, options: { streaming?: boolean } = {}): Outcome & { protocol: WireProtocol | "http" } {
  const problems: string[] = [];
  const contentType = response.headers["content-type"] ?? "";
  if (/^application\/connect\+(json|proto)\b/.test(contentType)) return connectStreamOutcome(response, contentType);
  if (/^application\/(json|proto)\b/.test(contentType)) {
    const protocol = contentType.startsWith("application/json") ? "connect-json" : "connect-binary";
    try {
      response = { ...response, body: decompress(response.headers["content-encoding"], response.body) };
    } catch (err) {
      problems.push(`body does not decompress: ${(err as Error).message}`);
    }
    if (response.status === 200) return { protocol, code: "ok", message: "", problems, payload: response.body };
    if (protocol === "connect-binary") problems.push(`HTTP ${response.status} with content-type ${contentType}`);
    let error: { code?: unknown; message?: unknown };
    try {
      error = JSON.parse(response.body.toString("utf8"));
    } catch {
      return { protocol: "http", code: `http_${response.status}`, message: response.body.toString("utf8"), problems: ["error body is not JSON"] };
    }
    if (typeof error.code !== "string" || !(error.code in connectHttpStatus)) {
      // Not a Connect error (e.g. Fastify's own 404/400 JSON for a path that is no procedure).
      return { protocol: "http", code: `http_${response.status}`, message: String(error.message ?? ""), problems };
    }
    if (connectHttpStatus[error.code] !== response.status) problems.push(`code ${error.code} with HTTP ${response.status}`);
    if (error.message !== undefined && typeof error.message !== "string") problems.push("message is not a string");
    return { protocol, code: error.code, message: typeof error.message === "string" ? error.message : "", problems };
  }
  if (!contentType.startsWith("application/grpc")) {
    return { protocol: "http", code: `http_${response.status}`, message: response.body.toString("utf8"), problems };
  }

  // gRPC and gRPC-Web: HTTP 200 and a grpc-status, from the headers (trailers-only), the
  // HTTP/2 trailers (gRPC) or the trailer frame at the end of the body (gRPC-Web).
  const protocol = contentType.startsWith("application/grpc-web") ? "grpc-web" : "grpc";
  if (response.status !== 200) problems.push(`HTTP ${response.status} with content-type ${contentType}`);
  let trailers: Record<string, string> = { ...response.trailers };
  let dataFrames: Uint8Array[] = [];
  let frameFlags: number[] = [];
  if (response.headers["grpc-status"] !== undefined) {
    trailers = response.headers; // trailers-only response
    if (response.body.length > 0) problems.push("trailers-only response with a body");
  } else {
    const frames = parseFrames(response.body);
    if (!frames) {
      problems.push("body is not a sequence of frames");
    } else if (protocol === "grpc-web") {
      const last = frames.at(-1);
      if (!last || !(last.flags & 0x80)) problems.push("no trailer frame");
      else {
        // A large trailer frame may be compressed too (flag 0x01), with the response's grpc-encoding.
        let payload: Uint8Array = last.payload;
        if (last.flags & 1) {
          try {
            payload = decompress(response.headers["grpc-encoding"], payload);
          } catch (err) {
            problems.push(`compressed trailer frame does not decompress: ${(err as Error).message}`);
          }
        }
        trailers = parseWebTrailers(payload);
      }
      const data = frames.filter((f) => !(f.flags & 0x80));
      dataFrames = data.map((f) => f.payload);
      frameFlags = data.map((f) => f.flags);
    } else {
      dataFrames = frames.map((f) => f.payload);
      frameFlags = frames.map((f) => f.flags);
    }
  }
  const status = trailers["grpc-status"];
  if (status === undefined || !/^\d+$/.test(status) || Number(status) >= grpcCodeNames.length) {
    problems.push(`grpc-status "${status}"`);
    return { protocol, code: "missing_status", message: "", problems };
  }
  const code = grpcCodeNames[Number(status)]!;
  dataFrames = dataFrames.map((payload, i) => {
    const compressed = frameFlags[i]! & 1;
    if (!compressed) return payload;
    try {
      return decompress(response.headers["grpc-encoding"], payload);
    } catch (err) {
      problems.push(`compressed message does not decompress: ${(err as Error).message}`);
      return payload;
    }
  });
  let message = "";
  try {
    message = decodeURIComponent(trailers["grpc-message"] ?? "");
  } catch {
    problems.push("grpc-message is not percent-encoded");
  }
  // A unary call answers one message or an error; a stream (WatchRequests) any number, then its status.
  const streaming = options.streaming === true;
  if (!streaming && code === "ok" && dataFrames.length !== 1) problems.push(`OK with ${dataFrames.length} messages`);
  if (!streaming && code !== "ok" && dataFrames.length !== 0) problems.push(`error ${code} after ${dataFrames.length} messages`);
  return { protocol, code, message, problems, payload: dataFrames[0] };
}

/**
 * A Connect streaming response (server streaming): HTTP 200, enveloped messages (flag 0, or 1
 * when compressed), then an end-of-stream envelope (flag 2) whose JSON holds the error, if any.
 */
function connectStreamOutcome(response: RawResponse, contentType: string): Outcome & { protocol: WireProtocol | "http" } {
  const protocol = contentType.startsWith("application/connect+json") ? "connect-json" : "connect-binary";
  const problems: string[] = [];
  if (response.status !== 200) problems.push(`HTTP ${response.status} with content-type ${contentType}`);
  const frames = parseFrames(response.body);
  if (!frames) return { protocol, code: "missing_status", message: "", problems: [...problems, "body is not a sequence of envelopes"] };
  const end = frames.at(-1);
  if (!end || !(end.flags & 0x02)) return { protocol, code: "missing_status", message: "", problems: [...problems, "no end-of-stream envelope"] };
  let payload: Uint8Array = end.payload;
  if (end.flags & 1) {
    try {
      payload = decompress(response.headers["connect-content-encoding"], payload);
    } catch (err) {
      problems.push(`end-of-stream envelope does not decompress: ${(err as Error).message}`);
    }
  }
  let json: { error?: { code?: unknown; message?: unknown } };
  try {
    json = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    return { protocol, code: "missing_status", message: "", problems: [...problems, "end-of-stream envelope is not JSON"] };
  }
  if (json.error === undefined) return { protocol, code: "ok", message: "", problems, payload: frames[0]?.payload };
  const code = json.error.code;
  if (typeof code !== "string" || !(code in connectHttpStatus)) problems.push(`end-of-stream error code ${String(code)}`);
  return { protocol, code: String(code), message: typeof json.error.message === "string" ? json.error.message : "", problems };
}

function decompress(encoding: string | undefined, body: Buffer | Uint8Array): Buffer {
  if (encoding === undefined || encoding === "identity") return Buffer.from(body);
  if (encoding === "gzip") return gunzipSync(body);
  if (encoding === "br") return brotliDecompressSync(body);
  throw new Error(`unknown encoding ${encoding}`);
}

function parseWebTrailers(payload: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of Buffer.from(payload).toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}
