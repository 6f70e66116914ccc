// Remembers which credential hash belongs to which caller, so that a heartbeat or a read
// does not cost an extra database round trip for authentication.
//
// Revocation stays immediate: revoking an API key or deleting a runner publishes a
// notification in the same SQL statement (NOTIFY is delivered on commit) that every
// replica applies; the replica that made the change also evicts at once. A cached user
// caller also carries the user's organization role and groups (src/domain/access.ts
// decides with them): changing a role or a membership, or deleting a group, evicts the
// callers concerned the same way. While the
// notification session is down nothing is cached, since revocations could be missed.
// A lookup that started before an invalidation is not cached (the epoch check), so a
// concurrent revoke cannot be undone by a slow read.
import { parseRevocation, type Revocation } from "../store/credential-revocations.js";
import type { Caller } from "./caller.js";

interface Entry {
  caller: Caller;
  apiKeyId: string | undefined;
  expiresAt: number;
}

function matches(entry: Entry, revocation: Revocation): boolean {
  const { caller } = entry;
  if ("apiKeyId" in revocation) return entry.apiKeyId === revocation.apiKeyId;
  if ("runnerId" in revocation) return caller.kind === "runner" && caller.runnerId === revocation.runnerId;
  if ("userId" in revocation) return caller.kind === "user" && caller.userId === revocation.userId;
  return caller.kind === "user" && caller.groupIds.includes(revocation.groupId);
}

export class CredentialCache {
  private readonly entries = new Map<string, Entry>();
  private epoch = 0;
  private live = false;

  constructor(
    private readonly options: { ttlMs: number; capacity: number; now?: () => number },
  ) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** Current invalidation epoch; pass it back to `set` with the result of a lookup. */
  currentEpoch(): number {
    return this.epoch;
  }

  get(key: string): Caller | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.caller;
  }

  set(key: string, caller: Caller, apiKeyId: string | undefined, epochAtLookup: number): void {
    if (!this.live || epochAtLookup !== this.epoch || this.options.capacity === 0) return;
    if (this.entries.size >= this.options.capacity) {
      // Map iteration order is insertion order: drop the oldest entry.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { caller, apiKeyId, expiresAt: this.now() + this.options.ttlMs });
  }

  revoke(revocation: Revocation): void {
    this.epoch++;
    for (const [key, entry] of this.entries) {
      if (matches(entry, revocation)) this.entries.delete(key);
    }
  }

  /** Applies a notification payload from another replica (or this one). */
  onNotification(payload: string): void {
    const revocation = parseRevocation(payload);
    if (revocation) this.revoke(revocation);
    else this.clear(); // unknown payload: be safe
  }

  /** Notifications flow (true) or may have been missed (false: forget everything, cache nothing). */
  setLive(live: boolean): void {
    this.live = live;
    if (!live) this.clear();
  }

  private clear(): void {
    this.epoch++;
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
