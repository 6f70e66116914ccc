// One runner: its status and spec (every field the API returns), edit, a new exchange token,
// its policies and configuration (SCM integrations, your host token, environment classes), delete
// with confirmation.
import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { toJsonString } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import {
  LogLevelSchema,
  RunnerCapabilitySchema,
  RunnerPhaseSchema,
  RunnerReleaseChannel,
  RunnerReleaseChannelSchema,
  RunnerSchema,
  RunnerService,
  RunnerVariantSchema,
  type Runner,
} from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerKindSchema, RunnerProviderSchema } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import { PrincipalSchema } from "../../gen/gitpod/v1/identity_pb.js";
import { describeError, fieldErrors, type Settings } from "./api.js";
import { enumLabel, timestampText } from "./format.js";
import { Field, FormErrors, otherErrors, RELEASE_PATHS, ReleaseFields, Section, UpdateWindowFields, WINDOW_PATHS, windowOf, type WindowInput } from "./fields.js";
import { phaseExpiresAt, phaseView } from "./phase.js";
import { PhaseBadge } from "./phase-badge.js";
import { Link, navigate } from "./router.js";
import { CopyField, TokenPanel } from "./token-panel.js";
import { useNow, useRefreshAt, useRefreshRunners } from "./live.js";
import { Policies } from "./policies.js";
import { EnvironmentClasses, ScmIntegrations, YourHostTokens } from "./runner-configuration.js";

function Facts({ rows }: { rows: [string, ReactNode][] }) {
  return (
    <dl className="facts">
      {rows.map(([term, value]) => (
        <div key={term}>
          <dt>{term}</dt>
          <dd>{value === "" || value === undefined || value === null ? "—" : value}</dd>
        </div>
      ))}
    </dl>
  );
}

function base64(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

export function RunnerDetail({ runnerId, settings }: { runnerId: string; settings: Settings }) {
  const now = useNow();
  // Set while this page deletes the runner: it must not read it again (its DELETE event may come
  // before DeleteRunner's answer).
  const [deleting, setDeleting] = useState(false);
  const query = useQuery(RunnerService.method.getRunner, { runnerId }, { enabled: !deleting });
  const runner = query.data?.runner;
  useRefreshAt([runner && phaseExpiresAt(runner, settings)]);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [runnerId]);

  if (query.error) {
    const missing = query.error instanceof ConnectError && (query.error.code === Code.NotFound || query.error.code === Code.InvalidArgument);
    return (
      <>
        <p>
          <Link to="/">← All runners</Link>
        </p>
        <h1 ref={heading} tabIndex={-1}>
          {missing ? "Runner not found" : "Could not read the runner"}
        </h1>
        <p className="page-error" role="alert">
          {missing ? "There is no runner with this id in your organization, or it was deleted." : describeError(query.error)}
        </p>
      </>
    );
  }
  if (!runner) return <p role="status">Loading…</p>;

  const status = runner.status;
  const config = runner.spec?.configuration;
  const window = config?.updateWindow;
  return (
    <>
      <p>
        <Link to="/">← All runners</Link>
      </p>
      <div className="page-head">
        <h1 ref={heading} tabIndex={-1}>
          {runner.name}
        </h1>
        <PhaseBadge view={phaseView(runner, now, settings)} />
      </div>

      <div className="grid">
        <Section title="Status" id="status">
          <Facts
            rows={[
              ["Phase", enumLabel(RunnerPhaseSchema, status?.phase ?? 0)],
              ["Message", status?.message],
              ["Status updated", timestampText(status?.updatedAt)],
              ["Version", status?.version],
              ["Region", status?.region],
              ["System details", status?.systemDetails],
              ["Log URL", status?.logUrl],
              ["LLM URL", status?.llmUrl],
              ["Support bundle URL", status?.supportBundleUrl],
              ["Public key", status?.publicKey.length ? <code className="wrap">{base64(status.publicKey)}</code> : ""],
              [
                "Gateway",
                status?.gatewayInfo?.gateway
                  ? `${status.gatewayInfo.gateway.name} (${status.gatewayInfo.gateway.url}${status.gatewayInfo.gateway.region ? `, ${status.gatewayInfo.gateway.region}` : ""})${
                      status.gatewayInfo.latency ? `, ${durationMs(status.gatewayInfo.latency)} ms` : ""
                    }`
                  : "",
              ],
              [
                "Capabilities",
                status?.capabilities.length ? (
                  <ul className="plain">
                    {status.capabilities.map((c) => (
                      <li key={c}>{enumLabel(RunnerCapabilitySchema, c)}</li>
                    ))}
                  </ul>
                ) : (
                  ""
                ),
              ],
              [
                "Additional info",
                status?.additionalInfo.length ? (
                  <table className="kv">
                    <tbody>
                      {status.additionalInfo.map((f) => (
                        <tr key={f.key}>
                          <th scope="row">{f.key}</th>
                          <td>{f.value}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                ) : (
                  ""
                ),
              ],
            ]}
          />
        </Section>

        <Section title="Runner" id="identity">
          <Facts
            rows={[
              ["Id", <code>{runner.runnerId}</code>],
              ["Provider", enumLabel(RunnerProviderSchema, runner.provider)],
              ["Kind", enumLabel(RunnerKindSchema, runner.kind)],
              ["Runner manager", runner.runnerManagerId],
              ["Creator", runner.creator ? `${runner.creator.id} (${enumLabel(PrincipalSchema, runner.creator.principal)})` : ""],
              ["Created", timestampText(runner.createdAt)],
              ["Updated", timestampText(runner.updatedAt)],
            ]}
          />
        </Section>

        <Section title="Spec" id="spec">
          <Facts
            rows={[
              ["Desired phase", enumLabel(RunnerPhaseSchema, runner.spec?.desiredPhase ?? 0)],
              ["Variant", enumLabel(RunnerVariantSchema, runner.spec?.variant ?? 0)],
              ["Preferred region", config?.region],
              ["Release channel", enumLabel(RunnerReleaseChannelSchema, config?.releaseChannel ?? 0)],
              ["Auto update", config?.autoUpdate ? "yes" : "no"],
              ["Update window (UTC)", window?.startHour !== undefined ? `${window.startHour}:00 → ${window.endHour ?? (window.startHour + 2) % 24}:00` : "any time"],
              ["Log level", enumLabel(LogLevelSchema, config?.logLevel ?? 0)],
              ["Dev container image cache", config?.devcontainerImageCacheEnabled ? "on" : "off"],
              ["Continuous profiling", config?.continuousProfiling ? "on" : "off"],
              ["Metrics", config?.metrics?.enabled ? `on, ${config.metrics.url || "managed"}${config.metrics.username ? ` as ${config.metrics.username}` : ""}` : "off"],
            ]}
          />
        </Section>

        <EditRunner runner={runner} />
        <NewToken runner={runner} settings={settings} />
        <Logs runner={runner} />
        <Policies runnerId={runner.runnerId} enabled={!deleting} />
        <ScmIntegrations runnerId={runner.runnerId} enabled={!deleting} />
        <YourHostTokens runnerId={runner.runnerId} enabled={!deleting} />
        <EnvironmentClasses runnerId={runner.runnerId} enabled={!deleting} />
        <DeleteRunner runner={runner} onDeleting={setDeleting} />
      </div>

      <details className="card raw">
        <summary>Everything the API returned (JSON)</summary>
        <pre>{toJsonString(RunnerSchema, runner, { prettySpaces: 2 })}</pre>
      </details>
    </>
  );
}

function EditRunner({ runner }: { runner: Runner }) {
  const config = runner.spec?.configuration;
  const initialWindow = (): WindowInput => ({
    start: config?.updateWindow?.startHour !== undefined ? String(config.updateWindow.startHour) : "",
    end: config?.updateWindow?.endHour !== undefined ? String(config.updateWindow.endHour) : "",
  });
  const [name, setName] = useState(runner.name);
  const [channel, setChannel] = useState<number>(config?.releaseChannel || RunnerReleaseChannel.STABLE);
  const [autoUpdate, setAutoUpdate] = useState(config?.autoUpdate ?? false);
  const [windowInput, setWindowInput] = useState(initialWindow);
  const [errors, setErrors] = useState(new Map<string, string>());
  const [result, setResult] = useState<string>();
  const update = useMutation(RunnerService.method.updateRunner);
  const refresh = useRefreshRunners();

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setResult(undefined);
    const parsed = windowOf(windowInput);
    if (parsed.errors.size > 0) {
      setErrors(parsed.errors);
      return;
    }
    const before = initialWindow();
    const windowChanged = before.start !== windowInput.start || before.end !== windowInput.end;
    try {
      // A partial update: only what changed is sent (an empty window clears it).
      await update.mutateAsync({
        runnerId: runner.runnerId,
        name: name !== runner.name ? name : undefined,
        spec: {
          configuration: {
            releaseChannel: channel !== config?.releaseChannel ? channel : undefined,
            autoUpdate: autoUpdate !== config?.autoUpdate ? autoUpdate : undefined,
            updateWindow: windowChanged ? (parsed.window ?? {}) : undefined,
          },
        },
      });
      setErrors(new Map());
      setResult("Saved.");
      await refresh();
    } catch (err) {
      const byField = fieldErrors(err);
      setErrors(byField);
      if (byField.size === 0) setResult(`Not saved: ${describeError(err)}`);
    }
  };

  const shown = ["name", ...RELEASE_PATHS, ...WINDOW_PATHS];
  return (
    <Section title="Edit" id="edit">
      <form onSubmit={submit} noValidate>
        <FormErrors messages={otherErrors(errors, shown)} />
        <Field label="Name" error={errors.get("name")}>
          <input value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <ReleaseFields channel={channel} onChannel={setChannel} autoUpdate={autoUpdate} onAutoUpdate={setAutoUpdate} errors={errors} />
        <UpdateWindowFields value={windowInput} onChange={setWindowInput} errors={errors} />
        <div className="actions">
          <button type="submit" disabled={update.isPending}>
            {update.isPending ? "Saving…" : "Save changes"}
          </button>
          <span role="status" className="result">
            {result ?? ""}
          </span>
        </div>
      </form>
    </Section>
  );
}

/** A token minted on request: the value with its expiry, or the reason it could not be made. */
function useMintedToken(mint: () => Promise<{ value: string; lifetimeMs: number }>) {
  const [token, setToken] = useState<{ value: string; expiresAt: Date }>();
  const [failure, setFailure] = useState<string>();
  const [pending, setPending] = useState(false);
  const issue = async () => {
    setFailure(undefined);
    setPending(true);
    try {
      const { value, lifetimeMs } = await mint();
      setToken({ value, expiresAt: new Date(Date.now() + lifetimeMs) });
    } catch (err) {
      setFailure(describeError(err));
    } finally {
      setPending(false);
    }
  };
  return { token, clear: () => setToken(undefined), issue, pending, failure };
}

function MintButton({ label, minted }: { label: string; minted: ReturnType<typeof useMintedToken> }) {
  return (
    <>
      <button type="button" onClick={minted.issue} disabled={minted.pending}>
        {label}
      </button>
      {minted.failure && (
        <p className="field-error" role="alert">
          {minted.failure}
        </p>
      )}
    </>
  );
}

// The runner serves its own logs and support bundle (status.log_url / support_bundle_url) and
// accepts a one-hour logs token for itself (docs/oidc.md). The page's CSP allows only this origin,
// so it does not fetch them itself: it gives the token and the command that does.
const LOGS_TOKEN_LIFETIME_MS = 3_600_000;

function Logs({ runner }: { runner: Runner }) {
  const create = useMutation(RunnerService.method.createRunnerLogsToken);
  const minted = useMintedToken(async () => ({
    value: (await create.mutateAsync({ runnerId: runner.runnerId })).accessToken,
    lifetimeMs: LOGS_TOKEN_LIFETIME_MS,
  }));
  const { token } = minted;
  const logUrl = runner.status?.logUrl ?? "";
  const bundleUrl = runner.status?.supportBundleUrl ?? "";
  return (
    <Section title="Logs" id="logs">
      <Facts rows={[["Logs", logUrl || "not reported by the runner"], ["Support bundle", bundleUrl || "not reported by the runner"]]} />
      {token ? (
        <>
          <CopyField label="Logs token" value={token.value} />
          <p className="help">Valid for this runner only, until {token.expiresAt.toLocaleTimeString()}.</p>
          {logUrl && <CopyField label="Read the logs" value={`curl -sS -H 'Authorization: Bearer ${token.value}' '${logUrl}'`} multiline />}
          <button type="button" onClick={minted.clear}>
            Done
          </button>
        </>
      ) : (
        <>
          <p className="help">A one-hour token that this runner's logs and support bundle accept, and nothing else.</p>
          <MintButton label="New logs token" minted={minted} />
        </>
      )}
    </Section>
  );
}

function NewToken({ runner, settings }: { runner: Runner; settings: Settings }) {
  const create = useMutation(RunnerService.method.createRunnerToken);
  const minted = useMintedToken(async () => ({
    value: (await create.mutateAsync({ runnerId: runner.runnerId })).exchangeToken,
    lifetimeMs: settings.exchangeTokenTtlSeconds * 1000,
  }));
  const { token } = minted;
  return (
    <Section title="Tokens" id="token">
      {token ? (
        <TokenPanel runnerId={runner.runnerId} token={token.value} expiresAt={token.expiresAt} onDone={minted.clear} />
      ) : (
        <>
          <p className="help">
            A new one-time token for this runner, for a new machine or a lost state directory. Access tokens issued before keep working.
          </p>
          <MintButton label="New exchange token" minted={minted} />
        </>
      )}
    </Section>
  );
}

function DeleteRunner({ runner, onDeleting }: { runner: Runner; onDeleting: (deleting: boolean) => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [failure, setFailure] = useState<string>();
  const remove = useMutation(RunnerService.method.deleteRunner);
  const refresh = useRefreshRunners();
  const confirm = async () => {
    setFailure(undefined);
    onDeleting(true);
    try {
      await remove.mutateAsync({ runnerId: runner.runnerId });
      dialog.current?.close();
      // Away first: the list re-reads, and this page does not ask again for a runner that is gone.
      navigate("/");
      void refresh();
    } catch (err) {
      onDeleting(false);
      setFailure(describeError(err));
    }
  };
  return (
    <Section title="Delete" id="delete">
      <p className="help">Deleting a runner revokes its exchange and access tokens at once. It cannot be undone.</p>
      <button type="button" className="danger" onClick={() => dialog.current?.showModal()}>
        Delete runner…
      </button>
      <dialog ref={dialog} aria-labelledby="delete-dialog-title" aria-describedby="delete-dialog-text">
        <h2 id="delete-dialog-title">Delete {runner.name}?</h2>
        <p id="delete-dialog-text">Its tokens stop working at once, and a running runner process is cut off. This cannot be undone.</p>
        {failure && (
          <p className="field-error" role="alert">
            {failure}
          </p>
        )}
        <div className="actions">
          <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>
            Cancel
          </button>
          <button type="button" className="danger" onClick={confirm} disabled={remove.isPending}>
            Delete runner
          </button>
        </div>
      </dialog>
    </Section>
  );
}
