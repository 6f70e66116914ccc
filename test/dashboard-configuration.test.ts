// The runner detail page's configuration sections (web/src/runner-configuration.tsx) in Chromium,
// against the real server: an SCM integration added with the API's field errors at the field,
// a host token stored whose value never reaches the page again, environment classes shown live
// and switched, and the integration deleted after a confirmation (its token with it, live).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, ConsoleMessage, Page } from "playwright-core";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";
import { buildDashboard, launchChromium } from "./browser.js";
import { projectRoot } from "../src/paths.js";

// Names that exist in the page, where the functions given to page.evaluate run (this file is typed for Node).
declare const document: any;

const SECRET = "glpat-dashboard-test-0123456789abcdef";
const HOST = "git.example.com";
const SHOTS = join(projectRoot, "test-results", "dashboard");

let server: TestServer;
let user: TestUser;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let runnerId: string;
const problems: string[] = [];

beforeAll(async () => {
  buildDashboard();
  server = await startServer();
  user = await server.newUser();
  const { runner } = await server.runners("connect-json", user.apiKey).createRunner({ name: "config runner", provider: RunnerProvider.DESKTOP_MAC });
  runnerId = runner!.runnerId;
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("console", (message: ConsoleMessage) => {
    if (message.type() === "error" || message.type() === "warning") problems.push(`${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
}, 120_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await server?.close();
});

describe("the runner detail page's configuration sections in Chromium", () => {
  const configuration = () => server.configuration("connect-json", user.apiKey);
  const scm = () => page.locator("#scm-integrations");
  const tokens = () => page.locator("#host-tokens");
  const classes = () => page.locator("#environment-classes");
  const described = (locator: ReturnType<Page["locator"]>) =>
    locator.evaluate((el) => el.getAttribute("aria-describedby")!.split(" ").map((id: string) => document.getElementById(id)!.textContent).join(" "));

  it("adds an SCM integration, with the API's error at the host field first", async () => {
    await page.goto(server.baseUrl);
    await page.getByLabel("API key").fill(user.apiKey);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Runners", level: 1 }).waitFor();
    await page.getByRole("link", { name: "config runner", exact: true }).click();
    await page.getByRole("heading", { name: "config runner", level: 1 }).waitFor();

    const form = scm().getByRole("form", { name: "Add an SCM integration" });
    await form.getByLabel("Host").fill("https://git.example.com/team");
    await form.getByLabel("SCM").fill("gitlab");
    await form.getByRole("button", { name: "Add integration" }).click();
    const host = form.getByLabel("Host");
    await expect.poll(() => host.getAttribute("aria-invalid")).toBe("true");
    expect(await described(host)).toContain("without scheme or path");

    await host.fill(HOST);
    await form.getByRole("button", { name: "Add integration" }).click();
    await scm().locator("tbody tr", { hasText: HOST }).getByText("personal access tokens").waitFor();
    expect(await host.inputValue()).toBe("");
    const { integrations } = await configuration().listSCMIntegrations({ filter: { runnerIds: [runnerId] } });
    expect(integrations.map((i) => [i.host, i.scmId, i.pat])).toEqual([[HOST, "gitlab", true]]);

    // Edit: a client id without its secret is refused at the secret's field; a virtual directory is saved.
    await scm().getByRole("button", { name: `Edit ${HOST}` }).click();
    const edit = scm().getByRole("form", { name: `Edit the integration for ${HOST}` });
    await edit.getByLabel("OAuth client id").fill("client-1");
    await edit.getByRole("button", { name: "Save integration" }).click();
    const secret = edit.getByLabel("OAuth client secret");
    await expect.poll(() => secret.getAttribute("aria-invalid")).toBe("true");
    expect(await described(secret)).toContain("is required when oauth_client_id changes");
    await edit.getByLabel("OAuth client id").fill("");
    await edit.getByLabel("Virtual directory").fill("team");
    await edit.getByRole("button", { name: "Save integration" }).click();
    await scm().locator("tbody th", { hasText: `${HOST}/team` }).waitFor();
    await form.waitFor(); // the add form is back
    problems.splice(0).forEach((p) => expect(p).toMatch(/status of 400/)); // the browser's report of the two refused calls
  });

  it("stores your token for the host and shows its metadata, never its value", async () => {
    const form = tokens().getByRole("form", { name: "Store your token for a host" });
    await form.getByLabel("Token host").fill(HOST);
    await form.getByLabel("Personal access token").fill(SECRET);
    await form.getByRole("button", { name: "Store token" }).click();
    await tokens().getByText(`Token for ${HOST} stored.`).waitFor();
    const row = tokens().locator("tbody tr", { hasText: HOST });
    await row.getByText("PAT").waitFor();
    expect(await form.getByLabel("Personal access token").inputValue()).toBe("");
    // Storing again for the same host replaces it (the button says so).
    await row.getByRole("button", { name: `Replace the token for ${HOST}` }).click();
    await form.getByRole("button", { name: "Replace token" }).waitFor();

    const { tokens: stored } = await configuration().listHostAuthenticationTokens({ filter: { runnerId } });
    expect(stored.map((t) => t.host)).toEqual([HOST]);
    // Nothing on the page, in its storage or in any answer it read carries the value.
    expect(await page.content()).not.toContain(SECRET);
    expect(await page.evaluate(() => document.body.innerText)).not.toContain(SECRET);
  });

  it("shows an environment class created elsewhere live, and switches it off", async () => {
    const { id } = await configuration().createEnvironmentClass({ runnerId, displayName: "large", description: "8 cores" });
    const toggle = classes().getByRole("switch", { name: "large enabled" });
    await expect.poll(() => toggle.isChecked(), { timeout: 5_000 }).toBe(true);
    await toggle.click();
    await expect.poll(async () => (await configuration().getEnvironmentClass({ environmentClassId: id })).environmentClass?.enabled).toBe(false);
    await expect.poll(() => toggle.isChecked()).toBe(false);
    // For a look at both widths (test-results/dashboard/, not committed).
    mkdirSync(SHOTS, { recursive: true });
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.locator("#scm-integrations").screenshot({ path: join(SHOTS, `configuration-${width}.png`) });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("deletes the integration after a confirmation, and your token for its host goes with it, with no console errors", async () => {
    await scm().getByRole("button", { name: `Delete… ${HOST}` }).click();
    const dialog = page.getByRole("dialog", { name: `Delete the integration for ${HOST}?` });
    await dialog.waitFor();
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    expect((await configuration().listSCMIntegrations({ filter: { runnerIds: [runnerId] } })).integrations).toHaveLength(1);

    await scm().getByRole("button", { name: `Delete… ${HOST}` }).click();
    await dialog.getByRole("button", { name: "Delete integration" }).click();
    await scm().getByText("No SCM integrations").waitFor();
    // The implicit deletion of the token reaches this section through WatchEvents.
    await tokens().locator("tbody tr").first().waitFor({ state: "detached", timeout: 5_000 });
    expect((await configuration().listHostAuthenticationTokens({ filter: { runnerId } })).tokens).toEqual([]);
    expect(problems).toEqual([]);
  });
});
