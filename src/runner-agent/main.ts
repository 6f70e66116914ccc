// The development runner process: `npm run runner -- --url … --exchange-token …` (`--help`).
// SIGTERM or SIGINT stop it cleanly (exit 0); a second signal stops it at once.
import { RunnerAgent } from "./agent.js";
import { Logger } from "./log.js";
import { HELP, parseOptions, UsageError, type RunnerOptions } from "./options.js";
import { GitRemote } from "./scm/git-remote.js";
import { GitScm } from "./scm/git-scm.js";
import { HostMap } from "./scm/providers.js";
import { ReposDirectory } from "./scm/repos-dir.js";
import { isIdleConnectionGoaway } from "./transport.js";
import { RUNNER_VERSION } from "./version.js";

async function main(): Promise<number> {
  let options: RunnerOptions | "help" | "version";
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n\nRun with --help for the options.\n`);
    return 2;
  }
  if (options === "help") {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (options === "version") {
    process.stdout.write(`${RUNNER_VERSION}\n`);
    return 0;
  }

  const log = new Logger(options.logFormat, options.logLevel ?? "info");
  const repos = options.reposDir ? new ReposDirectory(options.reposDir, options.reposUrl) : undefined;
  const scm = new GitScm({
    hosts: new HostMap(options.scmHosts),
    git: new GitRemote({ timeoutMs: options.gitTimeoutMs, concurrency: options.gitConcurrency }),
    openHosts: new Set(repos && options.reposUrl ? [repos.host] : []),
    onUnresolved: (host, reason) => log.warn("could not reach the git host; answering the context as the URL gives it", { host, reason }),
  });
  const agent = new RunnerAgent(
    { ...options, logLevelFixed: options.logLevel !== undefined, handlers: { scm, repos } },
    log,
  );
  // connect-node raises one error of an idle HTTP/2 connection's teardown as an uncaught
  // exception (connectrpc/connect-es#1768: a GOAWAY on a connection without streams, e.g. from a
  // server restarting or a load balancer, while a new request opens the next connection). It
  // concerns no call; swallow exactly that one. Anything else uncaught stops the runner (exit 1).
  process.on("uncaughtException", (err) => {
    if (isIdleConnectionGoaway(err)) {
      log.debug("an idle connection was closed by the server (GOAWAY)");
      return;
    }
    log.error("uncaught exception", { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  });
  let signals = 0;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (++signals > 1) {
        log.warn("second signal: exiting at once", { signal });
        process.exit(1);
      }
      agent.stop(signal);
    });
  }
  log.info("starting", { version: RUNNER_VERSION, url: options.url, stateDir: options.stateDir, reposDir: options.reposDir, reposUrl: options.reposUrl });
  return agent.run();
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
