// A real git server on 127.0.0.1 for the development runner's tests: git's own
// `git http-backend` (smart HTTP, protocol v2) behind a small node:http server, over a directory
// of bare repositories that the test makes with real git commands. /dumb/… serves the same
// repositories as static files (git's "dumb" HTTP protocol, like `python3 -m http.server`). Two
// kinds of paths misbehave on purpose: /private/… demands HTTP Basic authentication, /slow/… is
// held until `release()`.
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** Environment for git in tests: no system or user configuration, no prompts. */
export function isolatedGitEnv(home: string): NodeJS.ProcessEnv {
  return {
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: join(home, ".gitconfig-none"),
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: "Test",
    GIT_AUTHOR_EMAIL: "test@example.com",
    GIT_COMMITTER_NAME: "Test",
    GIT_COMMITTER_EMAIL: "test@example.com",
  };
}

export interface RepoSpec {
  /** Branch → commit message; the first is the default branch. */
  branches?: string[];
  /** Annotated tags on the default branch's tip. */
  tags?: string[];
  /** Pull request number → branch whose tip is its head (published as refs/pull/N/head). */
  pulls?: Record<number, string>;
}

export interface MadeRepo {
  /** Branch or tag → commit id. */
  commits: Record<string, string>;
}

export class GitServer {
  readonly root: string;
  private readonly work: string;
  private readonly env: NodeJS.ProcessEnv;
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  private readonly held: ServerResponse[] = [];
  /** Request paths seen, in order. */
  readonly requests: string[] = [];
  port = 0;

  constructor(readonly credentials = { user: "alice", password: "wonderland" }) {
    this.work = mkdtempSync(join(tmpdir(), "rcp-git-"));
    this.root = join(this.work, "repos");
    mkdirSync(this.root);
    this.env = { ...process.env, ...isolatedGitEnv(this.work) };
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** Makes a bare repository at `path` (e.g. "acme/widgets.git") with real commits. */
  makeRepo(path: string, spec: RepoSpec = {}): MadeRepo {
    const branches = spec.branches ?? ["main"];
    const scratch = mkdtempSync(join(this.work, "scratch-"));
    const git = (...args: string[]) => execFileSync("git", args, { cwd: scratch, env: this.env, encoding: "utf8" }).trim();
    git("init", "-q", "-b", branches[0]!);
    const commits: Record<string, string> = {};
    writeFileSync(join(scratch, "README.md"), `# ${path}\n`);
    git("add", "README.md");
    git("commit", "-q", "-m", "initial commit");
    commits[branches[0]!] = git("rev-parse", "HEAD");
    for (const tag of spec.tags ?? []) {
      git("tag", "-a", tag, "-m", `release ${tag}`);
      commits[tag] = git("rev-parse", `${tag}^{commit}`);
    }
    for (const branch of branches.slice(1)) {
      git("checkout", "-q", "-b", branch, branches[0]!);
      writeFileSync(join(scratch, "change.txt"), `${branch}\n`);
      git("add", "change.txt");
      git("commit", "-q", "-m", `work on ${branch}`);
      commits[branch] = git("rev-parse", "HEAD");
    }
    git("checkout", "-q", branches[0]!); // the clone's HEAD, i.e. the default branch
    const bare = join(this.root, path);
    mkdirSync(dirname(bare), { recursive: true });
    execFileSync("git", ["clone", "-q", "--bare", scratch, bare], { env: this.env });
    for (const [number, branch] of Object.entries(spec.pulls ?? {})) {
      execFileSync("git", ["update-ref", `refs/pull/${number}/head`, commits[branch]!], { cwd: bare, env: this.env });
    }
    execFileSync("git", ["update-server-info"], { cwd: bare, env: this.env }); // for /dumb/
    rmSync(scratch, { recursive: true, force: true });
    return { commits };
  }

  /** A copy of a repository made before, under another path (cheaper than making it again). */
  copyRepo(from: string, to: string): void {
    cpSync(join(this.root, from), join(this.root, to), { recursive: true });
  }

  /** Answers every held /slow/ request (with a 503, so git gives up). */
  release(): void {
    for (const res of this.held.splice(0)) {
      if (!res.headersSent) res.writeHead(503).end();
    }
  }

  async close(): Promise<void> {
    this.release();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.work, { recursive: true, force: true });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://localhost");
    this.requests.push(url.pathname);
    if (url.pathname.startsWith("/slow/")) {
      this.held.push(res);
      return;
    }
    if (url.pathname.startsWith("/dumb/")) {
      const file = join(this.root, decodeURIComponent(url.pathname.slice("/dumb/".length)));
      if (!file.startsWith(this.root + "/") || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(readFileSync(file));
      return;
    }
    if (url.pathname.startsWith("/private/")) {
      const expected = `Basic ${Buffer.from(`${this.credentials.user}:${this.credentials.password}`).toString("base64")}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="private"' }).end();
        return;
      }
    }
    this.cgi(req, res, url);
  }

  /** `git http-backend` as a CGI program (RFC 3875): request in through env and stdin, response out. */
  private cgi(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const env: NodeJS.ProcessEnv = {
      ...this.env,
      GIT_PROJECT_ROOT: this.root,
      GIT_HTTP_EXPORT_ALL: "1",
      GATEWAY_INTERFACE: "CGI/1.1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_ADDR: req.socket.remoteAddress ?? "",
      REMOTE_USER: url.pathname.startsWith("/private/") ? this.credentials.user : "",
      GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
    };
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string") env[`HTTP_${name.toUpperCase().replace(/-/g, "_")}`] = value;
    }
    const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "ignore"] });
    req.pipe(child.stdin);
    child.stdin.on("error", () => {});
    let head = Buffer.alloc(0);
    let headerDone = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (headerDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      const endLf = head.indexOf("\n\n");
      const [at, skip] = end !== -1 && (endLf === -1 || end < endLf) ? [end, 4] : [endLf, 2];
      if (at === -1) return;
      headerDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, at).toString("latin1").split(/\r?\n/)) {
        const colon = line.indexOf(":");
        if (colon === -1) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(at + skip));
    });
    child.on("close", () => {
      if (!headerDone) res.writeHead(502);
      res.end();
    });
  }
}
