// The dashboard's connection to the server: Connect (JSON) over fetch to this same origin, with
// the signed-in API key as a bearer token. The key lives in sessionStorage only: it is never put
// in a URL, a query key or a log line, and closing the tab forgets it.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ViolationsSchema } from "../../gen/buf/validate/validate_pb.js";

const KEY_STORAGE = "rcp.apiKey";

export function storedApiKey(): string | undefined {
  return sessionStorage.getItem(KEY_STORAGE) ?? undefined;
}

export function storeApiKey(key: string | undefined): void {
  if (key === undefined) sessionStorage.removeItem(KEY_STORAGE);
  else sessionStorage.setItem(KEY_STORAGE, key);
}

const bearer =
  (key: () => string | undefined): Interceptor =>
  (next) =>
  (request) => {
    const token = key();
    if (token !== undefined) request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };

/** A transport for this origin; `key` is read on every call, so signing out takes effect at once. */
export function transportFor(key: () => string | undefined) {
  return createConnectTransport({ baseUrl: window.location.origin, interceptors: [bearer(key)] });
}

/** The server's settings the dashboard shows (src/http/dashboard.ts, GET /dashboard.json). */
export interface Settings {
  livenessWindowSeconds: number;
  heartbeatSeconds: number;
  exchangeTokenTtlSeconds: number;
}

export async function fetchSettings(): Promise<Settings> {
  const response = await fetch("/dashboard.json", { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`GET /dashboard.json answered ${response.status}`);
  return (await response.json()) as Settings;
}

export function isUnauthenticated(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unauthenticated;
}

/**
 * Field errors of an invalid_argument answer, by proto field path (`name`,
 * `spec.configuration.update_window.start_hour`): the server's buf.validate.Violations detail,
 * so the form shows the API's own words at the field.
 */
export function fieldErrors(err: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (!(err instanceof ConnectError) || err.code !== Code.InvalidArgument) return out;
  for (const detail of err.findDetails(ViolationsSchema)) {
    for (const violation of detail.violations) {
      const path = (violation.field?.elements ?? []).map((e) => e.fieldName).join(".");
      if (!out.has(path)) out.set(path, violation.message);
    }
  }
  return out;
}

/** What to tell a person about a failed call. */
export function describeError(err: unknown): string {
  if (err instanceof ConnectError) {
    switch (err.code) {
      case Code.Unauthenticated:
        return "Your API key was not accepted (it is unknown, revoked or expired). Sign in again.";
      case Code.PermissionDenied:
        return `Not allowed: ${err.rawMessage}`;
      case Code.NotFound:
        return `Not found: ${err.rawMessage}`;
      case Code.Unavailable:
        return `The server is unavailable: ${err.rawMessage}`;
      default:
        return err.rawMessage;
    }
  }
  return err instanceof Error ? err.message : String(err);
}
