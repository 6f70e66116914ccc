// The state directory (--state-dir): what makes a runner the same runner after a restart.
//
//   access-token          the runner access token (rcpr_…), from the one ExchangeToken
//   x25519-secret-key     the runner's private key (base64), to open what the server seals to it
//   x25519-public-key     its public key (base64), sent with Signup
//   runner.json           runner id, server URL, worker id, SHA-256 of the spent exchange token
//
// The directory is 0700 and every file 0600 (wider modes found on start are narrowed, with a
// warning); files are written to a temporary name, synced and renamed, so a crash leaves the old
// or the new file, never half of one. A lock file keeps a second process off the same directory.
import { createHash, randomUUID } from "node:crypto";
import { closeSync, constants, fsyncSync, openSync, readFileSync, renameSync, statSync, chmodSync, mkdirSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

export interface RunnerRecord {
  runnerId?: string;
  url?: string;
  workerId: string;
  /** SHA-256 (hex) of the exchange token that was traded for the saved access token. */
  spentExchangeToken?: string;
}

export interface KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export class StateError extends Error {}

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export class StateDir {
  private constructor(
    readonly dir: string,
    private readonly warn: (msg: string, fields: Record<string, unknown>) => void,
  ) {}

  /** Opens (creating it when missing) and locks the directory. */
  static open(dir: string, warn: (msg: string, fields: Record<string, unknown>) => void): StateDir {
    mkdirSync(dir, { recursive: true, mode: DIR_MODE });
    const state = new StateDir(dir, warn);
    state.narrow(dir, DIR_MODE);
    state.lock();
    return state;
  }

  get accessToken(): string | undefined {
    return this.read("access-token")?.trim() || undefined;
  }

  saveAccessToken(token: string, spentExchangeToken: string): void {
    this.write("access-token", `${token}\n`);
    this.saveRecord({ ...this.record(), spentExchangeToken: hashToken(spentExchangeToken) });
  }

  forgetAccessToken(): void {
    this.remove("access-token");
  }

  record(): RunnerRecord {
    const text = this.read("runner.json");
    if (text === undefined) {
      const fresh = { workerId: randomUUID() };
      this.saveRecord(fresh);
      return fresh;
    }
    try {
      const record = JSON.parse(text) as RunnerRecord;
      if (typeof record.workerId !== "string" || record.workerId === "") throw new Error("no workerId");
      return record;
    } catch (err) {
      throw new StateError(`${join(this.dir, "runner.json")} is damaged (${(err as Error).message}); remove the state directory to register anew`);
    }
  }

  saveRecord(record: RunnerRecord): void {
    this.write("runner.json", `${JSON.stringify(record, null, 2)}\n`);
  }

  /** The saved key pair, or undefined when there is none yet. */
  keyPair(): KeyPair | undefined {
    const secret = this.read("x25519-secret-key");
    const pub = this.read("x25519-public-key");
    if (secret === undefined && pub === undefined) return undefined;
    const privateKey = Buffer.from(secret?.trim() ?? "", "base64");
    const publicKey = Buffer.from(pub?.trim() ?? "", "base64");
    if (privateKey.length !== 32 || publicKey.length !== 32) {
      throw new StateError(`the key pair in ${this.dir} is damaged (x25519-secret-key and x25519-public-key must be 32 bytes each, base64)`);
    }
    return { privateKey: new Uint8Array(privateKey), publicKey: new Uint8Array(publicKey) };
  }

  saveKeyPair(keys: KeyPair): void {
    this.write("x25519-secret-key", `${Buffer.from(keys.privateKey).toString("base64")}\n`);
    this.write("x25519-public-key", `${Buffer.from(keys.publicKey).toString("base64")}\n`);
  }

  /** Releases the lock (the process is stopping). */
  close(): void {
    this.remove("lock");
  }

  private lock(): void {
    const path = join(this.dir, "lock");
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const pid = Number(this.read("lock")?.trim());
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
          throw new StateError(`${this.dir} is in use by another runner process (pid ${pid}); one state directory serves one process`);
        }
        this.warn("removing a stale lock", { path, pid: Number.isInteger(pid) ? pid : undefined });
        this.remove("lock");
      }
    }
    throw new StateError(`could not lock ${this.dir}`);
  }

  private read(name: string): string | undefined {
    const path = join(this.dir, name);
    try {
      this.narrow(path, FILE_MODE);
      return readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  private write(name: string, content: string): void {
    const path = join(this.dir, name);
    const temporary = `${path}.${process.pid}.tmp`;
    const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, FILE_MODE);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temporary, FILE_MODE); // the umask may have narrowed it further, never widened; be exact
    renameSync(temporary, path);
  }

  private remove(name: string): void {
    try {
      unlinkSync(join(this.dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  /** Narrows a file or directory that others may read to `mode`. */
  private narrow(path: string, mode: number): void {
    const current = statSync(path).mode & 0o777;
    if ((current & 0o077) !== 0) {
      this.warn("narrowing permissions: others could read the runner's credentials", { path, mode: current.toString(8), now: mode.toString(8) });
      chmodSync(path, mode);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
