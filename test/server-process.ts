// The real server process (`node --import tsx src/main.ts`), for tests that signal or kill it.
import { spawn, type ChildProcess } from "node:child_process";
import { projectRoot } from "../src/paths.js";

/** Starts the server on a free port of 127.0.0.1 and resolves once it logged "ready". */
export function startServerProcess(env: Record<string, string>): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: projectRoot,
    env: { ...process.env, DATABASE_URL: "", PORT: "0", HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 30_000);
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
