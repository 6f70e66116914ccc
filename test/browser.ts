// The browser tests' shared pieces: the dashboard built from the sources under test, and Debian's
// Chromium driven by playwright-core (.ci/run installs it).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { projectRoot } from "../src/paths.js";

/** Debian's chromium (CHROMIUM_PATH overrides); .ci/run installs it. */
export function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no Chromium at ${candidates.join(", ")}: apt-get install chromium (see .ci/run), or set CHROMIUM_PATH`);
  return found;
}

/** The dashboard as `npm run build` makes it, from the sources under test. */
export function buildDashboard(): void {
  execFileSync(process.execPath, [join(projectRoot, "node_modules", "vite", "bin", "vite.js"), "build", "--config", "web/vite.config.ts"], {
    cwd: projectRoot,
    stdio: "pipe",
  });
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}
