// Brute-force protection: failed authentications are counted per client address, and once an
// address has failed AUTH_FAILURE_LIMIT times within AUTH_FAILURE_WINDOW_SECONDS, its further
// failures are answered `resource_exhausted` with a `retry-after` header (seconds) and a
// message saying when to retry, instead of `unauthenticated`.
//
// What counts as a failure: any RPC that ends `unauthenticated`, i.e. a missing, malformed,
// unknown or revoked bearer credential (auth interceptor) and a failed ExchangeToken (unknown,
// used or expired exchange token; handler). Decisions (docs/reliability.md):
// - Successes are never limited: a valid credential from a limited address still works, so
//   one misbehaving client behind a shared address (NAT, proxy) cannot lock the others out.
//   Guessing stays hopeless anyway: every token carries 256 random bits.
// - The client address is the TCP peer address (no X-Forwarded-For); IPv6 addresses count
//   per /64, the block a single host usually controls.
// - State is in memory, per process: with several replicas the limit applies per replica.
//   Memory is bounded (`capacity` addresses; the oldest window is forgotten first).
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";

/** The TCP peer address of the connection that carried the call. */
export const clientAddressKey = createContextKey<string | undefined>(undefined, { description: "client address" });

export interface FailureLimiterOptions {
  /** Failures allowed per address and window; the next ones are refused. */
  limit: number;
  windowMs: number;
  /** Milliseconds since the epoch (the server's clock, injectable in tests). */
  now: () => number;
  /** Most addresses tracked at once (default 100 000). */
  capacity?: number;
}

interface Window {
  startedAt: number;
  failures: number;
}

/** Fixed-window failure counter per address bucket. */
export class FailureLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly capacity: number;

  constructor(private readonly options: FailureLimiterOptions) {
    this.capacity = options.capacity ?? 100_000;
  }

  /**
   * Records a failure of `address`. Returns 0 while the address is within its limit, else
   * the milliseconds until its window ends (when the failure should be refused).
   */
  recordFailure(address: string | undefined): number {
    const bucket = addressBucket(address);
    const now = this.options.now();
    let window = this.windows.get(bucket);
    if (!window || now >= window.startedAt + this.options.windowMs) {
      // Re-insert so the map's order stays the order in which windows started.
      this.windows.delete(bucket);
      this.evictFor(now);
      window = { startedAt: now, failures: 0 };
      this.windows.set(bucket, window);
    }
    window.failures++;
    return window.failures > this.options.limit ? Math.max(1, window.startedAt + this.options.windowMs - now) : 0;
  }

  /** Addresses currently tracked (for tests and metrics). */
  get size(): number {
    return this.windows.size;
  }

  private evictFor(now: number): void {
    if (this.windows.size < this.capacity) return;
    // Oldest windows first: they are the ones most likely over already.
    for (const [bucket, window] of this.windows) {
      if (this.windows.size < this.capacity && now < window.startedAt + this.options.windowMs) break;
      this.windows.delete(bucket);
    }
  }
}

/** The unit an address is counted in: IPv4 as is (also when IPv4-mapped), IPv6 per /64. */
export function addressBucket(address: string | undefined): string {
  if (!address) return "unknown";
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(":")) return address;
  const groups = expandIpv6(address.replace(/%.*$/, ""));
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : address;
}

function expandIpv6(address: string): string[] | undefined {
  const halves = address.toLowerCase().split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined) => (part ? part.split(":") : []);
  const head = parse(halves[0]);
  const tail = parse(halves[1]);
  // An embedded IPv4 tail (::ffff:1.2.3.4 is handled above; others are rare) takes two groups.
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((group) => /^[0-9a-f]{1,4}$/.test(group))) return undefined;
  return groups.map((group) => group.replace(/^0+(?=.)/, ""));
}

/**
 * Counts `unauthenticated` outcomes per client address; over the limit they become
 * `resource_exhausted` with a `retry-after` header. Sits just outside the auth interceptor,
 * so it sees both authentication failures and failed ExchangeToken calls.
 */
export function authFailureInterceptor(limiter: FailureLimiter | undefined): Interceptor {
  return (next) => async (req) => {
    if (!limiter) return next(req);
    try {
      return await next(req);
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated) throw err;
      const retryAfterMs = limiter.recordFailure(req.contextValues.get(clientAddressKey));
      if (retryAfterMs === 0) throw err;
      const seconds = Math.ceil(retryAfterMs / 1000);
      throw new ConnectError(
        `too many failed authentication attempts from this address: retry after ${seconds} s`,
        Code.ResourceExhausted,
        { "retry-after": String(seconds) },
      );
    }
  };
}
