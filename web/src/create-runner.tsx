// Create a runner: the API validates (field errors come back at the field, in its own words),
// then the exchange token is shown once.
import { useState, type FormEvent } from "react";
import { useMutation } from "@connectrpc/connect-query";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  RunnerPhase,
  RunnerReleaseChannel,
  RunnerService,
} from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider, RunnerProviderSchema } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import { describeError, fieldErrors, type Settings } from "./api.js";
import { EnumOptions, Field, FormErrors, otherErrors, RELEASE_PATHS, ReleaseFields, UpdateWindowFields, WINDOW_PATHS, windowOf, type WindowInput } from "./fields.js";
import { TokenPanel } from "./token-panel.js";
import { useRefreshRunners } from "./live.js";
import { Link } from "./router.js";

const PATHS = {
  name: "name",
  provider: "provider",
  manager: "runner_manager_id",
  region: "spec.configuration.region",
};

export function CreateRunner({ settings, onClose }: { settings: Settings; onClose: () => void }) {
  const [name, setName] = useState("");
  const [provider, setProvider] = useState<number>(RunnerProvider.LINUX_HOST);
  const [manager, setManager] = useState("");
  const [region, setRegion] = useState("");
  const [channel, setChannel] = useState<number>(RunnerReleaseChannel.STABLE);
  const [autoUpdate, setAutoUpdate] = useState(true);
  const [windowInput, setWindowInput] = useState<WindowInput>({ start: "", end: "" });
  const [errors, setErrors] = useState(new Map<string, string>());
  const [failure, setFailure] = useState<string>();
  const [created, setCreated] = useState<{ runnerId: string; name: string; token: string; expiresAt: Date }>();
  const refresh = useRefreshRunners();
  const create = useMutation(RunnerService.method.createRunner);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setFailure(undefined);
    const updateWindow = windowOf(windowInput);
    if (updateWindow.errors.size > 0) {
      setErrors(updateWindow.errors);
      return;
    }
    try {
      const response = await create.mutateAsync({
        name,
        provider,
        runnerManagerId: provider === RunnerProvider.MANAGED ? manager.trim() : "",
        spec: {
          desiredPhase: RunnerPhase.ACTIVE,
          configuration: { region, releaseChannel: channel, autoUpdate, updateWindow: updateWindow.window },
        },
      });
      const runner = response.runner!;
      const createdAt = runner.createdAt ? timestampDate(runner.createdAt) : new Date();
      setErrors(new Map());
      setCreated({ runnerId: runner.runnerId, name: runner.name, token: response.exchangeToken, expiresAt: new Date(createdAt.getTime() + settings.exchangeTokenTtlSeconds * 1000) });
      void refresh();
    } catch (err) {
      const byField = fieldErrors(err);
      setErrors(byField);
      if (byField.size === 0) setFailure(describeError(err));
    }
  };

  if (created) {
    return (
      <section className="card" id="create-runner" aria-labelledby="created-title">
        <h2 id="created-title">
          Runner <Link to={`/runners/${created.runnerId}`}>{created.name}</Link> created
        </h2>
        <TokenPanel
          runnerId={created.runnerId}
          token={created.token}
          expiresAt={created.expiresAt}
          onDone={() => {
            setCreated(undefined);
            onClose();
          }}
        />
      </section>
    );
  }

  const shown = [...Object.values(PATHS), ...RELEASE_PATHS, ...WINDOW_PATHS];
  return (
    <section className="card" id="create-runner" aria-labelledby="create-title">
      <h2 id="create-title">Create a runner</h2>
      <form onSubmit={submit} noValidate>
        <FormErrors messages={[...(failure ? [failure] : []), ...otherErrors(errors, shown)]} />
        <Field label="Name" error={errors.get(PATHS.name)} help="3 to 127 characters.">
          <input value={name} onChange={(e) => setName(e.target.value)} autoFocus />
        </Field>
        <Field label="Provider" error={errors.get(PATHS.provider)}>
          <select value={provider} onChange={(e) => setProvider(Number(e.target.value))}>
            <EnumOptions schema={RunnerProviderSchema} />
          </select>
        </Field>
        {provider === RunnerProvider.MANAGED && (
          <Field label="Runner manager id" error={errors.get(PATHS.manager)} help="The UUID of the runner manager that operates it.">
            <input value={manager} onChange={(e) => setManager(e.target.value)} spellCheck={false} />
          </Field>
        )}
        <Field label="Region" error={errors.get(PATHS.region)} help="A hint, such as eu-central-1; the runner reports where it really runs.">
          <input value={region} onChange={(e) => setRegion(e.target.value)} />
        </Field>
        <ReleaseFields channel={channel} onChannel={setChannel} autoUpdate={autoUpdate} onAutoUpdate={setAutoUpdate} errors={errors} />
        <UpdateWindowFields value={windowInput} onChange={setWindowInput} errors={errors} />
        <div className="actions">
          <button type="submit" disabled={create.isPending}>
            {create.isPending ? "Creating…" : "Create runner"}
          </button>
          <button type="button" className="secondary" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
