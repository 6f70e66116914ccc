// The one job of the deployment that notices silence: every intervalMs the replica holding the
// "sweeper" lease (a row in `leases`, the database's clock; taken over within leaseMs + intervalMs
// when its holder dies) flips runners whose heartbeats stopped to not live, which publishes
// their ACTIVE -> INACTIVE UPDATE_STATUS event (migrations/0004_events_audit.sql), and deletes
// audit log entries older than AUDIT_RETENTION_DAYS. The flip is a conditional row update, so even
// two sweepers at once (a lease lapsing mid-sweep) publish each transition once.
import { randomUUID } from "node:crypto";
import type { EventStore } from "../store/event-store.js";
import type { Clock } from "./clock.js";

const LEASE = "sweeper";
/** Audit entries deleted per statement; the rest follow on the next sweeps. */
const PRUNE_BATCH = 5_000;
/** Retention runs on every this many sweeps (about once a minute at the default interval). */
const PRUNE_EVERY = 60;

export interface SweeperOptions {
  /** A signed-up runner without a heartbeat for this long is INACTIVE. */
  windowMs: number;
  retentionDays: number;
  intervalMs: number;
  leaseMs: number;
  warn: (fields: object, message: string) => void;
}

export class EventSweeper {
  readonly id = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private sweeps = 0;
  /** A failure is reported once, not on every interval of an outage. */
  private failing = false;
  /** Whether this process held the lease at its last attempt. */
  leader = false;
  readonly stats = { sweeps: 0, inactive: 0, pruned: 0 };

  constructor(
    private readonly store: EventStore,
    private readonly clock: Clock,
    private readonly options: SweeperOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, this.options.intervalMs).unref();
  }

  /** One attempt: take or renew the lease, and sweep when held. */
  async tick(): Promise<void> {
    try {
      const held = await this.store.takeLease(LEASE, this.id, this.options.leaseMs);
      if (held !== this.leader) this.options.warn({ sweeper: this.id }, held ? "sweeper: this replica now sweeps for the deployment" : "sweeper: another replica sweeps now");
      this.leader = held;
      if (!held) return;
      const now = this.clock.now();
      const silent = await this.store.markSilentRunners(new Date(now.getTime() - this.options.windowMs));
      this.stats.sweeps++;
      this.stats.inactive += silent.length;
      if (this.sweeps++ % PRUNE_EVERY === 0) {
        this.stats.pruned += await this.store.pruneAuditLog(new Date(now.getTime() - this.options.retentionDays * 86_400_000), PRUNE_BATCH);
      }
      if (this.failing) this.options.warn({ sweeper: this.id }, "sweeper: sweeping again");
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.options.warn({ err }, "sweeper: a sweep failed; retrying every interval");
      this.failing = true;
      this.leader = false;
    }
  }

  /** Stops sweeping and hands the lease back, so another replica takes over at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    if (this.leader) await this.store.releaseLease(LEASE, this.id).catch(() => {});
    this.leader = false;
  }
}
