// The runner's log on stdout: one JSON object per line ({"time","level","msg",…fields}), or
// plain text lines for people (--log-format plain). Secrets never reach it: the callers pass
// no tokens or keys, and URLs are logged without their credentials.
import { inspect } from "node:util";

export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LEVELS)[number];
export type Fields = Record<string, unknown>;

export class Logger {
  private threshold: number;

  constructor(
    private readonly format: "json" | "plain",
    level: Level,
    private readonly write: (line: string) => void = (line) => process.stdout.write(line),
  ) {
    this.threshold = LEVELS.indexOf(level);
  }

  get level(): Level {
    return LEVELS[this.threshold]!;
  }

  setLevel(level: Level): void {
    this.threshold = LEVELS.indexOf(level);
  }

  debug(msg: string, fields?: Fields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }

  private log(level: Level, msg: string, fields: Fields = {}): void {
    if (LEVELS.indexOf(level) < this.threshold) return;
    const time = new Date().toISOString();
    if (this.format === "json") {
      this.write(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
      return;
    }
    const rest = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${key}=${typeof value === "string" ? (/[\s"=]/.test(value) || value === "" ? JSON.stringify(value) : value) : inspect(value, { breakLength: Infinity, depth: 4 })}`)
      .join(" ");
    this.write(`${time} ${level.toUpperCase().padEnd(5)} ${msg}${rest ? ` ${rest}` : ""}\n`);
  }
}
