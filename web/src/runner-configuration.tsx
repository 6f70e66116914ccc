// A runner's configuration (RunnerConfigurationService, docs/runner-configuration.md): the SCM
// hosts it integrates with, the environment classes it offers, and the signed-in user's own
// token for a host on it. Secrets typed here are write-only: the OAuth client secret and the
// token are sent once and never read back (the API returns only metadata).
import { useRef, useState, type FormEvent, type ReactNode } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  HostAuthenticationTokenSource,
  HostAuthenticationTokenSourceSchema,
  RunnerConfigurationService,
  type SCMIntegration,
} from "../../gen/gitpod/v1/runner_configuration_pb.js";
import { RunnerService } from "../../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../../gen/gitpod/v1/identity_pb.js";
import { describeError, fieldErrors } from "./api.js";
import { enumLabel, timestampText } from "./format.js";
import { Field, FormErrors, otherErrors, Section } from "./fields.js";

const PAGE = { pageSize: 100 };

/** Whether the caller manages the runner: only managers may read its policies (the same query as the Policies section). */
function useManages(runnerId: string, enabled: boolean): boolean | undefined {
  const policies = useQuery(RunnerService.method.listRunnerPolicies, { runnerId, pagination: PAGE }, { enabled });
  if (policies.error instanceof ConnectError && policies.error.code === Code.PermissionDenied) return false;
  return policies.data ? true : undefined;
}

/** A submit that shows the API's field errors at the fields, and anything else above the form. */
function useSubmit(shown: string[]) {
  const [errors, setErrors] = useState(new Map<string, string>());
  const [failure, setFailure] = useState<string>();
  const submit = async (call: () => Promise<unknown>): Promise<boolean> => {
    setFailure(undefined);
    try {
      await call();
      setErrors(new Map());
      return true;
    } catch (err) {
      const byField = fieldErrors(err);
      setErrors(byField);
      if (byField.size === 0) setFailure(describeError(err));
      return false;
    }
  };
  const messages = [...otherErrors(errors, shown), ...(failure ? [failure] : [])];
  return { errors, submit, top: <FormErrors messages={messages} /> };
}

/** A modal confirmation; Escape and Cancel close it. */
function Confirm({ id, title, text, action, onConfirm, children }: { id: string; title: string; text: string; action: string; onConfirm: () => Promise<boolean>; children: (open: () => void) => ReactNode }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [failure, setFailure] = useState<string>();
  const [busy, setBusy] = useState(false);
  const confirm = async () => {
    setBusy(true);
    setFailure(undefined);
    try {
      if (await onConfirm()) dialog.current?.close();
    } catch (err) {
      setFailure(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      {children(() => dialog.current?.showModal())}
      <dialog ref={dialog} aria-labelledby={`${id}-title`} aria-describedby={`${id}-text`}>
        <h2 id={`${id}-title`}>{title}</h2>
        <p id={`${id}-text`}>{text}</p>
        {failure && (
          <p className="field-error" role="alert">
            {failure}
          </p>
        )}
        <div className="actions">
          <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>
            Cancel
          </button>
          <button type="button" className="danger" onClick={() => void confirm()} disabled={busy}>
            {action}
          </button>
        </div>
      </dialog>
    </>
  );
}

// ---- SCM integrations -------------------------------------------------------------------------

interface IntegrationInput {
  host: string;
  scmId: string;
  pat: boolean;
  clientId: string;
  /** Write-only: "" on an edit keeps the stored secret. */
  secret: string;
  virtualDirectory: string;
}

const INTEGRATION_PATHS = ["host", "scm_id", "pat", "oauth_client_id", "oauth_plaintext_client_secret", "virtual_directory"];

function IntegrationFields({ value, onChange, errors, editing }: { value: IntegrationInput; onChange: (v: IntegrationInput) => void; errors: Map<string, string>; editing: boolean }) {
  const set = (patch: Partial<IntegrationInput>) => onChange({ ...value, ...patch });
  return (
    <>
      {!editing && (
        <div className="config-row">
          <Field label="Host" error={errors.get("host")} help="A host name with an optional port, e.g. github.com or git.example.com:8443.">
            <input value={value.host} onChange={(e) => set({ host: e.target.value })} autoComplete="off" />
          </Field>
          <Field label="SCM" error={errors.get("scm_id")} help="github, gitlab, bitbucket, azuredevops, …">
            <input value={value.scmId} onChange={(e) => set({ scmId: e.target.value })} list="scm-ids" autoComplete="off" />
          </Field>
          <datalist id="scm-ids">
            {["github", "gitlab", "bitbucket", "azuredevops"].map((s) => (
              <option key={s} value={s} />
            ))}
          </datalist>
        </div>
      )}
      <div className="field check">
        <label>
          <input type="checkbox" checked={value.pat} onChange={(e) => set({ pat: e.target.checked })} /> Personal access tokens accepted
        </label>
        {errors.get("pat") && <p className="field-error">{errors.get("pat")}</p>}
      </div>
      <div className="config-row">
        <Field label="OAuth client id" error={errors.get("oauth_client_id")} help={editing ? "Empty removes OAuth (and the OAuth tokens users stored for this host)." : "Optional; needs the runner to have signed up."}>
          <input value={value.clientId} onChange={(e) => set({ clientId: e.target.value })} autoComplete="off" />
        </Field>
        <Field
          label="OAuth client secret"
          error={errors.get("oauth_plaintext_client_secret")}
          help={editing ? "Write-only: leave empty to keep the stored one. It is sealed to the runner's key and never shown." : "Write-only: sealed to the runner's key, never shown again."}
        >
          <input type="password" value={value.secret} onChange={(e) => set({ secret: e.target.value })} autoComplete="new-password" />
        </Field>
      </div>
      <Field label="Virtual directory" error={errors.get("virtual_directory")} help="Optional (Azure DevOps Server collections, for instance).">
        <input value={value.virtualDirectory} onChange={(e) => set({ virtualDirectory: e.target.value })} autoComplete="off" />
      </Field>
    </>
  );
}

const EMPTY_INTEGRATION: IntegrationInput = { host: "", scmId: "", pat: true, clientId: "", secret: "", virtualDirectory: "" };

function AddIntegration({ runnerId, onDone }: { runnerId: string; onDone: () => Promise<unknown> }) {
  const [input, setInput] = useState(EMPTY_INTEGRATION);
  const create = useMutation(RunnerConfigurationService.method.createSCMIntegration);
  const { errors, submit, top } = useSubmit(INTEGRATION_PATHS);
  const add = async (event: FormEvent) => {
    event.preventDefault();
    const ok = await submit(() =>
      create.mutateAsync({
        runnerId,
        host: input.host.trim(),
        scmId: input.scmId.trim(),
        pat: input.pat,
        oauthClientId: input.clientId || undefined,
        oauthPlaintextClientSecret: input.secret || undefined,
        virtualDirectory: input.virtualDirectory || undefined,
      }),
    );
    if (ok) {
      setInput(EMPTY_INTEGRATION);
      await onDone();
    }
  };
  return (
    <form onSubmit={add} noValidate aria-label="Add an SCM integration">
      <h3>Add an integration</h3>
      {top}
      <IntegrationFields value={input} onChange={setInput} errors={errors} editing={false} />
      <div className="actions">
        <button type="submit" disabled={create.isPending}>
          Add integration
        </button>
      </div>
    </form>
  );
}

function EditIntegration({ integration, onDone }: { integration: SCMIntegration; onDone: () => Promise<unknown> }) {
  const initial: IntegrationInput = {
    host: integration.host,
    scmId: integration.scmId,
    pat: integration.pat,
    clientId: integration.oauth?.clientId ?? "",
    secret: "",
    virtualDirectory: integration.virtualDirectory ?? "",
  };
  const [input, setInput] = useState(initial);
  const update = useMutation(RunnerConfigurationService.method.updateSCMIntegration);
  const { errors, submit, top } = useSubmit(INTEGRATION_PATHS);
  const save = async (event: FormEvent) => {
    event.preventDefault();
    // Presence-based: only what changed is sent.
    const ok = await submit(() =>
      update.mutateAsync({
        id: integration.id,
        pat: input.pat !== initial.pat ? input.pat : undefined,
        oauthClientId: input.clientId !== initial.clientId ? input.clientId : undefined,
        oauthPlaintextClientSecret: input.secret || undefined,
        virtualDirectory: input.virtualDirectory !== initial.virtualDirectory ? input.virtualDirectory : undefined,
      }),
    );
    if (ok) await onDone();
  };
  return (
    <form onSubmit={save} noValidate aria-label={`Edit the integration for ${integration.host}`}>
      <h3>Edit {integration.host}</h3>
      {top}
      <IntegrationFields value={input} onChange={setInput} errors={errors} editing />
      <div className="actions">
        <button type="submit" disabled={update.isPending}>
          Save integration
        </button>
        <button type="button" className="secondary" onClick={() => void onDone()}>
          Cancel
        </button>
      </div>
    </form>
  );
}

export function ScmIntegrations({ runnerId, enabled }: { runnerId: string; enabled: boolean }) {
  const list = useQuery(RunnerConfigurationService.method.listSCMIntegrations, { filter: { runnerIds: [runnerId] }, pagination: PAGE }, { enabled });
  const manages = useManages(runnerId, enabled);
  const [editing, setEditing] = useState<string>();
  const remove = useMutation(RunnerConfigurationService.method.deleteSCMIntegration);
  const integrations = list.data?.integrations ?? [];
  const edited = integrations.find((i) => i.id === editing);
  return (
    <Section title="SCM integrations" id="scm-integrations">
      {list.error && <p className="field-error">{describeError(list.error)}</p>}
      {integrations.length === 0 ? (
        <p className="help">No SCM integrations: the runner reaches only public repositories.</p>
      ) : (
        <div className="config-table">
        <table className="kv scm">
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">SCM</th>
              <th scope="col">Authentication</th>
              {manages && (
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {integrations.map((i) => (
              <tr key={i.id}>
                <th scope="row">
                  {i.host}
                  {i.virtualDirectory ? `/${i.virtualDirectory}` : ""}
                </th>
                <td>{i.scmId}</td>
                <td>{[i.pat ? "personal access tokens" : "", i.oauth?.clientId ? `OAuth app ${i.oauth.clientId}` : ""].filter(Boolean).join(", ") || "none"}</td>
                {manages && (
                  <td>
                    <div className="actions">
                    <button type="button" className="secondary" onClick={() => setEditing(i.id)}>
                      Edit<span className="visually-hidden"> {i.host}</span>
                    </button>
                    <Confirm
                      id={`delete-scm-${i.id}`}
                      title={`Delete the integration for ${i.host}?`}
                      text="The runner stops integrating with this host, and every token users stored for it on this runner is deleted."
                      action="Delete integration"
                      onConfirm={async () => {
                        await remove.mutateAsync({ id: i.id });
                        if (editing === i.id) setEditing(undefined);
                        await list.refetch();
                        return true;
                      }}
                    >
                      {(open) => (
                        <button type="button" className="danger" onClick={open}>
                          Delete…<span className="visually-hidden"> {i.host}</span>
                        </button>
                      )}
                    </Confirm>
                    </div>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
      {manages === false && <p className="help">You may use this runner but not manage it, so you cannot change its integrations.</p>}
      {manages &&
        (edited ? (
          <EditIntegration
            key={edited.id}
            integration={edited}
            onDone={async () => {
              setEditing(undefined);
              await list.refetch();
            }}
          />
        ) : (
          <AddIntegration runnerId={runnerId} onDone={() => list.refetch()} />
        ))}
    </Section>
  );
}

// ---- Your host token --------------------------------------------------------------------------

const TOKEN_PATHS = ["host", "token", "expires_at", "scopes", "source", "integration_id"];

export function YourHostTokens({ runnerId, enabled }: { runnerId: string; enabled: boolean }) {
  const identity = useQuery(IdentityService.method.getAuthenticatedIdentity, {});
  const me = identity.data?.subject?.id;
  const tokens = useQuery(
    RunnerConfigurationService.method.listHostAuthenticationTokens,
    { filter: { runnerId, subjectId: me }, pagination: PAGE },
    { enabled: enabled && me !== undefined },
  );
  const integrations = useQuery(RunnerConfigurationService.method.listSCMIntegrations, { filter: { runnerIds: [runnerId] }, pagination: PAGE }, { enabled });
  const store = useMutation(RunnerConfigurationService.method.createHostAuthenticationToken);
  const remove = useMutation(RunnerConfigurationService.method.deleteHostAuthenticationToken);
  const [host, setHost] = useState("");
  const [token, setToken] = useState("");
  const [expires, setExpires] = useState("");
  const [result, setResult] = useState<string>();
  const { errors, submit, top } = useSubmit(TOKEN_PATHS);
  const mine = tokens.data?.tokens ?? [];
  const hosts = (integrations.data?.integrations ?? []).filter((i) => i.pat).map((i) => i.host);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setResult(undefined);
    const replacing = mine.some((t) => t.host === host.trim().toLowerCase());
    const expiresAt = expires ? new Date(expires) : undefined;
    // Storing again for the same host replaces the token (and keeps its id).
    const ok = await submit(() =>
      store.mutateAsync({
        runnerId,
        host: host.trim(),
        token,
        source: HostAuthenticationTokenSource.PAT,
        expiresAt: expiresAt && !Number.isNaN(expiresAt.getTime()) ? timestampFromDate(expiresAt) : undefined,
      }),
    );
    if (ok) {
      setToken("");
      setExpires("");
      setResult(replacing ? `Token for ${host.trim()} replaced.` : `Token for ${host.trim()} stored.`);
      await tokens.refetch();
    }
  };

  return (
    <Section title="Your host token" id="host-tokens">
      <p className="help">
        Your personal access token for a host, used by this runner for your SCM calls (private repositories). It is write-only: only this runner can read it,
        sealed to its key; this page shows when and how it was stored, never the value.
      </p>
      {tokens.error && <p className="field-error">{describeError(tokens.error)}</p>}
      {mine.length > 0 && (
        <div className="config-table">
        <table className="kv tokens">
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">Source</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {mine.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.host}</th>
                <td>{enumLabel(HostAuthenticationTokenSourceSchema, t.source)}</td>
                <td>{t.expiresAt ? timestampText(t.expiresAt) : "never"}</td>
                <td>
                    <div className="actions">
                  <button type="button" className="secondary" onClick={() => (setHost(t.host), setResult(undefined))}>
                    Replace<span className="visually-hidden"> the token for {t.host}</span>
                  </button>
                  <Confirm
                    id={`delete-token-${t.id}`}
                    title={`Delete your token for ${t.host}?`}
                    text="The runner can no longer reach your private repositories on this host until you store a token again."
                    action="Delete token"
                    onConfirm={async () => {
                      await remove.mutateAsync({ id: t.id });
                      setResult(`Token for ${t.host} deleted.`);
                      await tokens.refetch();
                      return true;
                    }}
                  >
                    {(open) => (
                      <button type="button" className="danger" onClick={open}>
                        Delete…<span className="visually-hidden"> the token for {t.host}</span>
                      </button>
                    )}
                  </Confirm>
                    </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
      <form onSubmit={save} noValidate aria-label="Store your token for a host">
        {top}
        <div className="config-row">
          <Field label="Token host" error={errors.get("host")}>
            <input value={host} onChange={(e) => setHost(e.target.value)} list="token-hosts" autoComplete="off" />
          </Field>
          <datalist id="token-hosts">
            {hosts.map((h) => (
              <option key={h} value={h} />
            ))}
          </datalist>
          <Field label="Personal access token" error={errors.get("token")}>
            <input type="password" value={token} onChange={(e) => setToken(e.target.value)} autoComplete="off" />
          </Field>
          <Field label="Token expires" error={errors.get("expires_at")} help="Optional, as the host told you.">
            <input type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
          </Field>
        </div>
        <div className="actions">
          <button type="submit" disabled={store.isPending}>
            {mine.some((t) => t.host === host.trim().toLowerCase()) ? "Replace token" : "Store token"}
          </button>
          <span role="status" className="result">
            {result ?? ""}
          </span>
        </div>
      </form>
    </Section>
  );
}

// ---- Environment classes ----------------------------------------------------------------------

export function EnvironmentClasses({ runnerId, enabled }: { runnerId: string; enabled: boolean }) {
  const list = useQuery(RunnerConfigurationService.method.listEnvironmentClasses, { filter: { runnerIds: [runnerId] }, pagination: PAGE }, { enabled });
  const manages = useManages(runnerId, enabled);
  const update = useMutation(RunnerConfigurationService.method.updateEnvironmentClass);
  const create = useMutation(RunnerConfigurationService.method.createEnvironmentClass);
  const [displayName, setDisplayName] = useState("");
  const [description, setDescription] = useState("");
  const [failure, setFailure] = useState<string>();
  const { errors, submit, top } = useSubmit(["display_name", "description"]);
  const classes = list.data?.environmentClasses ?? [];

  const toggle = async (id: string, on: boolean) => {
    setFailure(undefined);
    try {
      await update.mutateAsync({ environmentClassId: id, enabled: on });
    } catch (err) {
      setFailure(describeError(err));
    }
    await list.refetch();
  };
  const add = async (event: FormEvent) => {
    event.preventDefault();
    const ok = await submit(() => create.mutateAsync({ runnerId, displayName, description }));
    if (ok) {
      setDisplayName("");
      setDescription("");
      await list.refetch();
    }
  };

  return (
    <Section title="Environment classes" id="environment-classes">
      {list.error && <p className="field-error">{describeError(list.error)}</p>}
      {classes.length === 0 ? (
        <p className="help">No environment classes: the runner offers them when it signs up, or an admin adds them here.</p>
      ) : (
        <div className="config-table">
        <table className="kv classes">
          <thead>
            <tr>
              <th scope="col">Class</th>
              <th scope="col">Description</th>
              <th scope="col">Enabled</th>
            </tr>
          </thead>
          <tbody>
            {classes.map((c) => (
              <tr key={c.id}>
                <th scope="row" title={c.id}>
                  {c.displayName}
                </th>
                <td>{c.description || "—"}</td>
                <td>
                  <input
                    type="checkbox"
                    role="switch"
                    aria-label={`${c.displayName} enabled`}
                    checked={c.enabled}
                    disabled={manages !== true || update.isPending}
                    onChange={(e) => void toggle(c.id, e.target.checked)}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
      {failure && (
        <p className="field-error" role="alert">
          {failure}
        </p>
      )}
      {manages && (
        <form onSubmit={add} noValidate aria-label="Add an environment class">
          {top}
          <div className="config-row">
            <Field label="Class name" error={errors.get("display_name")}>
              <input value={displayName} onChange={(e) => setDisplayName(e.target.value)} autoComplete="off" />
            </Field>
            <Field label="Class description" error={errors.get("description")}>
              <input value={description} onChange={(e) => setDescription(e.target.value)} autoComplete="off" />
            </Field>
          </div>
          <div className="actions">
            <button type="submit" disabled={create.isPending}>
              Add environment class
            </button>
          </div>
        </form>
      )}
    </Section>
  );
}
