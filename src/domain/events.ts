// The event stream (EventService.WatchEvents): one subscription to the database's change
// notices per process (migrations/0004_events_audit.sql publishes them from triggers, on
// commit, for every replica), fanned out to the watchers of each organization.
//
// Who sees what (the rules of src/domain/access.ts, applied per event):
// - organization admins: every event of their organization;
// - members: runner events of the runners they may use (no policies, or a role for one of their
//   groups), every group and membership event (groups are readable by the whole organization),
//   and role-assignment events of their own groups;
// - the caller is taken as of the stream's start: a change of their role or groups applies to
//   the next stream (clients re-list and re-watch after reconnecting anyway).
// Events are notices without a cursor: a watcher that reconnects may have missed some and
// re-lists. When this process may have missed notices (its LISTEN session was lost), every
// stream ends with `unavailable`, so no watcher silently misses a change.
import { Code, ConnectError } from "@connectrpc/connect";
import { ResourceOperation, ResourceType, type WatchEventsRequest_ResourceTypeFilter } from "../../gen/gitpod/v1/event_pb.js";
import type { Database } from "../store/db/database.js";
import { EVENTS_CHANNEL, parseEvent, type EventStore, type StoredEvent } from "../store/event-store.js";
import { isOrganizationAdmin, mayUseRunner } from "./access.js";
import type { UserCaller } from "./caller.js";

/** One notice as WatchEventsResponse carries it. */
export interface ChangeEvent {
  operation: ResourceOperation;
  resourceType: ResourceType;
  resourceId: string;
}

/** What a subscription yields: an event, or "idle" after keepaliveMs without one. */
export type WatchItem = ChangeEvent | "idle";

/** Events a slow watcher may have queued before its stream is ended. */
const MAX_QUEUED = 10_000;

/** True when the event passes the request's resource_type_filters (OR across entries). */
export function passesFilters(event: StoredEvent, filters: readonly WatchEventsRequest_ResourceTypeFilter[]): boolean {
  if (filters.length === 0) return true;
  return filters.some((filter) => {
    if (filter.resourceType !== event.resourceType) return false;
    if (filter.resourceIds.length > 0 && !filter.resourceIds.some((id) => id.toLowerCase() === event.resourceId)) return false;
    // DELETE skips the creator check; an unknown creator fails it (fail-closed).
    if (filter.creatorIds.length > 0 && event.operation !== ResourceOperation.DELETE) {
      if (event.creatorId === undefined || !filter.creatorIds.some((id) => id.toLowerCase() === event.creatorId)) return false;
    }
    return true;
  });
}

class Subscription {
  private readonly queue: ChangeEvent[] = [];
  private wake: (() => void) | undefined;
  private ended: ConnectError | "done" | undefined;

  constructor(
    readonly caller: UserCaller,
    readonly filters: readonly WatchEventsRequest_ResourceTypeFilter[],
    private readonly keepaliveMs: number,
    private readonly onClose: (subscription: Subscription) => void,
  ) {}

  push(event: ChangeEvent): void {
    if (this.ended) return;
    if (this.queue.length >= MAX_QUEUED) {
      return this.end(new ConnectError("this watcher fell too far behind: re-list, then watch again", Code.ResourceExhausted));
    }
    this.queue.push(event);
    this.wake?.();
  }

  /** Ends the stream: "done" cleanly (server shutdown), or with an error. */
  end(reason: ConnectError | "done"): void {
    this.ended ??= reason;
    this.wake?.();
  }

  /** Yields events, and "idle" after keepaliveMs of silence, until the signal aborts or the subscription ends. */
  async *items(signal: AbortSignal): AsyncGenerator<WatchItem> {
    const onAbort = () => this.end("done");
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        if (this.queue.length > 0) {
          yield this.queue.shift()!;
          continue;
        }
        if (this.ended === "done") return;
        if (this.ended) throw this.ended;
        const woke = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), this.keepaliveMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
        this.wake = undefined;
        if (!woke && this.queue.length === 0 && !this.ended) yield "idle";
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.onClose(this);
    }
  }
}

export interface EventHubOptions {
  /** An idle stream yields "idle" (a keepalive) after this long. */
  keepaliveMs: number;
  warn: (fields: object, message: string) => void;
}

export class EventHub {
  private readonly byOrganization = new Map<string, Set<Subscription>>();
  private stopListening: (() => Promise<void>) | undefined;
  private closed = false;
  /** Events delivered to watchers by this process, and notices received. */
  readonly stats = { delivered: 0, received: 0 };
  /** Delivery in arrival order, also when a member's event needs the runner's policies first. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: EventStore,
    private readonly options: EventHubOptions,
  ) {}

  async start(db: Database): Promise<void> {
    this.stopListening = await db.listen(
      EVENTS_CHANNEL,
      (payload) => {
        const event = parseEvent(payload);
        if (!event) return;
        this.stats.received++;
        this.chain = this.chain.then(() => this.dispatch(event)).catch((err: unknown) => this.options.warn({ err }, "events: delivering a change failed"));
      },
      (live) => {
        if (live) return;
        // Notices may be missed from now on: watchers must re-list rather than trust the stream.
        this.options.warn({}, "events: change notifications interrupted; ending every WatchEvents stream");
        for (const subscriptions of this.byOrganization.values()) {
          for (const s of subscriptions) s.end(new ConnectError("change notifications were interrupted: re-list, then watch again", Code.Unavailable));
        }
      },
    );
  }

  /** Streams open on this process. */
  get watchers(): number {
    let n = 0;
    for (const set of this.byOrganization.values()) n += set.size;
    return n;
  }

  subscribe(caller: UserCaller, filters: readonly WatchEventsRequest_ResourceTypeFilter[]): { items: (signal: AbortSignal) => AsyncGenerator<WatchItem> } {
    if (this.closed) throw new ConnectError("the server is shutting down", Code.Unavailable);
    const subscription = new Subscription(caller, filters, this.options.keepaliveMs, (s) => {
      const set = this.byOrganization.get(s.caller.organizationId);
      set?.delete(s);
      if (set?.size === 0) this.byOrganization.delete(s.caller.organizationId);
    });
    let set = this.byOrganization.get(caller.organizationId);
    if (!set) this.byOrganization.set(caller.organizationId, (set = new Set()));
    set.add(subscription);
    return subscription;
  }

  private async dispatch(event: StoredEvent): Promise<void> {
    const subscriptions = this.byOrganization.get(event.organizationId);
    if (!subscriptions || subscriptions.size === 0) return;
    const targets = [...subscriptions].filter((s) => passesFilters(event, s.filters));
    if (targets.length === 0) return;
    let policies: { groupId: string; role: number }[] | undefined;
    const change: ChangeEvent = { operation: event.operation, resourceType: event.resourceType, resourceId: event.resourceId };
    for (const s of targets) {
      if (!isOrganizationAdmin(s.caller)) {
        if (event.resourceType === ResourceType.RUNNER) {
          policies ??= (await this.store.runnerPolicies([event.resourceId])).get(event.resourceId) ?? [];
          if (!mayUseRunner(s.caller, { organizationId: event.organizationId, policies })) continue;
        } else if (event.resourceType === ResourceType.ROLE_ASSIGNMENT) {
          if (!event.groupId || !s.caller.groupIds.includes(event.groupId)) continue;
        }
      }
      s.push(change);
      this.stats.delivered++;
    }
  }

  /** Ends every stream cleanly (server shutdown) and stops listening. */
  async close(): Promise<void> {
    this.closed = true;
    for (const subscriptions of this.byOrganization.values()) for (const s of subscriptions) s.end("done");
    await this.stopListening?.().catch(() => {});
  }
}
