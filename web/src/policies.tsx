// A runner's policies: which groups may use it (RUNNER_ROLE_USER) or manage it (RUNNER_ROLE_ADMIN).
// A runner without policies belongs to the whole organization.
import { useState, type FormEvent } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { RunnerRole, RunnerRoleSchema, RunnerService } from "../../gen/gitpod/v1/runner_pb.js";
import { GroupService } from "../../gen/gitpod/v1/group_pb.js";
import { describeError } from "./api.js";
import { shortId } from "./format.js";
import { EnumOptions, Section } from "./fields.js";

/** `enabled` is false while the page deletes the runner: its policies are not to be read again. */
export function Policies({ runnerId, enabled }: { runnerId: string; enabled: boolean }) {
  const policies = useQuery(RunnerService.method.listRunnerPolicies, { runnerId, pagination: { pageSize: 100 } }, { enabled });
  const groups = useQuery(GroupService.method.listGroups, { pagination: { pageSize: 100 } });
  const [groupId, setGroupId] = useState("");
  const [role, setRole] = useState<number>(RunnerRole.USER);
  const [failure, setFailure] = useState<string>();
  const create = useMutation(RunnerService.method.createRunnerPolicy);
  const update = useMutation(RunnerService.method.updateRunnerPolicy);
  const remove = useMutation(RunnerService.method.deleteRunnerPolicy);

  const run = async (call: () => Promise<unknown>) => {
    setFailure(undefined);
    try {
      await call();
      await policies.refetch();
    } catch (err) {
      setFailure(describeError(err));
    }
  };

  if (policies.error instanceof ConnectError && policies.error.code === Code.PermissionDenied) {
    return (
      <Section title="Policies" id="policies">
        <p className="help">You may use this runner but not manage it, so its policies are not shown to you.</p>
      </Section>
    );
  }
  const nameOf = (id: string) => groups.data?.groups.find((g) => g.id === id)?.name ?? shortId(id);
  const list = policies.data?.policies ?? [];
  const free = (groups.data?.groups ?? []).filter((g) => !list.some((p) => p.groupId === g.id));
  const add = (event: FormEvent) => {
    event.preventDefault();
    if (!groupId) {
      setFailure("Choose a group.");
      return;
    }
    void run(async () => {
      await create.mutateAsync({ runnerId, groupId, role });
      setGroupId("");
    });
  };

  return (
    <Section title="Policies" id="policies">
      {policies.error && <p className="field-error">{describeError(policies.error)}</p>}
      {list.length === 0 ? (
        <p className="help">No policies: every member of the organization may use this runner, and its admins manage it.</p>
      ) : (
        <table className="kv">
          <thead>
            <tr>
              <th scope="col">Group</th>
              <th scope="col">Role</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((p) => (
              <tr key={p.groupId}>
                <th scope="row">{nameOf(p.groupId)}</th>
                <td>
                  <select
                    aria-label={`Role of ${nameOf(p.groupId)}`}
                    value={p.role}
                    onChange={(e) => void run(() => update.mutateAsync({ runnerId, groupId: p.groupId, role: Number(e.target.value) }))}
                  >
                    <EnumOptions schema={RunnerRoleSchema} />
                  </select>
                </td>
                <td>
                  <button type="button" className="secondary" onClick={() => void run(() => remove.mutateAsync({ runnerId, groupId: p.groupId }))}>
                    Remove<span className="visually-hidden"> {nameOf(p.groupId)}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {groups.data && groups.data.groups.length === 0 ? (
        <p className="help">The organization has no groups yet (GroupService.CreateGroup makes them).</p>
      ) : (
        <form className="inline" onSubmit={add} aria-label="Add a policy">
          <label>
            Group
            <select value={groupId} onChange={(e) => setGroupId(e.target.value)}>
              <option value="">Choose a group…</option>
              {free.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Role
            <select value={role} onChange={(e) => setRole(Number(e.target.value))}>
              <EnumOptions schema={RunnerRoleSchema} />
            </select>
          </label>
          <button type="submit">Add policy</button>
        </form>
      )}
      {failure && (
        <p className="field-error" role="alert">
          {failure}
        </p>
      )}
    </Section>
  );
}
