// The CLI's way into a server that owns the embedded database (src/store/db/embedded-lock.ts):
// a Unix socket DATA_DIR/control.sock, mode 0600, so only the user the server runs as can open
// it. One connection carries one command: the CLI sends its arguments as one JSON line, the server
// runs them with the same command table as the CLI (src/cli-commands.ts) on its own database and
// answers one JSON line with the output and the exit code.
import { chmodSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { join } from "node:path";

export const CONTROL_SOCKET_FILE = "control.sock";

export const controlSocketPath = (dataDir: string) => join(dataDir, CONTROL_SOCKET_FILE);

export interface ControlReply {
  code: number;
  stdout: string[];
  stderr: string[];
}

/** A request longer than this is not a command line. */
const MAX_REQUEST_BYTES = 64 * 1024;

/**
 * Listens on the socket (replacing a stale one: the caller owns DATA_DIR's lock) and answers each
 * command with `handle`. Resolves with a function that stops listening once running commands end.
 */
export async function serveControlSocket(path: string, handle: (argv: string[]) => Promise<ControlReply>): Promise<() => Promise<void>> {
  rmSync(path, { force: true });
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    let request = "";
    socket.setEncoding("utf8");
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: string) => {
      request += chunk;
      if (request.length > MAX_REQUEST_BYTES) socket.destroy();
    });
    socket.on("end", () => {
      let argv: unknown;
      try {
        argv = (JSON.parse(request) as { argv?: unknown }).argv;
      } catch {
        argv = undefined;
      }
      const reply: Promise<ControlReply> =
        Array.isArray(argv) && argv.every((arg) => typeof arg === "string")
          ? handle(argv).catch((err: Error) => ({ code: 1, stdout: [], stderr: [`failed: ${err.message}`] }))
          : Promise.resolve({ code: 2, stdout: [], stderr: ["the control socket takes one JSON line {\"argv\": [...]}"] });
      void reply.then((answer) => socket.end(`${JSON.stringify(answer)}\n`));
    });
  });
  // The socket file is created with mode 0600 (umask while binding, which happens synchronously).
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      rmSync(path, { force: true });
    });
}

/** The socket does not exist or nobody listens on it. */
export class NoControlSocket extends Error {}

/**
 * Sends one command to the server listening on the socket. Throws NoControlSocket when there is
 * none; any other error means the command may or may not have been carried out.
 */
export function callControlSocket(path: string, argv: string[]): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    let connected = false;
    let answer = "";
    const socket = createConnection({ path, allowHalfOpen: true }, () => {
      connected = true;
      socket.end(`${JSON.stringify({ argv })}\n`);
    });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (answer += chunk));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (!connected && ["ENOENT", "ECONNREFUSED", "EACCES", "ENOTSOCK"].includes(err.code ?? "")) reject(new NoControlSocket(err.message));
      else reject(err);
    });
    socket.on("end", () => {
      try {
        resolve(JSON.parse(answer) as ControlReply);
      } catch {
        reject(new Error("the server closed the connection without an answer"));
      }
    });
  });
}
