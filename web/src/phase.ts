// A runner's phase in words: the badge and the reason behind it, from the runner's timestamps and
// the server's liveness window (src/domain/runners.ts, observedStatus, derives the phase itself;
// this only explains it). Pure: `now` comes in, so tests and the ticking clock of the page agree.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { RunnerPhase, type Runner } from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerKind } from "../../gen/gitpod/v1/runner_configuration_pb.js";

export type Tone = "ok" | "warn" | "bad" | "idle";

/** The server's settings a phase is explained with (GET /dashboard.json). */
export interface LivenessSettings {
  livenessWindowSeconds: number;
  heartbeatSeconds: number;
}

export interface PhaseView {
  /** The badge: "active", "inactive", … */
  label: string;
  tone: Tone;
  /** The reason, a sentence: "heartbeat 12 s ago", "since 14:02, 3 heartbeats missed". */
  reason: string;
}

export function dateOf(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

/** "12 s", "4 min", "3 h", "2 days" (never negative: clocks of server and browser differ a little). */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 90) return `${min} min`;
  const h = Math.round(min / 60);
  if (h < 36) return `${h} h`;
  return `${Math.round(h / 24)} days`;
}

/** 14:02 today, otherwise 2026-11-30 14:02 (local time). */
export function clockTime(date: Date, now: Date): string {
  const hm = `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
  if (date.toDateString() === now.toDateString()) return hm;
  const ymd = `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
  return `${ymd} ${hm}`;
}

/** The server's INACTIVE message is "no heartbeat since <ISO time>". */
function lastHeartbeatOf(message: string): Date | undefined {
  const match = /^no heartbeat since (\S+)$/.exec(message);
  if (!match) return undefined;
  const date = new Date(match[1]!);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

export function phaseView(runner: Runner, now: Date, settings: LivenessSettings): PhaseView {
  const status = runner.status;
  const phase = status?.phase ?? RunnerPhase.UNSPECIFIED;
  const updatedAt = dateOf(status?.updatedAt);
  const window = `the window is ${duration(settings.livenessWindowSeconds * 1000)}`;
  const local = runner.kind === RunnerKind.LOCAL_CONFIGURATION;
  switch (phase) {
    case RunnerPhase.CREATED: {
      const created = dateOf(runner.createdAt);
      return { label: "created", tone: "idle", reason: created ? `never signed up (created ${duration(now.getTime() - created.getTime())} ago)` : "never signed up" };
    }
    case RunnerPhase.ACTIVE:
      if (local) return { label: "active", tone: "ok", reason: "switched on for the organization's local runners" };
      return {
        label: "active",
        tone: "ok",
        reason: updatedAt ? `heartbeat ${duration(now.getTime() - updatedAt.getTime())} ago, ${window}` : `alive, ${window}`,
      };
    case RunnerPhase.DEGRADED:
      return { label: "degraded", tone: "warn", reason: status?.message || "the runner reports a problem" };
    case RunnerPhase.INACTIVE: {
      if (local) return { label: "inactive", tone: "idle", reason: "switched off for the organization's local runners" };
      const last = lastHeartbeatOf(status?.message ?? "");
      const parts: string[] = [];
      if (updatedAt) parts.push(`since ${clockTime(updatedAt, now)}`);
      if (last) {
        const silentMs = now.getTime() - last.getTime();
        const missed = Math.max(1, Math.floor(silentMs / (settings.heartbeatSeconds * 1000)));
        parts.push(`${missed} heartbeat${missed === 1 ? "" : "s"} missed (last ${duration(silentMs)} ago, ${window})`);
      } else {
        parts.push(`no heartbeat within ${duration(settings.livenessWindowSeconds * 1000)}`);
      }
      return { label: "inactive", tone: "bad", reason: parts.join(", ") };
    }
    case RunnerPhase.DELETING:
      return { label: "deleting", tone: "idle", reason: "being deleted" };
    case RunnerPhase.DELETED:
      return { label: "deleted", tone: "idle", reason: "deleted: its tokens no longer work" };
    default:
      return { label: "unknown", tone: "idle", reason: "the server reported no phase" };
  }
}

/**
 * When this runner's phase would next change by the clock alone (an ACTIVE or DEGRADED runner
 * whose window runs out), so the page can ask the server again at that moment.
 */
export function phaseExpiresAt(runner: Runner, settings: Pick<LivenessSettings, "livenessWindowSeconds">): Date | undefined {
  const phase = runner.status?.phase;
  if (runner.kind === RunnerKind.LOCAL_CONFIGURATION) return undefined;
  if (phase !== RunnerPhase.ACTIVE && phase !== RunnerPhase.DEGRADED) return undefined;
  const updatedAt = dateOf(runner.status?.updatedAt);
  return updatedAt && new Date(updatedAt.getTime() + settings.livenessWindowSeconds * 1000);
}
