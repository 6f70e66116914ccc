// Who is changing what, for the audit log: the RPC layer runs each call inside `auditScope`, and
// a mutating statement passes `auditSetting(table)` as one of its parameters to
// `set_config('rcp.audit', $n, true)`. The triggers of migrations/0004_events_audit.sql then write
// the audit entry in the statement's own transaction. No secrets: ids, an action name, the
// request id and (only when the operator enables it) the client address.
import { AsyncLocalStorage } from "node:async_hooks";

export interface AuditActor {
  /** The RPC, e.g. "DeleteRunner". */
  action: string;
  actorId: string | undefined;
  /** gitpod.v1.Principal number. */
  principal: number;
  requestId: string;
  /** Only when AUDIT_CLIENT_ADDRESS is enabled. */
  clientAddress: string | undefined;
  /** When the call started (the server's clock): the entry's created_at. */
  at: Date;
}

const scope = new AsyncLocalStorage<{ actor: AuditActor | undefined }>();

/** Runs `fn` as one RPC; `setActor` names the caller once it is authenticated. */
export function auditScope<T>(fn: (setActor: (actor: AuditActor) => void) => T): T {
  const store: { actor: AuditActor | undefined } = { actor: undefined };
  return scope.run(store, () => fn((actor) => (store.actor = actor)));
}

/** The current call's actor (undefined outside an RPC: the sweeper, the CLI). */
/** SQL that sets rcp.audit from parameter `$n` for the rest of the statement's transaction (true). */
export const setAudit = (n: number) => `(SELECT set_config('rcp.audit', $${n}::text, true)) IS NOT NULL`;

export function currentAuditActor(): AuditActor | undefined {
  return scope.getStore()?.actor;
}

function entry(actor: AuditActor) {
  return {
    a: actor.action,
    i: actor.actorId ?? "",
    p: actor.principal,
    r: actor.requestId,
    ...(actor.clientAddress !== undefined ? { c: actor.clientAddress } : {}),
    at: actor.at.toISOString(),
  };
}

/** The rcp.audit value for a statement that changes rows of `table` for the current call ("" = none). */
export function auditSetting(table: string, actor: AuditActor | undefined = currentAuditActor()): string {
  return actor ? JSON.stringify({ t: table, ...entry(actor) }) : "";
}

/** The rcp.audit value for a batched statement: one actor per resource id. */
export function batchAuditSetting(table: string, rows: { id: string; actor: AuditActor | undefined }[]): string {
  const byId: Record<string, ReturnType<typeof entry>> = {};
  for (const row of rows) if (row.actor) byId[row.id] = entry(row.actor);
  return Object.keys(byId).length > 0 ? JSON.stringify({ t: table, rows: byId }) : "";
}
