// Request ids: the client's x-request-id, else the trace id of a W3C traceparent, else a
// random UUID. The id is echoed in the x-request-id response header and is on every log
// line of the request (reqId), so one grep finds a call across the load balancer, the
// client's traces and our logs. No tracing library is involved.
import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
// version "-" trace-id "-" parent-id "-" flags (https://www.w3.org/TR/trace-context/#traceparent-header).
// Version 00 has exactly these four fields; later versions may append more after a "-".
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_PARENT_ID = "0".repeat(16);

/** The trace id of a valid traceparent header, else undefined. */
export function traceIdOf(traceparent: string | string[] | undefined): string | undefined {
  if (typeof traceparent !== "string" || traceparent.length < 55) return undefined;
  const match = TRACEPARENT.exec(traceparent.trim());
  if (!match) return undefined;
  const [, version, traceId, parentId, , rest] = match;
  if (version === "ff" || traceId === ZERO_TRACE_ID || parentId === ZERO_PARENT_ID) return undefined;
  if (version === "00" && rest !== undefined) return undefined;
  return traceId;
}

export function requestIdOf(headers: IncomingHttpHeaders): string {
  const given = headers["x-request-id"];
  if (typeof given === "string" && REQUEST_ID.test(given)) return given;
  return traceIdOf(headers.traceparent) ?? randomUUID();
}
