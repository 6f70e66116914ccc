// Who may manage a runner (read its logs, and whatever else needs more than membership).
// The one place this is decided, so the organization roles and runner policies of the
// access-control issue (#15) replace the rule here and every caller follows.
import type { Runner } from "../../gen/gitpod/v1/runner_pb.js";
import type { Caller } from "./caller.js";
import { permissionDenied } from "./errors.js";
import type { RunnerRegistry } from "./runner-registry.js";

/**
 * Runner `runnerId` when `user` may manage it. Today every user of the runner's organization may;
 * another organization's runner is not_found, exactly like a missing one, and permission_denied
 * is for a runner the user can see but not manage.
 */
export async function runnerUserMayManage(registry: RunnerRegistry, user: Extract<Caller, { kind: "user" }>, runnerId: string): Promise<Runner> {
  const runner = await registry.get(user.organizationId, runnerId);
  if (!mayManageRunner(user, runner)) throw permissionDenied(`you may not manage runner ${runnerId}`);
  return runner;
}

/** The rule itself, for a runner of the user's own organization. */
function mayManageRunner(_user: Extract<Caller, { kind: "user" }>, _runner: Runner): boolean {
  return true;
}
