// The development runner as a real child process (`node --import tsx src/runner-agent/main.ts`),
// with its JSON log lines collected, for the end-to-end tests.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../src/paths.js";
import { isolatedGitEnv } from "./git-server.js";

export interface LogLine {
  time: string;
  level: string;
  msg: string;
  [field: string]: unknown;
}

export class RunnerProcess {
  readonly lines: LogLine[] = [];
  /** stdout as written (the secrets check reads this), and stderr. */
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();

  constructor(args: string[], env: Record<string, string> = {}) {
    const home = mkdtempSync(join(tmpdir(), "rcp-runner-home-"));
    this.child = spawn(process.execPath, ["--import", "tsx", "src/runner-agent/main.ts", ...args], {
      cwd: projectRoot,
      env: { ...process.env, ...isolatedGitEnv(home), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let partial = "";
    this.child.stdout!.on("data", (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      this.stdout += text;
      partial += text;
      const complete = partial.split("\n");
      partial = complete.pop()!;
      for (const line of complete.filter(Boolean)) {
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ time: "", level: "raw", msg: line });
        }
      }
      for (const wake of this.waiters) wake();
    });
    this.child.stderr!.on("data", (chunk: Buffer) => (this.stderr += chunk.toString("utf8")));
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code) => {
        rmSync(home, { recursive: true, force: true });
        for (const wake of this.waiters) wake();
        resolve(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Log lines with this message (and these fields). */
  logged(msg: string, fields: Record<string, unknown> = {}): LogLine[] {
    return this.lines.filter((line) => line.msg === msg && Object.entries(fields).every(([key, value]) => JSON.stringify(line[key]) === JSON.stringify(value)));
  }

  /** Waits until the n-th line with this message (and fields) is logged; fails after the deadline or if the runner exits. */
  async waitFor(msg: string, fields: Record<string, unknown> = {}, n = 1, timeoutMs = 15_000): Promise<LogLine> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.logged(msg, fields);
      if (found.length >= n) return found[n - 1]!;
      if (!this.running) throw new Error(`the runner exited before logging ${JSON.stringify(msg)} ${JSON.stringify(fields)}:\n${this.stdout}\n${this.stderr}`);
      if (performance.now() > deadline) throw new Error(`the runner did not log ${JSON.stringify(msg)} ${JSON.stringify(fields)} (#${n}) within ${timeoutMs} ms:\n${this.stdout}\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, Math.max(1, deadline - performance.now()));
        function wake() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(wake);
        void this.exited.then(wake);
      }).finally(() => this.waiters.clear());
    }
  }

  /** SIGTERM; resolves with the exit code (fails if it takes longer than the deadline). */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (!this.running) return this.exited;
    this.child.kill("SIGTERM");
    return withDeadline(this.exited, timeoutMs, "the runner did not exit after SIGTERM");
  }

  /** SIGKILL: the runner dies without a word. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }
}

export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${timeoutMs} ms`)), timeoutMs)))]);
  } finally {
    clearTimeout(timer);
  }
}
