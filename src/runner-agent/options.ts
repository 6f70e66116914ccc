// The command line of the development runner: every option, its default and its check. A bad
// option is a UsageError (exit code 2) whose message names it.
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { LEVELS, type Level } from "./log.js";
import { PROVIDER_IDS, type ProviderId } from "./scm/providers.js";
import { DEFAULT_HTTP_VERSION, PROTOCOLS, type HttpVersion, type Protocol } from "./transport.js";

export class UsageError extends Error {}

export interface RunnerOptions {
  url: string;
  exchangeToken: string | undefined;
  stateDir: string;
  protocol: Protocol;
  httpVersion: HttpVersion;
  ca: Buffer | undefined;
  reposDir: string | undefined;
  reposUrl: string | undefined;
  scmHosts: [string, ProviderId][];
  /** Mean time between heartbeats; each wait is drawn from ±10 % of it. */
  heartbeatMs: number;
  /** Reconnect delays double from 500 ms up to this. */
  reconnectMaxMs: number;
  /** A stream that brings nothing for this long is taken for dead and reopened. */
  streamIdleMs: number;
  gitTimeoutMs: number;
  gitConcurrency: number;
  workerId: string | undefined;
  shardIds: number[];
  logFormat: "json" | "plain";
  logLevel: Level | undefined;
}

/** Every option of the command line (each one is explained in HELP). */
export const OPTIONS = {
  url: { type: "string" },
  "exchange-token": { type: "string" },
  "state-dir": { type: "string" },
  protocol: { type: "string" },
  "http-version": { type: "string" },
  "ca-file": { type: "string" },
  "repos-dir": { type: "string" },
  "repos-url": { type: "string" },
  "scm-host": { type: "string", multiple: true },
  "git-timeout-seconds": { type: "string" },
  "git-concurrency": { type: "string" },
  "heartbeat-seconds": { type: "string" },
  "reconnect-max-seconds": { type: "string" },
  "stream-idle-seconds": { type: "string" },
  "worker-id": { type: "string" },
  "shard-ids": { type: "string" },
  "log-format": { type: "string" },
  "log-level": { type: "string" },
  version: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export const HELP = `Usage: npm run runner -- --url URL [--exchange-token TOKEN] [options]

A development runner for this control plane: it registers with the exchange token (once),
keeps its RunnerInteractionService.WatchRequests stream open, and answers the SCM calls of
RunnerService (ParseContextURL, CheckRepositoryAccess, CheckAuthenticationForHost,
SearchRepositories, ListSCMOrganizations) for plain git hosting, with \`git ls-remote\`.

Connection
  --url URL                   the control plane, e.g. http://localhost:8080 (required)
  --exchange-token TOKEN      the one-time rcpx_… token of CreateRunner or CreateRunnerToken;
                              needed on the first start only (or set RUNNER_EXCHANGE_TOKEN,
                              which keeps it out of the process list)
  --state-dir DIR             where the access token and the X25519 key pair live
                              (mode 0700, files 0600)                   [./runner-state]
  --protocol NAME             grpc (HTTP/2), connect (binary, HTTP/2),
                              connect-json (HTTP/1.1) or grpc-web (HTTP/1.1)      [grpc]
  --http-version 1.1|2        override the protocol's HTTP version (not for grpc)
  --ca-file FILE              PEM CA certificate(s) to trust for an https:// URL

SCM
  --repos-dir DIR             a directory of git repositories, served as one host: enables
                              SearchRepositories and ListSCMOrganizations
  --repos-url URL             the URL that serves --repos-dir (e.g. http://127.0.0.1:8000);
                              repositories are answered as URL/<path>   [file:// of the dir]
  --scm-host HOST=PROVIDER    read URLs of HOST (host[:port]) in the forms of PROVIDER:
                              github, gitlab, bitbucket or azure-devops; repeatable.
                              github.com, gitlab.com, bitbucket.org, dev.azure.com and
                              *.visualstudio.com are known; other hosts are plain git remotes
  --git-timeout-seconds N     how long one git ls-remote may take                   [10]
  --git-concurrency N         git processes at once                                  [4]

Timing
  --heartbeat-seconds N       MarkRunnerActive every N seconds, ±10 % jitter        [30]
  --reconnect-max-seconds N   reconnect delays double from 0.5 s up to N            [30]
  --stream-idle-seconds N     reopen a stream that brought nothing for N seconds    [90]

Channel
  --worker-id ID              WatchRequests worker_id             [a random id, kept in the state dir]
  --shard-ids LIST            WatchRequests shard_ids, e.g. 0,1,2 (each 0..63)      [none]

Logging (to stdout; tokens, keys and URL credentials are never logged)
  --log-format json|plain     one JSON object per line, or text                   [json]
  --log-level LEVEL           debug, info, warn or error; without it the runner follows
                              the logLevel of its configuration                   [info]

  --version                   print the version and exit
  --help                      print this help and exit

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed (e.g. its token was refused), 2 usage error.`;

function seconds(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback * 1000;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number of seconds from ${min} to ${max}, not "${value}"`);
  return Math.round(n * 1000);
}

function integer(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${value}"`);
  return n;
}

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, not "${value}"`);
  return value as T;
}

function httpUrl(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--${name} must be an absolute URL such as http://localhost:8080, not "${value}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--${name} must be an http:// or https:// URL, not "${value}"`);
  if (url.username || url.password) throw new UsageError(`--${name} must not carry credentials`);
  return url.href.replace(/\/+$/, "");
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): RunnerOptions | "help" | "version" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: OPTIONS,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (v.version) return "version";
  if (!v.url) throw new UsageError("--url is required (the control plane, e.g. --url http://localhost:8080)");

  const protocol = oneOf("protocol", v.protocol, PROTOCOLS) ?? "grpc";
  const httpVersion = oneOf("http-version", v["http-version"], ["1.1", "2"] as const) ?? DEFAULT_HTTP_VERSION[protocol];
  if (protocol === "grpc" && httpVersion !== "2") throw new UsageError("--protocol grpc needs HTTP/2; use --protocol grpc-web or connect-json for HTTP/1.1");

  let ca: Buffer | undefined;
  if (v["ca-file"]) {
    try {
      ca = readFileSync(v["ca-file"]);
    } catch (err) {
      throw new UsageError(`--ca-file ${v["ca-file"]}: ${(err as Error).message}`);
    }
  }

  let reposDir: string | undefined;
  if (v["repos-dir"]) {
    reposDir = resolve(v["repos-dir"]);
    let isDirectory = false;
    try {
      isDirectory = statSync(reposDir).isDirectory();
    } catch {
      // reported below
    }
    if (!isDirectory) throw new UsageError(`--repos-dir ${v["repos-dir"]} is not a directory`);
  }
  const reposUrl = v["repos-url"] ? httpUrl("repos-url", v["repos-url"]) : undefined;
  if (reposUrl && !reposDir) throw new UsageError("--repos-url needs --repos-dir");

  const scmHosts = (v["scm-host"] ?? []).map((entry): [string, ProviderId] => {
    const [host, provider] = entry.split("=");
    if (!host || !provider || !PROVIDER_IDS.includes(provider as ProviderId)) {
      throw new UsageError(`--scm-host must be HOST=PROVIDER with PROVIDER one of ${PROVIDER_IDS.join(", ")}, not "${entry}"`);
    }
    return [host.toLowerCase(), provider as ProviderId];
  });

  const shardIds = (v["shard-ids"] ?? "")
    .split(",")
    .filter((s) => s.trim() !== "")
    .map((s) => integer("shard-ids", s.trim(), 0, 0, 63));

  const exchangeToken = v["exchange-token"] ?? (env.RUNNER_EXCHANGE_TOKEN || undefined);
  return {
    url: httpUrl("url", v.url),
    exchangeToken: exchangeToken?.trim() || undefined,
    stateDir: resolve(v["state-dir"] ?? "runner-state"),
    protocol,
    httpVersion,
    ca,
    reposDir,
    reposUrl,
    scmHosts,
    heartbeatMs: seconds("heartbeat-seconds", v["heartbeat-seconds"], 30, 0.05, 3600),
    reconnectMaxMs: seconds("reconnect-max-seconds", v["reconnect-max-seconds"], 30, 0.5, 3600),
    streamIdleMs: seconds("stream-idle-seconds", v["stream-idle-seconds"], 90, 1, 3600),
    gitTimeoutMs: seconds("git-timeout-seconds", v["git-timeout-seconds"], 10, 0.1, 600),
    gitConcurrency: integer("git-concurrency", v["git-concurrency"], 4, 1, 64),
    workerId: v["worker-id"],
    shardIds,
    logFormat: oneOf("log-format", v["log-format"], ["json", "plain"] as const) ?? "json",
    logLevel: oneOf("log-level", v["log-level"], LEVELS),
  };
}
