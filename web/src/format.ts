// Words for enum values and timestamps, from the generated schema (no hand-kept lists).
import type { DescEnum } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { dateOf } from "./phase.js";

const ACRONYMS = new Set(["AWS", "EC2", "GCP", "SCM", "LLM", "ASG", "CNF", "URL"]);

/** RUNNER_PROVIDER_AWS_EC2 → "AWS EC2", RUNNER_RELEASE_CHANNEL_STABLE → "Stable". */
export function enumLabel(schema: DescEnum, value: number): string {
  const found = schema.values.find((v) => v.number === value);
  if (!found) return `unknown (${value})`;
  const words = found.localName.split("_").filter(Boolean);
  return words
    .map((word, i) => (ACRONYMS.has(word) ? word : i === 0 ? word[0] + word.slice(1).toLowerCase() : word.toLowerCase()))
    .join(" ");
}

/** The defined values of an enum except UNSPECIFIED, for a select. */
export function enumOptions(schema: DescEnum, skip: number[] = []): { value: number; label: string; name: string }[] {
  return schema.values.filter((v) => v.number !== 0 && !skip.includes(v.number)).map((v) => ({ value: v.number, label: enumLabel(schema, v.number), name: v.name }));
}

/** "2026-12-01 14:02:03" in local time, with the full ISO time as a tooltip. */
export function timestampText(ts: Timestamp | undefined): string {
  const date = dateOf(ts);
  if (!date || date.getTime() === 0) return "—";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}
