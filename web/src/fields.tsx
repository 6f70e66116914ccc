// Form pieces shared by the create and edit forms: a labelled field with the API's error at it.
import { cloneElement, useId, type ReactElement, type ReactNode } from "react";
import type { DescEnum } from "@bufbuild/protobuf";
import { RunnerReleaseChannelSchema } from "../../gen/gitpod/v1/runner_pb.js";
import { enumOptions } from "./format.js";

export function Field({ label, error, help, children }: { label: string; error?: string | undefined; help?: ReactNode; children: ReactElement<Record<string, unknown>> }) {
  const id = useId();
  const describedBy = [error ? `${id}-error` : "", help ? `${id}-help` : ""].filter(Boolean).join(" ") || undefined;
  return (
    <div className={`field${error ? " has-error" : ""}`}>
      <label htmlFor={id}>{label}</label>
      {cloneElement(children, { id, "aria-invalid": error ? true : undefined, "aria-describedby": describedBy })}
      {help && (
        <p id={`${id}-help`} className="help">
          {help}
        </p>
      )}
      {error && (
        <p id={`${id}-error`} className="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** Errors not shown at a field of the form (the form lists them at its top). */
export function otherErrors(errors: Map<string, string>, shown: string[]): string[] {
  return [...errors].filter(([path]) => !shown.includes(path)).map(([path, message]) => (path ? `${path}: ${message}` : message));
}

export function FormErrors({ messages }: { messages: string[] }) {
  if (messages.length === 0) return null;
  return (
    <div className="form-errors" role="alert">
      {messages.map((m) => (
        <p key={m}>{m}</p>
      ))}
    </div>
  );
}

/** Hours of an update window as typed; "" is "not set". */
export interface WindowInput {
  start: string;
  end: string;
}

export const WINDOW_FIELD = "spec.configuration.update_window";
export const WINDOW_PATHS = [WINDOW_FIELD, `${WINDOW_FIELD}.start_hour`, `${WINDOW_FIELD}.end_hour`];

/**
 * The window as the API takes it: undefined for "no window". A value that is not a whole number
 * cannot be sent as a uint32 at all, so it is refused here with the API's wording.
 */
export function windowOf(input: WindowInput): { window?: { startHour?: number; endHour?: number }; errors: Map<string, string> } {
  const errors = new Map<string, string>();
  const hour = (text: string, name: "start_hour" | "end_hour") => {
    if (text.trim() === "") return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) {
      errors.set(`${WINDOW_FIELD}.${name}`, `must be an hour of the day (0..23), got ${text}`);
      return undefined;
    }
    return n;
  };
  const startHour = hour(input.start, "start_hour");
  const endHour = hour(input.end, "end_hour");
  if (input.start.trim() === "" && input.end.trim() === "") return { errors };
  return { window: { ...(startHour !== undefined ? { startHour } : {}), ...(endHour !== undefined ? { endHour } : {}) }, errors };
}

export const WINDOW_HELP =
  "Hours in UTC (0–23) when the runner may update itself. The window must be at least 2 hours long; the end defaults to start + 2, and overnight windows such as 22 → 4 are fine. Leave both empty for any time.";

export function UpdateWindowFields({ value, onChange, errors }: { value: WindowInput; onChange: (v: WindowInput) => void; errors: Map<string, string> }) {
  const whole = errors.get(WINDOW_FIELD);
  return (
    <fieldset className={`window${whole ? " has-error" : ""}`} aria-describedby="window-help">
      <legend>Update window (UTC)</legend>
      <div className="row">
        <Field label="Start hour" error={errors.get(`${WINDOW_FIELD}.start_hour`)}>
          <input type="number" inputMode="numeric" min={0} max={23} value={value.start} onChange={(e) => onChange({ ...value, start: e.target.value })} />
        </Field>
        <Field label="End hour" error={errors.get(`${WINDOW_FIELD}.end_hour`)}>
          <input type="number" inputMode="numeric" min={0} max={23} value={value.end} onChange={(e) => onChange({ ...value, end: e.target.value })} />
        </Field>
      </div>
      {whole && <p className="field-error">{whole}</p>}
      <p id="window-help" className="help">
        {WINDOW_HELP}
      </p>
    </fieldset>
  );
}

export function Section({ title, children, id }: { title: string; children: ReactNode; id?: string }) {
  return (
    <section className="card" aria-labelledby={`${id ?? title}-title`} id={id}>
      <h2 id={`${id ?? title}-title`}>{title}</h2>
      {children}
    </section>
  );
}

/** The <option>s of an enum's defined values (UNSPECIFIED and `skip` left out). */
export function EnumOptions({ schema, skip }: { schema: DescEnum; skip?: number[] }) {
  return (
    <>
      {enumOptions(schema, skip).map((o) => (
        <option key={o.value} value={o.value}>
          {o.label}
        </option>
      ))}
    </>
  );
}

export const RELEASE_PATHS = ["spec.configuration.release_channel", "spec.configuration.auto_update"];

/** Release channel and auto update, as in both the create and the edit form. */
export function ReleaseFields(props: {
  channel: number;
  onChannel: (value: number) => void;
  autoUpdate: boolean;
  onAutoUpdate: (value: boolean) => void;
  errors: Map<string, string>;
}) {
  return (
    <>
      <Field label="Release channel" error={props.errors.get(RELEASE_PATHS[0]!)}>
        <select value={props.channel} onChange={(e) => props.onChannel(Number(e.target.value))}>
          <EnumOptions schema={RunnerReleaseChannelSchema} />
        </select>
      </Field>
      <div className="field check">
        <label>
          <input type="checkbox" checked={props.autoUpdate} onChange={(e) => props.onAutoUpdate(e.target.checked)} /> Update automatically
        </label>
        {props.errors.get(RELEASE_PATHS[1]!) && <p className="field-error">{props.errors.get(RELEASE_PATHS[1]!)}</p>}
      </div>
    </>
  );
}
