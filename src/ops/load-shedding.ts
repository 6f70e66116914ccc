// Load shedding: a bound on the RPCs handled at once. Above it a call is refused at once
// with `unavailable` (HTTP 503 on Connect, grpc-status 14 on gRPC and gRPC-Web), which
// clients may retry with backoff, instead of queueing for database connections without
// bound. It is an interceptor, so the refusal is a well-formed error on every protocol.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** How long /readyz keeps answering 503 after the last refused call. */
const OVERLOAD_HOLD_MS = 1_000;

export class InFlightLimiter {
  private inFlightCount = 0;
  private shedCount = 0;
  private lastShedAt = Number.NEGATIVE_INFINITY;

  /** @param limit most RPCs in flight at once; 0 means no limit. */
  constructor(
    readonly limit: number,
    /** Called when shedding starts after a quiet period (at most once per second), for a log line. */
    private readonly onShedding?: (inFlight: number) => void,
  ) {}

  get inFlight(): number {
    return this.inFlightCount;
  }

  get shed(): number {
    return this.shedCount;
  }

  /** True while at the limit, and for a second after a call was refused (for /readyz). */
  overloaded(): boolean {
    if (this.limit === 0) return false;
    return this.inFlightCount >= this.limit || performance.now() - this.lastShedAt < OVERLOAD_HOLD_MS;
  }

  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (this.limit !== 0 && this.inFlightCount >= this.limit) {
        const now = performance.now();
        if (now - this.lastShedAt >= OVERLOAD_HOLD_MS) this.onShedding?.(this.inFlightCount);
        this.lastShedAt = now;
        this.shedCount++;
        throw new ConnectError("the server is overloaded, retry with backoff", Code.Unavailable);
      }
      this.inFlightCount++;
      try {
        return await next(req);
      } finally {
        this.inFlightCount--;
      }
    };
  }
}
