// The one-time exchange token: shown once, with a copy button, its expiry and the exact command
// that starts the development runner with it (docs/development-runner.md).
import { useEffect, useRef, useState } from "react";

async function copyText(text: string, fallback: HTMLInputElement | HTMLTextAreaElement | null): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection copy
  }
  if (!fallback) return false;
  fallback.select();
  return document.execCommand("copy");
}

export function runnerCommand(origin: string, runnerId: string, token: string): string {
  // One state directory per runner, so a second runner on the same machine does not pick up the
  // first one's saved access token.
  return `npm run --silent runner -- --url ${origin} --state-dir runner-state/${runnerId} --exchange-token ${token} --log-format plain`;
}

export function CopyField({ label, value, multiline }: { label: string; value: string; multiline?: boolean }) {
  const ref = useRef<HTMLInputElement & HTMLTextAreaElement>(null);
  const [copied, setCopied] = useState<string>();
  const id = `copy-${label.replace(/\W+/g, "-").toLowerCase()}`;
  const copy = async () => {
    const ok = await copyText(value, ref.current);
    setCopied(ok ? `${label} copied to the clipboard.` : "Could not copy: select the text and copy it yourself.");
  };
  return (
    <div className="copy-field">
      <label htmlFor={id}>{label}</label>
      <div className="copy-row">
        {multiline ? (
          <textarea id={id} ref={ref} readOnly value={value} rows={3} spellCheck={false} onFocus={(e) => e.currentTarget.select()} />
        ) : (
          <input id={id} ref={ref} readOnly value={value} spellCheck={false} onFocus={(e) => e.currentTarget.select()} />
        )}
        <button type="button" onClick={copy}>
          Copy {label.toLowerCase()}
        </button>
      </div>
      <p className="copied" role="status" aria-live="polite">
        {copied ?? ""}
      </p>
    </div>
  );
}

export function TokenPanel({ runnerId, token, expiresAt, onDone }: { runnerId: string; token: string; expiresAt: Date; onDone: () => void }) {
  const panel = useRef<HTMLDivElement>(null);
  // Once, when a token appears: keyboard and screen reader users land on it.
  useEffect(() => panel.current?.focus(), [token]);
  return (
    <div className="token-panel" role="region" aria-label="One-time exchange token" tabIndex={-1} ref={panel}>
      <p>
        <strong>Copy this exchange token now: it is shown only once.</strong> It works once, until{" "}
        <time dateTime={expiresAt.toISOString()}>{expiresAt.toLocaleString()}</time>. A new one can be made on the runner's page.
      </p>
      <CopyField label="Exchange token" value={token} />
      <CopyField label="Command" value={runnerCommand(window.location.origin, runnerId, token)} multiline />
      <p className="help">
        Run the command in a clone of this repository (it needs <code>git</code>). The runner signs up and turns active here within seconds.
      </p>
      <button type="button" className="secondary" onClick={onDone}>
        Done, hide the token
      </button>
    </div>
  );
}
