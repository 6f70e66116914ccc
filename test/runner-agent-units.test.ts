// Unit tests of the development runner's parts: every context URL form it reads, the output of
// git ls-remote and git's error messages, page tokens, the command line, sealed boxes, the
// state directory.
// (Its end-to-end tests, as a real process against the real server: test/runner-agent.test.ts.)
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import sodium from "libsodium-wrappers";
import { projectRoot } from "../src/paths.js";
import { ContextUrlError, parseContextUrl, redactUrl, type ParsedContext } from "../src/runner-agent/scm/context-url.js";
import { classify, parseLsRemote } from "../src/runner-agent/scm/git-remote.js";
import { HostMap } from "../src/runner-agent/scm/providers.js";
import { paginate } from "../src/runner-agent/scm/repos-dir.js";
import { HELP, OPTIONS, parseOptions, UsageError } from "../src/runner-agent/options.js";
import { RUNNER_VERSION } from "../src/runner-agent/version.js";
import { CallFailure, ErrorCode } from "../src/runner-agent/call-failure.js";
import { generateKeyPair, matches, openSealed } from "../src/runner-agent/sealed-box.js";
import { hashToken, StateDir, StateError } from "../src/runner-agent/state.js";
import { IDLE_GOAWAY_MESSAGE, isIdleConnectionGoaway } from "../src/runner-agent/transport.js";
import { Code, ConnectError } from "@connectrpc/connect";

const SHA = "0123456789abcdef0123456789abcdef01234567";
type Expected = Partial<Omit<ParsedContext, "target">> & { target: ParsedContext["target"] };

const FORMS: [string, Expected][] = [
  // GitHub
  ["https://github.com/gitpod-io/gitpod", { provider: "github", host: "github.com", owner: "gitpod-io", repo: "gitpod", cloneUrl: "https://github.com/gitpod-io/gitpod.git", target: { kind: "repository" } }],
  ["https://github.com/gitpod-io/gitpod.git", { repo: "gitpod", cloneUrl: "https://github.com/gitpod-io/gitpod.git", target: { kind: "repository" } }],
  ["https://github.com/gitpod-io/gitpod/", { repo: "gitpod", target: { kind: "repository" } }],
  ["http://www.github.com/gitpod-io/gitpod", { host: "github.com", cloneUrl: "https://www.github.com/gitpod-io/gitpod.git", target: { kind: "repository" } }],
  ["https://github.com/gitpod-io/gitpod/tree/main", { target: { kind: "ref", segments: ["main"] } }],
  ["https://github.com/gitpod-io/gitpod/tree/feature/x/src/lib", { target: { kind: "ref", segments: ["feature", "x", "src", "lib"] } }],
  ["https://github.com/gitpod-io/gitpod/blob/v1.0/README.md", { target: { kind: "ref", segments: ["v1.0", "README.md"] } }],
  ["https://github.com/gitpod-io/gitpod/commits/main", { target: { kind: "ref", segments: ["main"] } }],
  [`https://github.com/gitpod-io/gitpod/commit/${SHA.toUpperCase()}`, { target: { kind: "commit", sha: SHA } }],
  ["https://github.com/gitpod-io/gitpod/releases/tag/v2.0.1", { target: { kind: "tag", name: "v2.0.1" } }],
  ["https://github.com/gitpod-io/gitpod/pull/42", { target: { kind: "pull-request", number: "42" } }],
  ["https://github.com/gitpod-io/gitpod/pull/42/files", { target: { kind: "pull-request", number: "42" } }],
  ["https://github.com/gitpod-io/gitpod/issues/7", { target: { kind: "issue", number: "7" } }],
  ["https://github.com/gitpod-io/gitpod/issues", { target: { kind: "repository" } }],
  ["https://github.com/gitpod-io/gitpod/actions", { target: { kind: "repository" } }],
  ["https://github.com/gitpod-io/gitpod/tree/f%C3%BCr%20dich", { target: { kind: "ref", segments: ["für dich"] } }],
  // GitLab, with nested groups
  ["https://gitlab.com/gitlab-org/gitlab", { provider: "gitlab", owner: "gitlab-org", repo: "gitlab", cloneUrl: "https://gitlab.com/gitlab-org/gitlab.git", target: { kind: "repository" } }],
  ["https://gitlab.com/group/sub/deeper/project.git", { owner: "group/sub/deeper", repo: "project", cloneUrl: "https://gitlab.com/group/sub/deeper/project.git", target: { kind: "repository" } }],
  ["https://gitlab.com/group/sub/project/-/tree/feature/y", { owner: "group/sub", repo: "project", target: { kind: "ref", segments: ["feature", "y"] } }],
  ["https://gitlab.com/group/project/-/blob/main/doc/index.md", { target: { kind: "ref", segments: ["main", "doc", "index.md"] } }],
  [`https://gitlab.com/group/project/-/commit/${SHA}`, { target: { kind: "commit", sha: SHA } }],
  ["https://gitlab.com/group/project/-/tags/v1.2", { target: { kind: "tag", name: "v1.2" } }],
  ["https://gitlab.com/group/project/-/merge_requests/17", { target: { kind: "pull-request", number: "17" } }],
  ["https://gitlab.com/group/project/-/merge_requests/17/diffs", { target: { kind: "pull-request", number: "17" } }],
  ["https://gitlab.com/group/project/-/issues/3", { target: { kind: "issue", number: "3" } }],
  // Bitbucket
  ["https://bitbucket.org/atlassian/stash", { provider: "bitbucket", owner: "atlassian", repo: "stash", cloneUrl: "https://bitbucket.org/atlassian/stash.git", target: { kind: "repository" } }],
  ["https://bitbucket.org/atlassian/stash/src/develop/README.md", { target: { kind: "ref", segments: ["develop", "README.md"] } }],
  ["https://bitbucket.org/atlassian/stash/branch/feature/z", { target: { kind: "branch", name: "feature/z" } }],
  [`https://bitbucket.org/atlassian/stash/commits/${SHA}`, { target: { kind: "commit", sha: SHA } }],
  ["https://bitbucket.org/atlassian/stash/commits/tag/v3", { target: { kind: "tag", name: "v3" } }],
  ["https://bitbucket.org/atlassian/stash/pull-requests/5/overview", { target: { kind: "pull-request", number: "5" } }],
  ["https://bitbucket.org/atlassian/stash/issues/9/title-slug", { target: { kind: "issue", number: "9" } }],
  // Azure DevOps
  ["https://dev.azure.com/contoso/web/_git/shop", { provider: "azure-devops", owner: "contoso/web", repo: "shop", cloneUrl: "https://dev.azure.com/contoso/web/_git/shop", target: { kind: "repository" } }],
  ["https://user@dev.azure.com/contoso/web/_git/shop", { cloneUrl: "https://dev.azure.com/contoso/web/_git/shop", target: { kind: "repository" } }],
  ["https://dev.azure.com/contoso/_git/shop", { owner: "contoso/shop", repo: "shop", cloneUrl: "https://dev.azure.com/contoso/_git/shop", target: { kind: "repository" } }],
  ["https://dev.azure.com/contoso/web/_git/shop?path=/src&version=GBfeature/a", { target: { kind: "branch", name: "feature/a" } }],
  ["https://dev.azure.com/contoso/web/_git/shop?version=GTv1.0", { target: { kind: "tag", name: "v1.0" } }],
  [`https://dev.azure.com/contoso/web/_git/shop?version=GC${SHA}`, { target: { kind: "commit", sha: SHA } }],
  [`https://dev.azure.com/contoso/web/_git/shop/commit/${SHA}`, { target: { kind: "commit", sha: SHA } }],
  ["https://dev.azure.com/contoso/web/_git/shop/pullrequest/12", { target: { kind: "pull-request", number: "12" } }],
  ["https://dev.azure.com/contoso/web/_workitems/edit/99", { owner: "contoso/web", repo: "", cloneUrl: "", target: { kind: "issue", number: "99" } }],
  ["https://contoso.visualstudio.com/web/_git/shop", { provider: "azure-devops", owner: "contoso/web", repo: "shop", cloneUrl: "https://contoso.visualstudio.com/web/_git/shop", target: { kind: "repository" } }],
  ["https://contoso.visualstudio.com/DefaultCollection/web/_git/shop", { owner: "contoso/web", cloneUrl: "https://contoso.visualstudio.com/DefaultCollection/web/_git/shop", target: { kind: "repository" } }],
  // Plain git over http(s): the URL is the remote
  ["http://127.0.0.1:8000/repo.git", { provider: "git", host: "127.0.0.1:8000", owner: "", repo: "repo", cloneUrl: "http://127.0.0.1:8000/repo.git", target: { kind: "repository" } }],
  ["https://git.example.com/team/tools/widget.git/?x=1#top", { provider: "git", owner: "team/tools", repo: "widget", cloneUrl: "https://git.example.com/team/tools/widget.git", target: { kind: "repository" } }],
  ["https://alice:s3cret@git.example.com/widget", { provider: "git", cloneUrl: "https://git.example.com/widget", target: { kind: "repository" } }],
];

describe("context URL forms", () => {
  it.each(FORMS)("%s", (url, expected) => {
    expect(parseContextUrl(url)).toMatchObject(expected);
  });

  it("reads a self-hosted host in the forms of the provider --scm-host names", () => {
    const hosts = new HostMap([["git.corp.example:8443", "gitlab"], ["127.0.0.1:9000", "github"]]);
    expect(parseContextUrl("https://git.corp.example:8443/a/b/c/-/merge_requests/4", hosts)).toMatchObject({
      provider: "gitlab",
      owner: "a/b",
      repo: "c",
      cloneUrl: "https://git.corp.example:8443/a/b/c.git",
      target: { kind: "pull-request", number: "4" },
    });
    // The scheme and port of the URL are kept for a mapped host (github.com itself is always https).
    expect(parseContextUrl("http://127.0.0.1:9000/o/r/tree/dev", hosts)).toMatchObject({ cloneUrl: "http://127.0.0.1:9000/o/r.git", target: { kind: "ref", segments: ["dev"] } });
    // Without the mapping the same URL is a plain git remote.
    expect(parseContextUrl("http://127.0.0.1:9000/o/r/tree/dev")).toMatchObject({ provider: "git", cloneUrl: "http://127.0.0.1:9000/o/r/tree/dev" });
  });

  it.each([
    ["not a url", /not an absolute URL/],
    ["ssh://git@github.com/o/r.git", /only http:\/\/ and https:\/\//],
    ["file:///etc/passwd", /only http:\/\/ and https:\/\//],
    ["https://github.com/gitpod-io", /names no GitHub repository/],
    ["https://github.com/o/r/pull/abc", /not a pull request number/],
    ["https://github.com/o/r/commit/xyz", /not a commit id/],
    ["https://github.com/o/r/tree", /names no branch, tag or commit/],
    ["https://gitlab.com/project", /names no GitLab repository/],
    ["https://dev.azure.com/contoso/web", /names no Azure DevOps repository/],
    ["https://dev.azure.com/contoso/web/_git/shop?version=XYfoo", /is not GB<branch>/],
    ["https://git.example.com/", /names no repository/],
    ["https://github.com/o/r/tree/%E0%A4%A", /percent-encoding/],
  ])("refuses %s", (url, message) => {
    expect(() => parseContextUrl(url)).toThrow(ContextUrlError);
    expect(() => parseContextUrl(url)).toThrow(message);
  });

  it("never repeats credentials of a URL", () => {
    expect(redactUrl("https://alice:s3cret@git.example.com/x.git")).toBe("https://git.example.com/x.git");
    expect(redactUrl("not a url with //bob:pw@host")).not.toContain("pw");
    expect(() => parseContextUrl("ftp://alice:s3cret@host/x")).toThrow(/^(?!.*s3cret)/);
  });
});

describe("git ls-remote", () => {
  it("reads the default branch, branches, peeled tags and pull request refs", () => {
    const output = [
      "ref: refs/heads/main\tHEAD",
      `${SHA}\tHEAD`,
      `${SHA}\trefs/heads/main`,
      `1111111111111111111111111111111111111111\trefs/heads/feature/x`,
      `2222222222222222222222222222222222222222\trefs/tags/v1`,
      `3333333333333333333333333333333333333333\trefs/tags/v1^{}`,
      `4444444444444444444444444444444444444444\trefs/pull/7/head`,
      "",
    ].join("\n");
    const { defaultBranch, refs } = parseLsRemote(output);
    expect(defaultBranch).toBe("main");
    expect(refs.get("refs/heads/feature/x")).toBe("1111111111111111111111111111111111111111");
    expect(refs.get("refs/tags/v1")).toBe("3333333333333333333333333333333333333333"); // the commit, not the tag object
    expect(refs.get("refs/pull/7/head")).toBe("4444444444444444444444444444444444444444");
  });

  it.each([
    ["fatal: could not read Username for 'https://github.com': terminal prompts disabled", "auth-required"],
    ["remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://gitlab.com/x.git/'", "auth-required"],
    ["fatal: unable to access 'https://h/x.git/': The requested URL returned error: 403", "permission-denied"],
    ["fatal: repository 'http://127.0.0.1:8000/nope.git/' not found", "not-found"],
    ["remote: Repository not found.\nfatal: repository 'https://github.com/o/nope.git/' not found", "not-found"],
    ["fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", "unreachable"],
    ["fatal: unable to access 'https://nowhere.invalid/x.git/': Could not resolve host: nowhere.invalid", "unreachable"],
    ["fatal: unable to access 'https://h/x.git/': The requested URL returned error: 502", "unreachable"],
    ["fatal: something new", "failed"],
  ])("classifies %j", (stderr, kind) => {
    const failure = classify(stderr);
    expect(failure.kind).toBe(kind);
    expect(failure.message).not.toMatch(/^fatal:/);
  });
});

describe("page tokens", () => {
  const items = Array.from({ length: 61 }, (_, i) => i);
  it("pages with NEXT_PAGE/TOTAL_PAGES/TOTAL_COUNT tokens, empty on the last page", () => {
    const first = paginate(items, 25, "");
    expect(first).toMatchObject({ nextToken: "2/3/61", lastPage: 3 });
    expect(first.items).toEqual(items.slice(0, 25));
    expect(paginate(items, 25, first.nextToken).nextToken).toBe("3/3/61");
    const last = paginate(items, 25, "3/3/61");
    expect(last).toMatchObject({ nextToken: "", items: items.slice(50) });
    expect(paginate(items, 0, "").items).toHaveLength(25); // 0 = the default page size
    expect(paginate([], 10, "")).toMatchObject({ items: [], nextToken: "", lastPage: 1 });
  });
  it.each(["garbage", "0/3/61", "-1/3/61"])("refuses the token %j", (token) => {
    let failure: unknown;
    try {
      paginate(items, 25, token);
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(CallFailure);
    expect((failure as CallFailure).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });
});

describe("command line", () => {
  it("has defaults that need only --url", () => {
    expect(parseOptions(["--url", "http://localhost:8080/"], {})).toMatchObject({
      url: "http://localhost:8080",
      exchangeToken: undefined,
      protocol: "grpc",
      httpVersion: "2",
      heartbeatMs: 30_000,
      reconnectMaxMs: 30_000,
      logFormat: "json",
      logLevel: undefined,
    });
  });
  it("takes the exchange token from RUNNER_EXCHANGE_TOKEN too", () => {
    expect(parseOptions(["--url", "http://h"], { RUNNER_EXCHANGE_TOKEN: "rcpx_abc" })).toMatchObject({ exchangeToken: "rcpx_abc" });
  });
  it.each([
    [[], /--url is required/],
    [["--url", "localhost:8080"], /--url must be an http/],
    [["--url", "http://u:p@h"], /must not carry credentials/],
    [["--url", "http://h", "--protocol", "smoke"], /--protocol must be one of grpc, connect, connect-json, grpc-web/],
    [["--url", "http://h", "--http-version", "1.1"], /grpc needs HTTP\/2/],
    [["--url", "http://h", "--heartbeat-seconds", "0"], /--heartbeat-seconds must be a number of seconds/],
    [["--url", "http://h", "--shard-ids", "1,64"], /--shard-ids must be a whole number from 0 to 63/],
    [["--url", "http://h", "--scm-host", "git.example.com=svn"], /--scm-host must be HOST=PROVIDER/],
    [["--url", "http://h", "--repos-dir", "/does/not/exist"], /is not a directory/],
    [["--url", "http://h", "--repos-url", "http://x"], /--repos-url needs --repos-dir/],
    [["--url", "http://h", "--bogus"], /Unknown option '--bogus'/],
  ])("refuses %j", (argv, message) => {
    expect(() => parseOptions(argv as string[], {})).toThrow(UsageError);
    expect(() => parseOptions(argv as string[], {})).toThrow(message);
  });
  it("documents every option in --help", () => {
    for (const name of Object.keys(OPTIONS)) expect(HELP, name).toMatch(new RegExp(`^  --${name}\\b`, "m"));
    expect(HELP).toContain("RUNNER_EXCHANGE_TOKEN");
  });
  it("reports the version of package.json", () => {
    const pkg = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { version: string };
    expect(RUNNER_VERSION).toBe(pkg.version);
  });
});

describe("sealed boxes", () => {
  it("opens what is sealed to the runner's public key, and nothing else", async () => {
    await sodium.ready;
    const keys = await generateKeyPair();
    expect(await matches(keys)).toBe(true);
    const box = sodium.crypto_box_seal(new TextEncoder().encode("metrics-password"), keys.publicKey);
    expect(new TextDecoder().decode(await openSealed(box, keys))).toBe("metrics-password");
    expect(await openSealed(new Uint8Array(), keys)).toBeUndefined(); // an empty field: nothing sealed
    const tampered = box.slice();
    tampered[tampered.length - 1]! ^= 1;
    await expect(openSealed(tampered, keys)).rejects.toThrow();
    const stranger = await generateKeyPair();
    await expect(openSealed(box, stranger)).rejects.toThrow();
    expect(await matches({ publicKey: stranger.publicKey, privateKey: keys.privateKey })).toBe(false);
  });
});

describe("state directory", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), "rcp-state-unit-"));
    dirs.push(dir);
    return join(dir, "state");
  };

  it("keeps credentials in 0600 files of a 0700 directory, and knows a spent exchange token", () => {
    const dir = fresh();
    const state = StateDir.open(dir, () => {});
    const workerId = state.record().workerId;
    state.saveAccessToken("rcpr_token", "rcpx_spent");
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "access-token")).mode & 0o777).toBe(0o600);
    expect(state.accessToken).toBe("rcpr_token");
    expect(state.record()).toMatchObject({ workerId, spentExchangeToken: hashToken("rcpx_spent") });
    expect(readFileSync(join(dir, "runner.json"), "utf8")).not.toContain("rcpx_spent");
    expect(readdirSync(dir).sort()).toEqual(["access-token", "lock", "runner.json"]); // no temporary files left
    state.close();
    expect(readdirSync(dir)).not.toContain("lock");
  });

  it("narrows files others could read, with a warning", () => {
    const dir = fresh();
    StateDir.open(dir, () => {}).saveAccessToken("rcpr_token", "rcpx_x");
    chmodSync(join(dir, "access-token"), 0o644);
    chmodSync(dir, 0o755);
    const warnings: string[] = [];
    const state = StateDir.open(dir, (msg, fields) => warnings.push(`${msg} ${String(fields.path)}`));
    expect(state.accessToken).toBe("rcpr_token");
    expect(statSync(join(dir, "access-token")).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(warnings.join("\n")).toMatch(/narrowing permissions.*access-token/);
  });

  it("serves one process: a live process's lock is refused, a dead one's removed", () => {
    const dir = fresh();
    StateDir.open(dir, () => {}); // left locked by "this" process
    writeFileSync(join(dir, "lock"), `${process.ppid}\n`); // a live process
    expect(() => StateDir.open(dir, () => {})).toThrow(StateError);
    expect(() => StateDir.open(dir, () => {})).toThrow(/in use by another runner process/);
    writeFileSync(join(dir, "lock"), "999999999\n"); // no such process
    const warnings: string[] = [];
    StateDir.open(dir, (msg) => warnings.push(msg));
    expect(warnings).toContain("removing a stale lock");
  });

  it("refuses a damaged key pair", () => {
    const dir = fresh();
    const state = StateDir.open(dir, () => {});
    writeFileSync(join(dir, "x25519-secret-key"), "c2hvcnQ=\n", { mode: 0o600 });
    writeFileSync(join(dir, "x25519-public-key"), "c2hvcnQ=\n", { mode: 0o600 });
    expect(() => state.keyPair()).toThrow(/damaged/);
  });
});

describe("connect-node's idle GOAWAY error (connectrpc/connect-es#1768)", () => {
  it("is told apart from every other error, by the message connect-node really uses", () => {
    const source = readFileSync(join(projectRoot, "node_modules/@connectrpc/connect-node/dist/esm/http2-session-manager.js"), "utf8");
    expect(source).toContain(`new ConnectError("${IDLE_GOAWAY_MESSAGE}", Code.Canceled)`);
    expect(isIdleConnectionGoaway(new ConnectError(IDLE_GOAWAY_MESSAGE, Code.Canceled))).toBe(true);
    expect(isIdleConnectionGoaway(new ConnectError(IDLE_GOAWAY_MESSAGE, Code.Unavailable))).toBe(false);
    expect(isIdleConnectionGoaway(new ConnectError("PING timed out", Code.Canceled))).toBe(false);
    expect(isIdleConnectionGoaway(new Error(IDLE_GOAWAY_MESSAGE))).toBe(false);
  });
});
