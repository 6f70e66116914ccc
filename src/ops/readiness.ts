// Whether this process should get traffic: not shutting down, not shedding load, and the
// database answers within 2 s. One signal for GET /readyz and grpc.health.v1.Health
// (src/rpc/health.ts), so HTTP and gRPC probes always agree.
import type { InFlightLimiter } from "./load-shedding.js";

export type ReadinessState = { ready: true } | { ready: false; reason: string };

const PING_TIMEOUT_MS = 2_000;

export class Readiness {
  private closing = false;

  constructor(
    private readonly limiter: InFlightLimiter,
    /** One cheap round trip to the database. */
    private readonly pingDatabase: () => Promise<unknown>,
  ) {}

  /** From now on not ready (SIGTERM: let balancers and probes move on while in-flight calls finish). */
  markClosing(): void {
    this.closing = true;
  }

  async check(): Promise<ReadinessState> {
    if (this.closing) return { ready: false, reason: "shutting down" };
    if (this.limiter.overloaded()) return { ready: false, reason: "overloaded: MAX_IN_FLIGHT reached" };
    try {
      await withTimeout(this.pingDatabase(), PING_TIMEOUT_MS);
      return { ready: true };
    } catch {
      return { ready: false, reason: "database unreachable" };
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
