// Forwards runner metrics (relabelled remote-write bodies) to METRICS_REMOTE_WRITE_URL in the
// background, so a runner's ReportRunnerMetrics never waits for the receiver: a bounded queue
// (a full queue answers the runner `unavailable`), two requests in flight, and for each body
// retries with backoff on network errors, 5xx and 429, for at most MAX_RETRY_MS. Outcomes are
// counted for /metrics; a body the receiver refuses (other 4xx) is not retried.
const MAX_QUEUE_BYTES = 32 * 1024 * 1024;
const MAX_QUEUE_LENGTH = 1_000;
const MAX_IN_FLIGHT = 2;
const MAX_RETRY_MS = 10_000;
const ATTEMPT_TIMEOUT_MS = 5_000;

export interface ForwarderStats {
  forwarded: number;
  /** Given up after retries (receiver down or failing). */
  failed: number;
  /** Refused by the receiver (4xx other than 429): not retried. */
  rejected: number;
  /** Refused at once because the queue was full. */
  dropped: number;
  queued: number;
}

export class RemoteWriteForwarder {
  readonly stats: ForwarderStats = { forwarded: 0, failed: 0, rejected: 0, dropped: 0, queued: 0 };
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private idle: (() => void)[] = [];

  constructor(
    url: string,
    private readonly onFailure: (message: string) => void = () => {},
  ) {
    // fetch refuses URLs with credentials: user:password@ becomes Basic authentication.
    const parsed = new URL(url);
    this.headers = {
      "content-type": "application/x-protobuf",
      "content-encoding": "snappy",
      "x-prometheus-remote-write-version": "0.1.0",
      "user-agent": "runner-control-plane",
    };
    if (parsed.username || parsed.password) {
      this.headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString("base64")}`;
      parsed.username = "";
      parsed.password = "";
    }
    this.url = parsed.toString();
  }

  /** Queues a body; false when the queue is full. */
  enqueue(body: Uint8Array): boolean {
    if (this.queue.length >= MAX_QUEUE_LENGTH || this.queuedBytes + body.byteLength > MAX_QUEUE_BYTES) {
      this.stats.dropped++;
      return false;
    }
    this.queue.push(body);
    this.queuedBytes += body.byteLength;
    this.stats.queued = this.queue.length;
    this.pump();
    return true;
  }

  /** Resolves when nothing is queued or in flight (tests; shutdown). */
  drained(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const body = this.queue.shift()!;
      this.queuedBytes -= body.byteLength;
      this.stats.queued = this.queue.length;
      this.inFlight++;
      void this.send(body).finally(() => {
        this.inFlight--;
        this.pump();
        if (this.queue.length === 0 && this.inFlight === 0) for (const resolve of this.idle.splice(0)) resolve();
      });
    }
  }

  private async send(body: Uint8Array): Promise<void> {
    const started = performance.now();
    let delayMs = 250;
    for (;;) {
      let problem: string;
      try {
        const response = await fetch(this.url, { method: "POST", headers: this.headers, body, signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS) });
        await response.arrayBuffer().catch(() => undefined);
        if (response.ok) {
          this.stats.forwarded++;
          return;
        }
        if (response.status !== 429 && response.status < 500) {
          this.stats.rejected++;
          this.onFailure(`METRICS_REMOTE_WRITE_URL refused runner metrics with HTTP ${response.status}; not retried`);
          return;
        }
        problem = `HTTP ${response.status}`;
      } catch (err) {
        problem = (err as Error).message;
      }
      if (performance.now() - started + delayMs > MAX_RETRY_MS) {
        this.stats.failed++;
        this.onFailure(`forwarding runner metrics to METRICS_REMOTE_WRITE_URL failed (${problem}); gave up after ${Math.round(performance.now() - started)} ms`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, 2_000);
    }
  }
}
