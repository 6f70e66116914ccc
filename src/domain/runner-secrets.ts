// The runner secrets set with CreateRunner/UpdateRunner (spec.configuration.metrics.password and
// honeycomb_api_key): sealed with the server secrets key at rest (src/domain/secrets.ts, bound to
// the runner id), opened only to be sealed again to the runner's own key (GetRunnerConfiguration).
// Without a configured secrets key, setting one answers failed_precondition naming
// SECRETS_KEY_FILE. Values stored before migration 0008 sit in plaintext columns until the first
// server with a key seals them (sealPlaintext, at start).
import type { NewRunner, RunnerRow, RunnerSpecPatch, RunnerStore, SealedRunnerColumn } from "../store/runner-store.js";
import { failedPrecondition } from "./errors.js";
import type { SealedColumn, SecretsKeyring } from "./secrets.js";

const encoder = new TextEncoder();
const context = (column: SealedRunnerColumn, runnerId: string) => `runners.${column}:${runnerId}`;

export class RunnerSecrets {
  constructor(private readonly keyring: SecretsKeyring | undefined) {}

  private seal(column: SealedRunnerColumn, runnerId: string, value: string, field: string): Uint8Array | null {
    if (value === "") return null;
    if (!this.keyring) {
      throw failedPrecondition(
        `${field}: runner secrets are stored encrypted with the server secrets key, and none is configured: set SECRETS_KEY_FILE (or SECRETS_KEY) on every replica`,
      );
    }
    return this.keyring.seal(encoder.encode(value), context(column, runnerId));
  }

  /** The new runner with its metrics password sealed (the plaintext field emptied). */
  sealNew(runner: NewRunner): NewRunner {
    if (runner.metricsPassword === "") return runner;
    const sealed = this.seal("metrics_password_sealed", runner.id, runner.metricsPassword, "spec.configuration.metrics.password");
    return Object.assign({}, runner, { metricsPassword: "", metricsPasswordSealed: sealed });
  }

  /** The patch with present secrets sealed (and the legacy plaintext columns emptied). */
  sealPatch(runnerId: string, patch: RunnerSpecPatch): RunnerSpecPatch {
    const sealed = { ...patch };
    if (patch.metricsPassword !== undefined) {
      sealed.metricsPasswordSealed = this.seal("metrics_password_sealed", runnerId, patch.metricsPassword, "spec.configuration.metrics.password");
      sealed.metricsPassword = "";
    }
    if (patch.honeycombApiKey !== undefined) {
      sealed.honeycombApiKeySealed = this.seal("honeycomb_api_key_sealed", runnerId, patch.honeycombApiKey, "spec.configuration.honeycomb_api_key");
      sealed.honeycombApiKey = "";
    }
    return sealed;
  }

  /** The plaintext secrets of a runner (sealed ones opened, legacy plaintext as stored). */
  open(row: RunnerRow): { metricsPassword: string; honeycombApiKey: string } {
    const opened = (sealed: Uint8Array | null, column: SealedRunnerColumn, legacy: string) => {
      if (!sealed) return legacy;
      if (!this.keyring) throw failedPrecondition("the runner's secrets are sealed with the server secrets key, which is not configured: set SECRETS_KEY_FILE (or SECRETS_KEY)");
      const plaintext = this.keyring.open(sealed, context(column, row.id));
      try {
        return plaintext.toString("utf8");
      } finally {
        plaintext.fill(0);
      }
    };
    return {
      metricsPassword: opened(row.metricsPasswordSealed, "metrics_password_sealed", row.metricsPassword),
      honeycombApiKey: opened(row.honeycombApiKeySealed, "honeycomb_api_key_sealed", row.honeycombApiKey),
    };
  }

  /** Seals what earlier versions stored in plaintext; the number of runners sealed. */
  async sealPlaintext(store: RunnerStore): Promise<number> {
    if (!this.keyring) return 0;
    let sealed = 0;
    for (const row of await store.plaintextSecrets()) {
      const done = await store.replacePlaintextSecrets(row, {
        metricsPassword: this.seal("metrics_password_sealed", row.id, row.metricsPassword, "metrics_password"),
        honeycombApiKey: this.seal("honeycomb_api_key_sealed", row.id, row.honeycombApiKey, "honeycomb_api_key"),
      });
      if (done) sealed++;
    }
    return sealed;
  }
}

/** The sealed runner secret columns, for `cli secrets-key reseal`. */
export function sealedRunnerColumns(store: RunnerStore): SealedColumn[] {
  return (["metrics_password_sealed", "honeycomb_api_key_sealed"] as const).map((column) => ({
    name: `runners.${column}`,
    rows: () => store.sealedSecrets(column),
    context: (id: string) => context(column, id),
    replace: (id: string, before: Uint8Array, after: Uint8Array) => store.replaceSealedSecret(column, id, before, after),
  }));
}
