// Real child processes of the project's entry points (src/cli.ts, src/main.ts) run with tsx.
import { spawn, type ChildProcess } from "node:child_process";
import { projectRoot } from "../src/paths.js";
import { openConfiguredDatabase } from "../src/store/db/database.js";
import { migrate } from "../src/store/db/migrate.js";

/** An embedded database in dataDir with the schema applied (the CLI's commands other than migrate do not migrate). */
export async function migrateDataDir(dataDir: string): Promise<string> {
  const db = await openConfiguredDatabase({ databaseUrl: undefined, dataDir }, 1);
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
  return dataDir;
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx <args>` in the project root to the end; DATABASE_URL is unset unless `env` sets it. */
export function runNode(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", ...args], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** Everything it wrote to stdout and stderr so far. */
  output: () => string;
}

/** Starts `src/main.ts` on 127.0.0.1 and a free port; resolves once it logged "ready". */
export function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: projectRoot,
    env: { ...process.env, DATABASE_URL: "", PORT: "0", HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  return new Promise((resolve, reject) => {
    // Generous: on a loaded machine tsx, PGlite and the migrations take many seconds.
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60_000);
    const check = () => {
      const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match && output.includes('"msg":"ready"')) {
        clearTimeout(timer);
        child.stdout!.off("data", check);
        resolve({ child, port: Number(match[1]), output: () => output });
      }
    };
    child.stdout!.on("data", check);
    child.on("exit", (code) => reject(new Error(`server exited with ${code} before it was ready:\n${output}`)));
  });
}
