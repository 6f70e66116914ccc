// `git ls-remote`, the one way the development runner talks to a git host. URLs come from
// users, so git may only speak http(s) (no ext::, file:// or ssh), never prompts, and is killed
// after a timeout. Credentials: a user's token fetched from the control plane for this one call
// (GetHostAuthenticationTokenValue), handed to git in its environment (never on the command
// line, which other processes can read) as an Authorization header scoped to the remote's
// origin, so a redirect to another host does not carry it; else whatever git's own
// configuration provides (credential helpers of the account the runner runs as).
import { spawn } from "node:child_process";

export type RemoteFailureKind = "auth-required" | "permission-denied" | "not-found" | "unreachable" | "failed";

export class RemoteFailure extends Error {
  constructor(
    readonly kind: RemoteFailureKind,
    message: string,
  ) {
    super(message);
  }
}

export interface RemoteRefs {
  /** The branch HEAD points at (the default branch), if the remote says. */
  defaultBranch: string | undefined;
  /** Full ref name → commit id; annotated tags are peeled to the commit they tag. */
  refs: Map<string, string>;
}

export interface GitRemoteOptions {
  timeoutMs: number;
  /** git processes at once; more calls wait their turn. */
  concurrency: number;
  /** Extra environment for git (tests point HOME and the git configuration elsewhere). */
  env?: NodeJS.ProcessEnv;
}

const MAX_OUTPUT_BYTES = 32 * 1024 * 1024;

/** HTTP Basic credentials for one remote (a personal access token as the password). */
export interface RemoteAuth {
  username: string;
  password: string;
}

/** git configuration in the environment: an Authorization header for the remote's origin only. */
function authEnv(cloneUrl: string, auth: RemoteAuth): NodeJS.ProcessEnv {
  const origin = new URL(cloneUrl).origin;
  const basic = Buffer.from(`${auth.username}:${auth.password}`).toString("base64");
  return { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: `http.${origin}/.extraHeader`, GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}` };
}

export class GitRemote {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly options: GitRemoteOptions) {}

  /** The refs of a remote: HEAD, branches and tags, plus the extra refs asked for. */
  async listRefs(cloneUrl: string, extraRefs: string[] = [], auth?: RemoteAuth): Promise<RemoteRefs> {
    const output = await this.git(["ls-remote", "--symref", cloneUrl, "HEAD", "refs/heads/*", "refs/tags/*", ...extraRefs], cloneUrl, auth);
    return parseLsRemote(output);
  }

  /** Resolves when the remote answers (with any refs, also none); throws a RemoteFailure otherwise. */
  async probe(cloneUrl: string, auth?: RemoteAuth): Promise<void> {
    await this.git(["ls-remote", cloneUrl, "HEAD"], cloneUrl, auth);
  }

  private async git(args: string[], cloneUrl: string, auth: RemoteAuth | undefined): Promise<string> {
    await this.turn();
    try {
      return await run(args, auth ? { ...this.options, env: { ...this.options.env, ...authEnv(cloneUrl, auth) } } : this.options);
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }

  private turn(): Promise<void> {
    if (this.running < this.options.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(() => (this.running++, resolve())));
  }
}

function run(args: string[], options: GitRemoteOptions): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  delete env.GIT_ASKPASS;
  delete env.SSH_ASKPASS;
  Object.assign(env, {
    GIT_TERMINAL_PROMPT: "0",
    GCM_INTERACTIVE: "never",
    GIT_ALLOW_PROTOCOL: "http:https",
    LC_ALL: "C",
    LANGUAGE: "C",
  });
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["-c", "credential.interactive=never", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > MAX_OUTPUT_BYTES) child.kill("SIGKILL");
      else out.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      if (err.length < 16_384) err += chunk.toString("utf8");
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new RemoteFailure("failed", `could not run git: ${error.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (timedOut) return reject(new RemoteFailure("unreachable", `the remote did not answer within ${options.timeoutMs / 1000} s`));
      if (outBytes > MAX_OUTPUT_BYTES) return reject(new RemoteFailure("failed", "the remote listed more refs than the runner reads"));
      if (code === 0) return resolve(Buffer.concat(out).toString("utf8"));
      reject(classify(err));
    });
  });
}

/** git's English messages (LC_ALL=C) → what went wrong, with git's own line as the message. */
export function classify(stderr: string): RemoteFailure {
  const lines = stderr.split("\n").map((line) => line.trim()).filter(Boolean);
  const message = (lines.find((line) => line.startsWith("fatal:")) ?? lines[0] ?? "git failed").replace(/^fatal:\s*/, "");
  const text = stderr.toLowerCase();
  if (/could not read (username|password)|terminal prompts disabled|authentication failed|returned error: 401|http basic: access denied/.test(text)) {
    return new RemoteFailure("auth-required", message);
  }
  if (/returned error: 403/.test(text)) return new RemoteFailure("permission-denied", message);
  if (/not found|returned error: 404|does not appear to be a git repository|repository .* does not exist/.test(text)) {
    return new RemoteFailure("not-found", message);
  }
  if (/could not resolve host|failed to connect|couldn't connect|connection refused|connection reset|timed out|network is unreachable|empty reply from server|recv failure|ssl|tls|returned error: 5\d\d/.test(text)) {
    return new RemoteFailure("unreachable", message);
  }
  return new RemoteFailure("failed", message);
}

export function parseLsRemote(output: string): RemoteRefs {
  let defaultBranch: string | undefined;
  const refs = new Map<string, string>();
  for (const line of output.split("\n")) {
    if (line.startsWith("ref: ")) {
      const [target, name] = line.slice(5).split("\t");
      if (name === "HEAD" && target?.startsWith("refs/heads/")) defaultBranch = target.slice("refs/heads/".length);
      continue;
    }
    const [sha, name] = line.split("\t");
    if (!sha || !name) continue;
    if (name.endsWith("^{}")) refs.set(name.slice(0, -3), sha); // the peeled tag wins over the tag object
    else if (!refs.has(name)) refs.set(name, sha);
  }
  return { defaultBranch, refs };
}
