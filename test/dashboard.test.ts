// The web dashboard (web/, served by src/http/dashboard.ts) in a real browser: Debian's Chromium
// driven by playwright-core, against the real server and a real development runner process.
// Screenshots of the list and the detail page at 1280 and 390 px go to test-results/dashboard/.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser, type BrowserContext, type ConsoleMessage, type Page } from "playwright-core";
import { Code } from "@connectrpc/connect";
import { ManualClock } from "../src/domain/clock.js";
import { projectRoot } from "../src/paths.js";
import { DASHBOARD_CSP } from "../src/http/dashboard.js";
import { RunnerPhase, RunnerReleaseChannel } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { failure, startServer, type TestServer, type TestUser } from "./harness.js";
import { RunnerProcess } from "./runner-process.js";
import { buildDashboard, launchChromium } from "./browser.js";
import { TestRunner } from "./runner-client.js";
import { TcpProxy } from "./tcp-proxy.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { IdentityStore } from "../src/store/identity-store.js";

/**
 * The page compares the server's timestamps with the browser's clock ("heartbeat 2 s ago"), and a
 * real runner process heartbeats in real time: this server's clock is the wall clock.
 */
class WallClock extends ManualClock {
  override now(): Date {
    return new Date();
  }
}

// Names that exist in the page, where the functions given to page.evaluate run (this file is typed for Node).
declare const document: any, sessionStorage: any, localStorage: any, navigator: any;

const LIVENESS_WINDOW_SECONDS = 3;
const SHOTS = join(projectRoot, "test-results", "dashboard");

let server: TestServer;
let user: TestUser;
let browser: Browser;
const runners: RunnerProcess[] = [];
const stateDirs: string[] = [];

beforeAll(async () => {
  buildDashboard();
  // PUBLIC_URL: the server issues logs tokens (the detail page's Logs section).
  server = await startServer({ env: { RUNNER_LIVENESS_WINDOW_SECONDS: String(LIVENESS_WINDOW_SECONDS), PUBLIC_URL: "http://127.0.0.1" }, clock: new WallClock() });
  user = await server.newUser();
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  for (const runner of runners) await runner.kill();
  await browser?.close();
  await server?.close();
  for (const dir of stateDirs) rmSync(dir, { recursive: true, force: true });
});

describe("serving the dashboard", () => {
  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.baseUrl}${path}`, { headers });

  it("serves index.html at / and at the app's page paths, revalidated on every load, with a CSP of 'self' only", async () => {
    for (const path of ["/", "/runners", "/runners/0b3c8f5e-6d1a-4c1e-9a57-1d0f2b9e7c11"]) {
      const response = await get(path);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(response.headers.get("cache-control")).toBe("no-cache");
      expect(response.headers.get("content-security-policy")).toBe(DASHBOARD_CSP);
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(await response.text()).toContain('<div id="root"></div>');
    }
    // Nothing but 'self' (and 'none') in any directive: no inline code, no other origin.
    const sources = DASHBOARD_CSP.split(";").flatMap((directive) => directive.trim().split(/\s+/).slice(1));
    expect(new Set(sources)).toEqual(new Set(["'self'", "'none'"]));
    const etag = (await get("/")).headers.get("etag")!;
    expect(etag).toMatch(/^".+"$/);
    const again = await get("/", { "if-none-match": etag });
    expect(again.status).toBe(304);
  });

  it("serves the hashed assets as immutable for a year, compressed when asked", async () => {
    const html = await (await get("/")).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.some((a) => a.endsWith(".js"))).toBe(true);
    expect(assets.some((a) => a.endsWith(".css"))).toBe(true);
    for (const asset of assets) {
      expect(asset).toMatch(/-[\w-]{8}\.(js|css)$/); // a content hash in the name
      const response = await get(asset, { "accept-encoding": "gzip" });
      expect(response.status).toBe(200);
      expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(response.headers.get("content-encoding")).toBe("gzip");
      expect(response.headers.get("content-security-policy")).toBe(DASHBOARD_CSP);
    }
    expect((await get("/assets/nothing-here.js")).status).toBe(404);
  });

  it("leaves the API paths as they were, and tells the app the liveness window", async () => {
    const list = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/ListRunners`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${user.apiKey}` },
      body: "{}",
    });
    expect(list.status).toBe(200);
    expect(list.headers.get("content-security-policy")).toBeNull();
    expect((await get("/healthz")).status).toBe(200);
    expect(await (await get("/dashboard.json")).json()).toEqual({ livenessWindowSeconds: LIVENESS_WINDOW_SECONDS, heartbeatSeconds: 30, exchangeTokenTtlSeconds: 86_400 });
  });
});

describe("the dashboard in Chromium", () => {
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];
  let loads = 0;

  beforeAll(async () => {
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.baseUrl });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on("console", (message: ConsoleMessage) => {
      if (message.type() === "error" || message.type() === "warning") problems.push(`${message.type()}: ${message.text()}`);
    });
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("load", () => loads++);
  });
  afterAll(() => context?.close());

  const shot = async (name: string, width: number) => {
    await page.setViewportSize({ width, height: width < 500 ? 844 : 900 });
    await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
  };
  /** The console problems so far are all expected ones (the browser reports refused calls); clears them. */
  const expectOnly = (expected: RegExp) => {
    const unexpected = problems.splice(0).filter((p) => !expected.test(p));
    expect(unexpected).toEqual([]);
  };
  const row = (name: string) => page.locator("table.runners tbody tr", { has: page.getByRole("link", { name, exact: true }) });

  it("refuses an invalid key with a clear message, and signs in with a valid one using the keyboard alone", async () => {
    await page.goto(server.baseUrl);
    const key = page.getByLabel("API key");
    await expect.poll(() => key.evaluate((el) => el === document.activeElement)).toBe(true);
    await page.keyboard.type("rcpk_notARealKey000000000000000000000000000000000000");
    await page.keyboard.press("Enter");
    await page.getByText("This API key was not accepted: it is unknown, revoked or mistyped.").waitFor();
    // The browser reports the 401 on its console: that one was expected.
    expectOnly(/status of 401/);

    await key.fill("");
    await key.focus();
    await page.keyboard.type(user.apiKey);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Runners", level: 1 }).waitFor();
    // The WatchEvents stream is open.
    await page.locator(".live", { hasText: /^Live$/ }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("rcp.apiKey"))).toBe(user.apiKey);
    expect(page.url()).not.toContain(user.apiKey);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
  });

  it("shows the API's validation messages at the fields", async () => {
    await page.getByRole("button", { name: "Create runner" }).click();
    const form = page.locator("#create-runner");
    await form.getByLabel("Name").fill("ab");
    await form.getByLabel("Start hour").fill("5");
    await form.getByLabel("End hour").fill("6");
    await form.getByRole("button", { name: "Create runner" }).click();
    // The name's error is tied to the name's input (aria-describedby), in the API's words.
    const name = form.getByLabel("Name");
    await expect.poll(() => name.getAttribute("aria-invalid")).toBe("true");
    const nameError = await name.evaluate((el) => el.getAttribute("aria-describedby")!.split(" ").map((id: string) => document.getElementById(id)!.textContent).join(" "));
    expect(nameError).toContain("must be at least 3 characters");
    // protovalidate reports the first violation: the name. Fix it, and the window's rule answers.
    await name.fill("laptop runner");
    await form.getByRole("button", { name: "Create runner" }).click();
    await form.locator(".field-error", { hasText: "must be at least 2 hours long (overnight windows such as 22..4 are allowed)" }).waitFor();
    expect(await form.getByLabel("Name").getAttribute("aria-invalid")).toBeNull();
    expectOnly(/status of 400/); // the browser's report of the two invalid_argument answers
  });

  let runnerId: string;
  let command: string;

  it("creates a runner and shows its exchange token once, with a copy button, its expiry and the command", async () => {
    const form = page.locator("#create-runner");
    await form.getByLabel("Start hour").fill("22");
    await form.getByLabel("End hour").fill("4");
    await form.getByLabel("Region").fill("eu-central-1");
    await form.getByRole("button", { name: "Create runner" }).click();
    const token = page.getByLabel("Exchange token", { exact: true });
    await token.waitFor();
    const value = await token.inputValue();
    expect(value).toMatch(/^rcpx_\w{49}$/);
    await page.getByRole("button", { name: "Copy exchange token" }).click();
    await page.getByText("Exchange token copied to the clipboard.").waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(value);
    await expect.poll(() => page.locator(".token-panel time").getAttribute("datetime")).toMatch(/^\d{4}-/);
    const expires = new Date((await page.locator(".token-panel time").getAttribute("datetime"))!);
    expect(Math.abs(expires.getTime() - (Date.now() + 86_400_000))).toBeLessThan(60_000);

    command = await page.getByLabel("Command", { exact: true }).inputValue();
    runnerId = /--state-dir runner-state\/([\w-]+)/.exec(command)![1]!;
    expect(command).toBe(`npm run --silent runner -- --url ${server.baseUrl} --state-dir runner-state/${runnerId} --exchange-token ${value} --log-format plain`);
    const { runner } = await server.runners("connect-json", user.apiKey).getRunner({ runnerId });
    expect(runner!.name).toBe("laptop runner");
    expect(runner!.spec!.configuration!.updateWindow).toMatchObject({ startHour: 22, endHour: 4 });

    await page.getByRole("button", { name: "Done, hide the token" }).click();
    expect(await page.getByLabel("Exchange token", { exact: true }).count()).toBe(0);
    await row("laptop runner").getByText("never signed up").waitFor();
  });

  let process: RunnerProcess;

  it("turns the row ACTIVE live when the development runner starts with the shown command, and INACTIVE when it stops", async () => {
    // Some company for the screenshots: a silent runner and a degraded one.
    await TestRunner.register(server, user.apiKey, { name: "build-box (silent)" });
    const degraded = await TestRunner.register(server, user.apiKey, { name: "gpu-pool" });
    const degradedClient = degraded.client(server.transport("connect-json", degraded.accessToken));
    await degradedClient.updateRunnerStatus({ runnerId: degraded.runnerId, version: "2.4.1", region: "us-west-2", degredationMessage: "disk 97 % full" });
    const heartbeats = setInterval(() => void degradedClient.markRunnerActive({ runnerId: degraded.runnerId }).catch(() => {}), 1_000);
    afterAll(() => clearInterval(heartbeats));

    const loadsBefore = loads;
    // The command as shown, after `npm run --silent runner --`: its own state directory, JSON logs
    // for the test, and heartbeats faster than the test's short window.
    const args = command.split(" ").slice(command.split(" ").indexOf("--") + 1);
    const stateDir = mkdtempSync(join(tmpdir(), "rcp-dashboard-runner-"));
    stateDirs.push(stateDir);
    args[args.indexOf("--state-dir") + 1] = join(stateDir, "state");
    args[args.indexOf("--log-format") + 1] = "json";
    process = new RunnerProcess([...args, "--heartbeat-seconds", "1"]);
    runners.push(process);
    await process.waitFor("signed up");

    await row("laptop runner").locator(".badge", { hasText: "active" }).waitFor({ timeout: 10_000 });
    await expect.poll(() => row("laptop runner").locator(".reason").textContent()).toMatch(/^heartbeat \d+ s ago, the window is 3 s$/);
    await row("gpu-pool").getByText("disk 97 % full").waitFor();
    await row("build-box (silent)").locator(".badge", { hasText: "inactive" }).waitFor({ timeout: 10_000 });
    await expect.poll(() => row("build-box (silent)").locator(".reason").textContent()).toMatch(/^since \d\d:\d\d, 1 heartbeat missed \(last \d+ s ago, the window is 3 s\)$/);
    expect(loads).toBe(loadsBefore); // no reload
    await shot("list", 1280);
    await shot("list", 390);
    await page.setViewportSize({ width: 1280, height: 900 });

    await row("laptop runner").getByRole("link", { name: "laptop runner" }).click();
    await page.getByRole("heading", { name: "laptop runner", level: 1 }).waitFor();
    expect(page.url()).toBe(`${server.baseUrl}/runners/${runnerId}`);
    await page.locator(".page-head .badge", { hasText: "active" }).waitFor();
    await page.locator("#status").getByText("eu-central-1").or(page.locator("#spec").getByText("eu-central-1")).first().waitFor();
    await page.locator("#spec").getByText("22:00 → 4:00").waitFor();
    await shot("detail", 1280);
    await shot("detail", 390);
    await page.setViewportSize({ width: 1280, height: 900 });

    expect(await process.stop()).toBe(0);
    await page.locator(".page-head .badge", { hasText: "inactive" }).waitFor({ timeout: 10_000 });
    expect(loads).toBe(loadsBefore);
  });

  it("edits the name, release channel and update window, with the window's rule at the field", async () => {
    const edit = page.locator("#edit");
    await edit.getByLabel("Start hour").fill("3");
    await edit.getByLabel("End hour").fill("4");
    await edit.getByRole("button", { name: "Save changes" }).click();
    await edit.locator(".field-error", { hasText: "must be at least 2 hours long" }).waitFor();
    expectOnly(/status of 400/);

    await edit.getByLabel("Name").fill("laptop runner 2");
    await edit.getByLabel("Release channel").selectOption({ label: "Latest" });
    await edit.getByLabel("Start hour").fill("1");
    await edit.getByLabel("End hour").fill("");
    await edit.getByRole("button", { name: "Save changes" }).click();
    await edit.getByText("Saved.").waitFor();
    await page.getByRole("heading", { name: "laptop runner 2", level: 1 }).waitFor();
    const { runner } = await server.runners("connect-json", user.apiKey).getRunner({ runnerId });
    expect(runner!.name).toBe("laptop runner 2");
    expect(runner!.spec!.configuration!.releaseChannel).toBe(RunnerReleaseChannel.LATEST);
    expect(runner!.spec!.configuration!.updateWindow).toMatchObject({ startHour: 1, endHour: 3 });
    expect(runner!.status!.phase).toBe(RunnerPhase.INACTIVE);
  });

  it("makes a new exchange token on the detail page", async () => {
    await page.getByRole("button", { name: "New exchange token" }).click();
    expect(await page.getByLabel("Exchange token", { exact: true }).inputValue()).toMatch(/^rcpx_/);
    await page.getByRole("button", { name: "Done, hide the token" }).click();
  });

  it("gives a one-hour logs token for this runner on the detail page", async () => {
    await page.getByRole("button", { name: "New logs token" }).click();
    const token = await page.getByLabel("Logs token", { exact: true }).inputValue();
    const [, payload] = token.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString()) as { runner_id: string; exp: number; iat: number; scope: string };
    expect(claims.scope).toBe("logs");
    expect(claims.runner_id).toBe(new URL(page.url()).pathname.split("/").pop());
    expect(claims.exp - claims.iat).toBe(3600);
    await page.getByRole("button", { name: "Done" }).click();
  });

  it("labels every control", async () => {
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select, textarea, button")]
        .filter((el: any) => !(el.labels?.length || el.getAttribute("aria-label") || (el.tagName === "BUTTON" && el.textContent?.trim())))
        .map((el: any) => String(el.outerHTML).slice(0, 80)),
    );
    expect(unlabelled).toEqual([]);
  });

  it("deletes the runner after a confirmation that Escape cancels", async () => {
    await page.getByRole("button", { name: "Delete runner…" }).click();
    const dialog = page.getByRole("dialog", { name: "Delete laptop runner 2?" });
    await dialog.waitFor();
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    expect((await server.runners("connect-json", user.apiKey).getRunner({ runnerId })).runner?.runnerId).toBe(runnerId);

    await page.getByRole("button", { name: "Delete runner…" }).click();
    await dialog.getByRole("button", { name: "Delete runner" }).click();
    await page.getByRole("heading", { name: "Runners", level: 1 }).waitFor().catch(async (err) => {
      await page.screenshot({ path: join(SHOTS, "failed-delete.png") });
      throw err;
    });
    await row("gpu-pool").waitFor();
    expect(await row("laptop runner 2").count()).toBe(0);
    expect((await failure(server.runners("connect-json", user.apiKey).getRunner({ runnerId }))).code).toBe(Code.NotFound);
  });

  it("shows a runner created elsewhere without a reload, and wrote no errors to the console", async () => {
    const loadsBefore = loads;
    await server.runners("connect-json", user.apiKey).createRunner({ name: "made by the API", provider: RunnerProvider.GCP });
    await row("made by the API").waitFor({ timeout: 5_000 });
    expect(loads).toBe(loadsBefore);

    // Filters (provider by the API, phase on the page) and sorting.
    const names = () => page.locator("table.runners tbody tr td:first-child a").allTextContents();
    await page.locator(".filters").getByLabel("Provider", { exact: true }).selectOption({ label: "GCP" });
    await expect.poll(names).toEqual(["made by the API"]);
    await page.locator(".filters").getByLabel("Provider", { exact: true }).selectOption({ label: "All providers" });
    await page.locator(".filters").getByLabel("Phase", { exact: true }).selectOption({ label: "Degraded" });
    await expect.poll(names).toEqual(["gpu-pool"]);
    await page.locator(".filters").getByLabel("Phase", { exact: true }).selectOption({ label: "All phases" });
    await page.locator(".filters").getByLabel("Sort by", { exact: true }).selectOption({ label: "Name, ascending" });
    await expect.poll(names).toEqual(["build-box (silent)", "gpu-pool", "Local configuration", "made by the API"]);

    // Paging with the API's page tokens: 4 + 8 runners, 10 a page.
    for (let i = 1; i <= 8; i++) await server.runners("connect-json", user.apiKey).createRunner({ name: `batch ${i}`, provider: RunnerProvider.GCP });
    await page.locator(".filters").getByLabel("Per page", { exact: true }).selectOption("10");
    await expect.poll(async () => (await names()).length).toBe(10);
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator(".pager").getByText("Page 2", { exact: true }).waitFor();
    await expect.poll(async () => (await names()).length).toBe(2);
    expect(await page.getByRole("button", { name: "Next page" }).isDisabled()).toBe(true);
    await page.getByRole("button", { name: "Previous page" }).click();
    await expect.poll(async () => (await names()).length).toBe(10);
    expect(problems).toEqual([]);
  });
});

describe("live updates when the connection drops", () => {
  let context: BrowserContext;
  let proxy: TcpProxy;
  let origin: string;

  beforeAll(async () => {
    proxy = new TcpProxy({ host: "127.0.0.1", port: server.port });
    origin = TcpProxy.via(server.baseUrl, await proxy.start()).replace(/\/$/, "");
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // Signed in already: the key in this tab's session storage, as the sign-in form leaves it.
    await context.addInitScript((key: string) => sessionStorage.setItem("rcp.apiKey", key), user.apiKey);
  });
  afterAll(async () => {
    await context?.close();
    await proxy?.close();
  });

  it("says it is reconnecting, reconnects, and re-lists what changed while it was away", async () => {
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(origin);
    await page.locator(".live", { hasText: /^Live$/ }).waitFor();

    proxy.cut();
    await page.locator(".live", { hasText: "Reconnecting…" }).waitFor();
    // A change the stream cannot bring: it happens while the page is cut off.
    await server.runners("connect-json", user.apiKey).createRunner({ name: "made while away", provider: RunnerProvider.GCP });
    proxy.restore();
    await page.locator(".live", { hasText: /^Live$/ }).waitFor();
    await page.locator("table.runners tbody tr", { has: page.getByRole("link", { name: "made while away", exact: true }) }).waitFor();
  });
});

describe("a key revoked while the page is open", () => {
  it("goes back to sign-in with the reason, and forgets the key", async () => {
    const identities = new IdentityStore(server.db);
    const issued = await issueApiKey(identities, server.clock, { organizationSlug: user.organizationSlug, userEmail: "soon-revoked@example.com" });
    const context = await browser.newContext();
    try {
      await context.addInitScript((key: string) => sessionStorage.setItem("rcp.apiKey", key), issued.apiKey);
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      await page.goto(server.baseUrl);
      await page.locator(".live", { hasText: /^Live$/ }).waitFor();
      await identities.revokeApiKey(issued.id, server.clock.now());
      // The next read (here: after an event) is refused.
      await server.runners("connect-json", user.apiKey).createRunner({ name: "after the revocation", provider: RunnerProvider.GCP });
      await page.getByText("The server no longer accepts this API key: it was revoked or has expired.").waitFor();
      await page.getByLabel("API key").waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem("rcp.apiKey"))).toBeNull();
    } finally {
      await context.close();
    }
  });
});
