// The README's "Runner lifecycle" walkthrough, extracted and run as it is under bash and zsh
// (macOS's default shell) against a real server: every step must work, and a failing step must
// stop the script loudly instead of feeding empty values to the next ones.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "../src/paths.js";
import { startServerProcess, type ServerProcess } from "./processes.js";

/** The first ```sh block after the heading. */
function shellBlock(heading: string): string {
  const readme = readFileSync(join(projectRoot, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf(`\n${heading}\n`));
  const match = /```sh\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error(`no sh block under ${heading}`);
  return match[1]!;
}

const shells = ["bash", "zsh"].filter((shell) => spawnSync(shell, ["-c", "true"]).status === 0);
const dataDir = mkdtempSync(join(tmpdir(), "rcp-readme-"));
let server: ServerProcess;
let apiKey: string;

beforeAll(async () => {
  server = await startServerProcess({ DATA_DIR: dataDir });
  apiKey = readFileSync(join(dataDir, "initial-api-key"), "utf8").trim();
}, 120_000);
afterAll(async () => {
  if (server) {
    const closed = new Promise((resolve) => server.child.once("close", resolve));
    server.child.kill("SIGTERM");
    await closed;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

function run(shell: string, script: string, apiKeyValue: string) {
  return spawnSync(shell, ["-c", `set -eu\n${script}\nprintf 'RUNNER_ID=%s\\n' "$RUNNER_ID"`], {
    env: { ...process.env, API: `http://127.0.0.1:${server.port}`, GITPOD_API_KEY: apiKeyValue },
    encoding: "utf8",
    timeout: 60_000,
  });
}

describe("the README walkthrough", () => {
  it("has both shells to run in", () => {
    expect(shells).toEqual(["bash", "zsh"]); // CI installs zsh (.ci/run)
  });

  it.each(shells)("runs step by step under %s", (shell) => {
    const result = run(shell, shellBlock("## Runner lifecycle"), apiKey);
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toMatch(/RUNNER_ID=[0-9a-f-]{36}\n/);
    expect(result.stdout).toContain('"version": "1.2.3"'); // step 5's GetRunner shows the reported status
  });

  it.each(shells)("stops at the first failing step under %s, saying why", (shell) => {
    const result = run(shell, shellBlock("## Runner lifecycle"), "rcpk_wrong");
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("The requested URL returned error: 401");
    expect(result.stdout).not.toContain("RUNNER_ID=");
  });
});
