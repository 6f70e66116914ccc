// The embedded database (PGlite in DATA_DIR/pgdata) is one process's: two processes that open it
// each keep their own copy in memory and overwrite each other's writes on disk. The owner holds
// DATA_DIR/pgdata.lock, a file holding its pid, created atomically (a hard link of a complete
// temporary file, which fails when the lock exists). A lock whose pid no longer runs was left by a
// crash and is taken over. Servers and the CLI both take it; a CLI that finds a server holding it
// sends its command to that server instead (src/control-socket.ts).
import { linkSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const EMBEDDED_LOCK_FILE = "pgdata.lock";

/** Another live process owns the embedded database. */
export class EmbeddedDatabaseInUse extends Error {
  constructor(
    readonly pid: number,
    readonly lockFile: string,
  ) {
    super(
      `the embedded database in ${join(lockFile, "..")} is in use by process ${pid} (lock file ${lockFile}); ` +
        `stop that process first, or give this one another DATA_DIR`,
    );
  }
}

export interface EmbeddedLock {
  readonly path: string;
  /** Removes the lock file when it is still ours. */
  release(): void;
}

/** Whether a process with this pid runs (EPERM: it runs as another user). */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function lockOwner(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** The pid of the live process that holds the lock in dataDir, if any. */
export function embeddedLockOwner(dataDir: string): number | undefined {
  const pid = lockOwner(join(dataDir, EMBEDDED_LOCK_FILE));
  return pid !== undefined && pid !== process.pid && processRuns(pid) ? pid : undefined;
}

/** Takes the lock of the embedded database in dataDir, or throws EmbeddedDatabaseInUse. */
export function acquireEmbeddedLock(dataDir: string): EmbeddedLock {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, EMBEDDED_LOCK_FILE);
  const temporary = `${path}.${process.pid}`;
  writeFileSync(temporary, `${process.pid}\n`, { mode: 0o644 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(temporary, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 3) throw err;
      }
      const owner = lockOwner(path);
      if (owner !== undefined && owner !== process.pid && processRuns(owner)) throw new EmbeddedDatabaseInUse(owner, path);
      // Stale (its process is gone) or unreadable: take it over, unless another process just did.
      if (lockOwner(path) === owner) rmSync(path, { force: true });
    }
  } finally {
    rmSync(temporary, { force: true });
  }
  return {
    path,
    release() {
      if (lockOwner(path) !== process.pid) return;
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
