// Contract test: the generated gitpod.v1 descriptors (gen/, from proto/) must match the wire
// reference tables in shared/reference/gitpod-v1-wire.md field for field: numbers, names, types,
// labels (incl. proto3 `optional`), JSON names, deprecation, buf.validate rules, enum values,
// reserved names, RPC order and idempotency. The reference lives outside the repo; when it is
// absent (local checkouts) the test is skipped, CI provides it.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createRegistry, getOption, hasOption, isFieldSet, ScalarType, type DescField, type DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  BytesRulesSchema, field as validateField, Ignore, RepeatedRulesSchema, StringRulesSchema, type FieldRules,
} from "../gen/buf/validate/validate_pb.js";
import { file_gitpod_v1_identity, IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { file_gitpod_v1_runner, RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { file_gitpod_v1_runner_interaction, RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";

const REFERENCE = new URL("../../shared/reference/gitpod-v1-wire.md", import.meta.url);

// Deliberate deviations from the reference's validation column (documented in the .proto files).
const RULE_OVERRIDES: Record<string, string[]> = {
  // Response field: an empty key is valid for a runner that has not signed up yet.
  "RunnerStatus.public_key": ["exactly 32 bytes", "rules skipped when empty"],
};

const registry = createRegistry(
  file_gitpod_v1_runner, file_gitpod_v1_identity, file_gitpod_v1_runner_interaction,
  ...file_gitpod_v1_runner.dependencies.filter((f) => f.name.startsWith("gitpod/")),
);

/** Rows of every markdown table row starting with `| <cell>` under `text`, cells trimmed. */
function tableRows(text: string, first: RegExp): string[][] {
  return text.split("\n")
    .filter((l) => l.startsWith("|") && first.test(l.split("|")[1]?.trim() ?? ""))
    .map((l) => l.split("|").slice(1, -1).map((c) => c.trim()));
}

const strip = (name: string) => name.replace(/^gitpod\.v1\./, "");
const scalar = (t: ScalarType) => ScalarType[t].toLowerCase();

function typeOf(f: DescField): string {
  switch (f.fieldKind) {
    case "scalar": return scalar(f.scalar);
    case "enum": return `enum ${strip(f.enum.typeName)}`;
    case "message": return strip(f.message.typeName);
    case "list":
      if (f.listKind === "scalar") return scalar(f.scalar);
      return f.listKind === "enum" ? `enum ${strip(f.enum.typeName)}` : strip(f.message.typeName);
    case "map":
      if (f.mapKind !== "scalar") throw new Error(`unsupported map value in ${f.name}`);
      return `map<${scalar(f.mapKey)}, ${scalar(f.scalar)}>`;
  }
}

function labelOf(f: DescField): string {
  if (f.fieldKind === "list") return "repeated";
  if (f.fieldKind === "map") return "map";
  if (f.proto.proto3Optional) return "optional";
  return f.oneof ? `oneof \`${f.oneof.name}\`` : "-";
}

/** buf.validate rules of one field type, in the reference's compact vocabulary. */
function typeRules(t: FieldRules["type"], inItems = false): string[] {
  const out: string[] = [];
  switch (t.case) {
    case "string": {
      const s = t.value;
      if (s.wellKnown.case === "uuid") out.push(inItems ? "uuid" : "UUID");
      if (s.wellKnown.case === "uri") out.push("absolute URI");
      const min = isFieldSet(s, StringRulesSchema.field.minLen), max = isFieldSet(s, StringRulesSchema.field.maxLen);
      if (min) out.push(max ? `${s.minLen}..${s.maxLen} chars` : `>=${s.minLen} chars`);
      break;
    }
    case "bytes":
      if (isFieldSet(t.value, BytesRulesSchema.field.len)) out.push(`exactly ${t.value.len} bytes`);
      if (isFieldSet(t.value, BytesRulesSchema.field.maxLen)) out.push(`<=${t.value.maxLen} bytes`);
      break;
    case "enum":
      if (t.value.definedOnly) out.push("defined enum value");
      break;
    case "int32":
      out.push(`${t.value.greaterThan.value}..${t.value.lessThan.value}`);
      break;
    case "repeated": {
      const parts: string[] = [];
      if (isFieldSet(t.value, RepeatedRulesSchema.field.minItems)) parts.push(`>=${t.value.minItems} items`);
      if (isFieldSet(t.value, RepeatedRulesSchema.field.maxItems)) parts.push(`<=${t.value.maxItems} items`);
      if (t.value.items) parts.push(`each: ${typeRules(t.value.items.type, true).join("; ")}`);
      out.push(parts.join(", "));
      break;
    }
    case undefined:
      break;
    default:
      out.push(`unexpected ${t.case} rules`);
  }
  return out;
}

function rulesOf(f: DescField): string[] {
  if (!hasOption(f, validateField)) return [];
  const r = getOption(f, validateField);
  const out = typeRules(r.type);
  if (r.ignore === Ignore.IF_ZERO_VALUE) out.push("rules skipped when empty");
  if (r.required) out.push("required");
  if (r.cel.length) out.push("cel");
  return out.sort();
}

/** Validation column → sorted rules (protovalidate 1.x has one "skip if zero/default" mode). */
function refRules(cell: string): string[] {
  return cell.split(";").map((s) => s.trim())
    .filter((s) => s && s !== "**DEPRECATED**")
    .map((s) => (s === "rules skipped when default" ? "rules skipped when empty" : s))
    .sort();
}

const idempotency = (level: MethodOptions_IdempotencyLevel) =>
  level === MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN ? "" : MethodOptions_IdempotencyLevel[level];

describe("gitpod.v1 wire contract", () => {
  if (!existsSync(REFERENCE)) {
    it.skip(`reference ${fileURLToPath(REFERENCE)} not found (provided in CI)`, () => {});
    return;
  }
  const md = readFileSync(REFERENCE, "utf8");
  const section = (from: string, to: string) => md.slice(md.indexOf(from), md.indexOf(to));

  describe("services", () => {
    const cases: [DescService, string, boolean][] = [
      [RunnerService, section("### 3.1", "### 3.2"), false],
      [IdentityService, section("### 3.2", "### 3.3"), false],
      // We implement only a subset of the internal RunnerInteractionService.
      [RunnerInteractionService, section("### 3.3", "### 3.4"), true],
    ];
    for (const [service, text, subset] of cases) {
      it(service.typeName, () => {
        let want = tableRows(text, /^[A-Z]\w+$/).filter((r) => r[1]?.endsWith("Request"));
        if (subset) want = want.filter((r) => service.methods.some((m) => m.name === r[0]));
        const got = service.methods.map((m) => [
          m.name, strip(m.input.typeName), strip(m.output.typeName),
          m.methodKind === "server_streaming" ? "server-streaming" : m.methodKind, idempotency(m.idempotency),
        ]);
        expect(got).toEqual(want);
      });
    }
  });

  const blocks = section("## 4.", "## 9.").split("\n#### ").slice(1);
  describe("messages", () => {
    for (const block of blocks.filter((b) => !b.startsWith("enum "))) {
      const name = block.split(/\s/)[0]!;
      it(name, () => {
        const message = registry.getMessage(`gitpod.v1.${name}`);
        expect(message, `message ${name}`).toBeDefined();
        const want = tableRows(block, /^\d+$/).map(([no, field, type, label, json, extra = ""]) => [
          Number(no), field, type, label, json, extra.includes("**DEPRECATED**"),
          RULE_OVERRIDES[`${name}.${field}`]?.slice().sort() ?? refRules(extra),
        ]);
        const got = message!.fields.map((f) => [
          f.number, f.name, typeOf(f), labelOf(f), f.jsonName, f.deprecated, rulesOf(f),
        ]);
        expect(got).toEqual(want);
      });
    }
  });

  describe("enums", () => {
    for (const block of blocks.filter((b) => b.startsWith("enum "))) {
      const name = block.split(/\s+/)[1]!;
      it(name, () => {
        const e = registry.getEnum(`gitpod.v1.${name}`);
        expect(e, `enum ${name}`).toBeDefined();
        const want = tableRows(block, /^\d+$/).map(([no, value, note = ""]) => [Number(no), value, note.includes("DEPRECATED")]);
        expect(e!.values.map((v) => [v.number, v.name, v.deprecated])).toEqual(want);
        const reserved = [
          ...e!.proto.reservedRange.map((r) => (r.start === r.end ? `${r.start}` : `${r.start} to ${r.end}`)),
          ...e!.proto.reservedName.map((n) => `"${n}"`),
        ].join(", ");
        expect(reserved).toBe(/\nreserved: (.*)/.exec(block)?.[1] ?? "");
      });
    }
  });
});
