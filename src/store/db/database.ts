// One small interface over the two PostgreSQL back ends we support: a `pg` pool against a
// real server, and the embedded PGlite (PostgreSQL compiled to WASM) for zero-setup runs.
// Both execute the same SQL; stores never see which one they talk to.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { NotificationSession } from "./notifications.js";
import { acquireEmbeddedLock, type EmbeddedLock } from "./embedded-lock.js";
import { parseTimestamptz, TIMESTAMPTZ_OID } from "./timestamptz.js";
import type { PGlite } from "@electric-sql/pglite";

/** A SQL statement with a stable name, so the pg driver prepares it once per connection. */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface Queryable {
  query<Row = Record<string, unknown>>(statement: Statement | string, values?: readonly unknown[]): Promise<QueryResult<Row>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: "postgres" | "embedded";
  /** Runs fn inside BEGIN/COMMIT on one connection; rolls back when fn throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Runs fn on one dedicated connection (for session-level advisory locks). `unbounded`: its
   * statements may run longer than the query timeout (migrations, which also wait for each other).
   */
  withConnection<T>(fn: (conn: Queryable) => Promise<T>, options?: { unbounded?: boolean }): Promise<T>;
  /**
   * Subscribes to NOTIFY on `channel` over the process's one notification session (shared by every
   * channel; src/store/db/notifications.ts). `onState(false)` reports that
   * notifications may have been missed (connection lost); `onState(true)` that they flow
   * again. Returns a function that stops listening.
   */
  listen(channel: string, onNotify: (payload: string) => void, onState: (connected: boolean) => void): Promise<() => Promise<void>>;
  /** Pool counters for readiness and metrics. */
  poolStats(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

/** Declares a named statement; keeps SQL and its prepared-statement name side by side. */
export function sql(name: string, text: string): Statement {
  return { name, text };
}

// Timestamps, uuids and bytea parse the same in both drivers; bigint (int8) would not,
// so our SQL never returns one.

/** pg's type parsers, with a faster reader of timestamptz text (src/store/db/timestamptz.ts). */
const typeParser = ((oid: number, format?: "text" | "binary") =>
  oid === TIMESTAMPTZ_OID && format !== "binary" ? parseTimestamptz : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser;

/** Default of DATABASE_QUERY_TIMEOUT_MS. */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;
/** Time to open a connection (TCP and PostgreSQL's startup) before it counts as unreachable. */
const CONNECT_TIMEOUT_MS = 3_000;
/** TCP keepalive probes start after this much silence (the kernel's interval and count follow). */
const KEEPALIVE_DELAY_MS = 10_000;

// A network partition that leaves connections open but silent (no reset, no FIN) is bounded by
// timeouts rather than by TCP, which would wait many minutes: every statement has a client-side
// query timeout (the connection is then discarded, so the next call gets a fresh one) and the
// same server-side statement_timeout (so PostgreSQL stops work nobody waits for); new
// connections have the connect timeout; the notification sessions send a heartbeat. TCP
// keepalive finds dead idle connections in the background. docs/operations.md has the figures.
class PostgresDatabase implements Database {
  readonly kind = "postgres" as const;
  private readonly pool: pg.Pool;
  private readonly poolQueryable: Queryable;
  /** One LISTEN session for every channel (src/store/db/notifications.ts). */
  private readonly notifications: NotificationSession;

  constructor(
    connectionString: string,
    poolSize: number,
    private readonly queryTimeoutMs: number,
  ) {
    this.pool = new pg.Pool({
      connectionString,
      max: poolSize,
      // Fail fast while the database is unreachable instead of queueing requests for long.
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
      ...(queryTimeoutMs > 0 ? { statement_timeout: queryTimeoutMs } : {}),
      application_name: "runner-control-plane",
      types: { getTypeParser: typeParser },
    });
    // An idle client that loses its connection emits 'error' on the pool; without a listener
    // Node would crash the process. The pool drops the client and a later query reconnects.
    this.pool.on("error", () => {});
    this.poolQueryable = pgQueryable(this.pool, queryTimeoutMs);
    this.notifications = new NotificationSession({
      connectionString,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      keepAliveDelayMs: KEEPALIVE_DELAY_MS,
      heartbeatMs: queryTimeoutMs > 0 ? Math.min(HEARTBEAT_MS, queryTimeoutMs) : HEARTBEAT_MS,
    });
  }

  query<Row>(statement: Statement | string, values?: readonly unknown[]): Promise<QueryResult<Row>> {
    return this.poolQueryable.query<Row>(statement, values);
  }

  exec(script: string): Promise<void> {
    return this.poolQueryable.exec(script);
  }

  async withConnection<T>(fn: (conn: Queryable) => Promise<T>, options: { unbounded?: boolean } = {}): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      if (!options.unbounded) return await fn(pgQueryable(client, this.queryTimeoutMs));
      await client.query("SET statement_timeout = 0");
      const result = await fn(pgQueryable(client, 0));
      await client.query("RESET statement_timeout"); // back to the pool's setting
      return result;
    } catch (err) {
      // Also when unbounded: the session may still have statement_timeout = 0.
      broken = isConnectionError(err) || options.unbounded ? (err as Error) : undefined;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.withConnection(async (conn) => {
      await conn.query("BEGIN");
      try {
        const result = await fn(conn);
        await conn.query("COMMIT");
        return result;
      } catch (err) {
        // A broken connection is discarded (PostgreSQL rolls back when the session ends);
        // a ROLLBACK on it would only wait for another timeout.
        if (!isConnectionError(err)) await conn.query("ROLLBACK").catch(() => {});
        throw err;
      }
    });
  }

  listen(channel: string, onNotify: (payload: string) => void, onState: (connected: boolean) => void) {
    return this.notifications.listen(channel, onNotify, onState);
  }

  poolStats() {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

/** How often a notification session proves it is alive (at most; shorter with a shorter query timeout). */
const HEARTBEAT_MS = 5_000;

/** The same statement handling for the pool and for one checked-out client; `timeoutMs` 0 = none. */
function pgQueryable(target: pg.Pool | pg.PoolClient, timeoutMs: number): Queryable {
  const timeout = timeoutMs > 0 ? { query_timeout: timeoutMs } : {};
  return {
    async query<Row>(statement: Statement | string, values?: readonly unknown[]) {
      const config = typeof statement === "string" ? { text: statement } : { name: statement.name, text: statement.text };
      const result = await target.query({ ...config, ...timeout, values: values as unknown[] | undefined, rowMode: "array" });
      const rows = result.rows as unknown as unknown[][];
      if (rows.length === 0) return { rows: [], rowCount: result.rowCount ?? 0 };
      const build = rowBuilderOf(result.fields);
      const objects = new Array<Row>(rows.length);
      for (let i = 0; i < rows.length; i++) objects[i] = build(rows[i]!) as Row;
      return { rows: objects, rowCount: result.rowCount ?? 0 };
    },
    async exec(script: string) {
      await target.query({ text: script, ...timeout });
    },
  };
}

/**
 * pg builds an object row by spreading a prebuilt object of every column into a new one; with
 * the 40-odd columns of a runner that makes dictionary-mode objects, slow to build and slow to
 * read (a quarter of a ListRunners call). So rows come as arrays and become objects here,
 * through a function per result shape with the column names as constant keys: the same keys in
 * the same order, the same values (the last of duplicate names, as pg does).
 */
const rowBuilders = new Map<string, (values: unknown[]) => object>();
const MAX_ROW_SHAPES = 1_000; // the shapes are our statements'; beyond that, build without caching

function rowBuilderOf(fields: readonly pg.FieldDef[]): (values: unknown[]) => object {
  let key = "";
  for (const field of fields) key += field.name + "\u0000";
  let build = rowBuilders.get(key);
  if (build === undefined) {
    // (A computed key for "__proto__", which as a plain key would set the prototype.)
    const members = fields.map((field, i) => `${field.name === "__proto__" ? '["__proto__"]' : JSON.stringify(field.name)}: v[${i}]`).join(", ");
    build = new Function("v", `return { ${members} };`) as (values: unknown[]) => object;
    if (rowBuilders.size < MAX_ROW_SHAPES) rowBuilders.set(key, build);
  }
  return build;
}

/** PGlite and its transactions take the same calls; statement names do not apply. */
function embeddedQueryable(target: Pick<PGlite, "query" | "exec">): Queryable {
  return {
    async query<Row>(statement: Statement | string, values?: readonly unknown[]) {
      const text = typeof statement === "string" ? statement : statement.text;
      const result = await target.query<Row>(text, values as unknown[] | undefined);
      return { rows: result.rows, rowCount: embeddedRowCount(result) };
    },
    async exec(script: string) {
      await target.exec(script);
    },
  };
}

class EmbeddedDatabase implements Database {
  readonly kind = "embedded" as const;
  private inFlight = 0;

  private readonly queryable: Queryable;

  constructor(
    private readonly db: PGlite,
    private readonly lock: EmbeddedLock | undefined,
  ) {
    this.queryable = embeddedQueryable(db);
  }

  private async track<T>(work: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await work();
    } finally {
      this.inFlight--;
    }
  }

  query<Row>(statement: Statement | string, values?: readonly unknown[]): Promise<QueryResult<Row>> {
    return this.track(() => this.queryable.query<Row>(statement, values));
  }

  exec(script: string): Promise<void> {
    return this.track(() => this.queryable.exec(script));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.track(() => this.db.transaction((tx) => fn(embeddedQueryable(tx))));
  }

  // One process owns an embedded database, so notifications cannot be missed.
  async listen(channel: string, onNotify: (payload: string) => void, onState: (connected: boolean) => void) {
    const unlisten = await this.db.listen(channel, onNotify);
    onState(true);
    return async () => {
      await unlisten();
    };
  }

  // PGlite is a single in-process session: every caller already has it to itself per query.
  withConnection<T>(fn: (conn: Queryable) => Promise<T>): Promise<T> {
    return fn(this);
  }

  poolStats() {
    return { total: 1, idle: this.inFlight === 0 ? 1 : 0, waiting: Math.max(0, this.inFlight - 1) };
  }

  async close(): Promise<void> {
    try {
      await this.db.close();
    } finally {
      this.lock?.release();
    }
  }
}

// Like pg's rowCount: rows returned when there are any (SELECT, RETURNING), else rows changed.
function embeddedRowCount(result: { rows: unknown[]; affectedRows?: number }): number {
  return result.rows.length > 0 ? result.rows.length : (result.affectedRows ?? 0);
}

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  /** Directory of the embedded database; undefined keeps it in memory (tests). */
  dataDir: string | undefined;
  /** Embedded only: the directory whose lock (src/store/db/embedded-lock.ts) this process must hold first. */
  lockDir?: string;
  poolSize: number;
  /** PostgreSQL only: longest a statement may take (DATABASE_QUERY_TIMEOUT_MS); 0 = no limit. Default 10 s. */
  queryTimeoutMs?: number;
}

/** The database a configuration names: DATABASE_URL, else the embedded one in DATA_DIR/pgdata. */
export function openConfiguredDatabase(
  config: { databaseUrl: string | undefined; dataDir: string; databaseQueryTimeoutMs?: number },
  poolSize: number,
): Promise<Database> {
  return openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.databaseUrl ? undefined : join(config.dataDir, "pgdata"),
    lockDir: config.databaseUrl ? undefined : config.dataDir,
    poolSize,
    queryTimeoutMs: config.databaseQueryTimeoutMs,
  });
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) return new PostgresDatabase(options.databaseUrl, options.poolSize, options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS);
  // Before anything touches the files: throws EmbeddedDatabaseInUse when another process owns them.
  const lock = options.lockDir === undefined ? undefined : acquireEmbeddedLock(options.lockDir);
  try {
    if (options.dataDir !== undefined) mkdirSync(options.dataDir, { recursive: true });
    // Loaded only when used: a server on PostgreSQL does not carry the embedded engine's code.
    const { PGlite } = await import("@electric-sql/pglite");
    const db = options.dataDir === undefined ? new PGlite() : new PGlite(options.dataDir);
    await db.waitReady;
    return new EmbeddedDatabase(db, lock);
  } catch (err) {
    lock?.release();
    throw err;
  }
}

const unavailableSqlStates = new Set([
  "08000", "08001", "08003", "08004", "08006", "08P01", // connection exceptions
  "57P01", "57P02", "57P03", // admin/crash shutdown, cannot connect now
  "53300", // too many connections
  "57014", // query_canceled: statement_timeout (DATABASE_QUERY_TIMEOUT_MS) passed
]);
const unavailableErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"]);

/** True when the error means "the database cannot be reached right now" rather than a bug. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && (unavailableSqlStates.has(code) || unavailableErrnos.has(code))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection (is )?closed|Query read timeout/i.test(
    err.message,
  );
}
