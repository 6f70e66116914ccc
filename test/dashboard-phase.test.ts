// The dashboard's words for a runner's phase (web/src/phase.ts): the reasons the badges show.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { RunnerPhase, RunnerSchema } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerKind } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { duration, phaseExpiresAt, phaseView } from "../web/src/phase.js";

const settings = { livenessWindowSeconds: 90, heartbeatSeconds: 30 };
const now = new Date("2026-12-01T14:05:00Z");
const ago = (s: number) => new Date(now.getTime() - s * 1000);
const runner = (phase: RunnerPhase, fields: { updatedAt?: Date; message?: string; createdAt?: Date; kind?: RunnerKind } = {}) =>
  create(RunnerSchema, {
    kind: fields.kind ?? RunnerKind.LOCAL,
    createdAt: fields.createdAt && timestampFromDate(fields.createdAt),
    status: { phase, message: fields.message ?? "", updatedAt: fields.updatedAt && timestampFromDate(fields.updatedAt) },
  });

describe("phaseView", () => {
  it("explains ACTIVE with the last heartbeat and the window", () => {
    expect(phaseView(runner(RunnerPhase.ACTIVE, { updatedAt: ago(12) }), now, settings)).toEqual({ label: "active", tone: "ok", reason: "heartbeat 12 s ago, the window is 90 s" });
  });

  it("explains INACTIVE with when it became so and how many heartbeats were missed", () => {
    // Silent since 14:00:05: 295 s, 9 heartbeats of 30 s; INACTIVE since the window ran out at 14:01:35.
    const view = phaseView(runner(RunnerPhase.INACTIVE, { updatedAt: ago(205), message: `no heartbeat since ${ago(295).toISOString()}` }), now, settings);
    expect(view.label).toBe("inactive");
    expect(view.tone).toBe("bad");
    expect(view.reason).toMatch(/^since \d\d:\d\d, 9 heartbeats missed \(last 5 min ago, the window is 90 s\)$/);
  });

  it("gives DEGRADED the runner's own message, CREATED its age, DELETED its consequence", () => {
    expect(phaseView(runner(RunnerPhase.DEGRADED, { updatedAt: ago(3), message: "disk full" }), now, settings)).toMatchObject({ label: "degraded", tone: "warn", reason: "disk full" });
    expect(phaseView(runner(RunnerPhase.CREATED, { createdAt: ago(600) }), now, settings).reason).toBe("never signed up (created 10 min ago)");
    expect(phaseView(runner(RunnerPhase.DELETED), now, settings).reason).toBe("deleted: its tokens no longer work");
  });

  it("says the local configuration runner's phase is a switch, not a heartbeat", () => {
    expect(phaseView(runner(RunnerPhase.ACTIVE, { kind: RunnerKind.LOCAL_CONFIGURATION }), now, settings).reason).toBe("switched on for the organization's local runners");
    expect(phaseExpiresAt(runner(RunnerPhase.ACTIVE, { kind: RunnerKind.LOCAL_CONFIGURATION, updatedAt: ago(1) }), settings)).toBeUndefined();
  });

  it("knows when an ACTIVE runner's window runs out, and never says a negative time", () => {
    expect(phaseExpiresAt(runner(RunnerPhase.ACTIVE, { updatedAt: ago(10) }), settings)).toEqual(new Date(now.getTime() + 80_000));
    expect(phaseExpiresAt(runner(RunnerPhase.INACTIVE, { updatedAt: ago(10) }), settings)).toBeUndefined();
    expect(duration(-1500)).toBe("0 s");
    expect(duration(3 * 3600 * 1000)).toBe("3 h");
  });
});
