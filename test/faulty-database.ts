// A real database wrapped so a test can make it unreachable, slow or broken.
import type { Database, Queryable, QueryResult, Statement } from "../src/store/db/database.js";

/** Wraps a real database and can pretend to be down, slow or broken. */
export class FaultyDatabase implements Database {
  mode: "ok" | "down" | "broken" = "ok";
  delayMs = 0;
  constructor(private readonly inner: Database) {}
  get kind() {
    return this.inner.kind;
  }
  private async gate(): Promise<void> {
    if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.mode === "down") throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    if (this.mode === "broken") throw new Error('relation "secret_internal_table" does not exist');
  }
  async query<Row>(statement: Statement | string, values?: readonly unknown[]): Promise<QueryResult<Row>> {
    await this.gate();
    return this.inner.query<Row>(statement, values);
  }
  async exec(script: string): Promise<void> {
    await this.gate();
    return this.inner.exec(script);
  }
  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    await this.gate();
    return this.inner.transaction(fn);
  }
  withConnection<T>(fn: (conn: Queryable) => Promise<T>): Promise<T> {
    return this.inner.withConnection(fn);
  }
  listen(channel: string, onNotify: (payload: string) => void, onState: (connected: boolean) => void) {
    return this.inner.listen(channel, onNotify, onState);
  }
  poolStats() {
    return this.inner.poolStats();
  }
  close() {
    return this.inner.close();
  }
}
