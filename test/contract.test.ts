// Contract test: the generated gitpod.v1 descriptors (gen/, from proto/) must match the wire
// reference tables in docs/reference/*.md field for field: numbers, names, types, labels (incl.
// proto3 `optional`), JSON names, deprecation, buf.validate rules, enum values, reserved names,
// RPC order and idempotency. docs/reference/ is the repository's copy of the team's shared
// references (../shared/reference in the workspace); when that original is present, the copy must
// be identical to it, so an updated reference is noticed.
//
// To check a new .proto file: import its file descriptor into `registry` and add the sections of
// its reference to CHECKS.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createRegistry, getOption, hasOption, isFieldSet, ScalarType, type DescField, type DescFile, type DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  BytesRulesSchema, field as validateField, Ignore, RepeatedRulesSchema, StringRulesSchema, type FieldRules,
} from "../gen/buf/validate/validate_pb.js";
import { EventService, file_gitpod_v1_event } from "../gen/gitpod/v1/event_pb.js";
import { file_gitpod_v1_group, GroupService } from "../gen/gitpod/v1/group_pb.js";
import { file_gitpod_v1_identity, IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { file_gitpod_v1_organization } from "../gen/gitpod/v1/organization_pb.js";
import { file_gitpod_v1_runner, RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { file_gitpod_v1_runner_interaction, RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { projectRoot } from "../src/paths.js";

const REFERENCE_DIR = join(projectRoot, "docs", "reference");
const SHARED_REFERENCE_DIR = join(projectRoot, "..", "shared", "reference");

interface ReferenceCheck {
  /** File name in docs/reference/. */
  reference: string;
  /** A service, the headings that bound its RPC table, and whether we implement only a subset of its RPCs. */
  services: { service: DescService; from: string; to: string; subset?: boolean }[];
  /** Headings that bound the message and enum tables to check (every `#### ` block between them). */
  messages: { from: string; to: string }[];
}

const CHECKS: ReferenceCheck[] = [
  {
    reference: "gitpod-v1-wire.md",
    services: [
      { service: RunnerService, from: "### 3.1", to: "### 3.2" },
      { service: IdentityService, from: "### 3.2", to: "### 3.3" },
      // We implement only a subset of the internal RunnerInteractionService.
      { service: RunnerInteractionService, from: "### 3.3", to: "### 3.4", subset: true },
    ],
    messages: [{ from: "## 4.", to: "## 9." }],
  },
  {
    reference: "gitpod-v1-runner-channel.md",
    // GroupService; WatchRequests/SendResponse and the RPCs of wire.md section 6, in the reference's order.
    services: [
      { service: GroupService, from: "### 5.1", to: "### 5.2" },
      { service: RunnerInteractionService, from: "### 2.1", to: "### 2.2", subset: true },
    ],
    messages: [
      // The envelope, every event and call (the out-of-scope calls with their top-level fields),
      // and the RunnerService messages the calls embed.
      { from: "### 2.2", to: "## 3." },
      // SCMIntegration (used by CallValidateConfig) and its OAuth config.
      { from: "#### SCMIntegration  (runner_configuration.proto)", to: "### 3.4" },
      // Groups, memberships, role assignments and their enums (ResourceType lives in event.proto).
      { from: "### 5.2", to: "### 5.6" },
      // Of organization.proto only the OrganizationRole enum (OrganizationService is not served).
      { from: "### 5.6", to: "#### SetRoleRequest" },
      // GetIDToken as the runner-channel reference re-checked it (identical to gitpod-v1-wire.md section 5).
      { from: "## 6. IdentityService.GetIDToken", to: "## 7." },
    ],
  },
  {
    reference: "gitpod-v1-events.md",
    services: [{ service: EventService, from: "### 3.1", to: "## 4." }],
    // Every message and enum of sections 4 to 7: WatchEvents, ListAuditLogs (with Pagination, Sort),
    // GetAuditLog (with AuditLogEntryDetails, ReportExecEventRequest, Process) and all seven enums.
    messages: [{ from: "## 4. Messages", to: "## 8." }],
  },
];

// Deliberate deviations from the reference's validation column (documented in the .proto files).
const RULE_OVERRIDES: Record<string, string[]> = {
  // Response field: an empty key is valid for a runner that has not signed up yet.
  "RunnerStatus.public_key": ["exactly 32 bytes", "rules skipped when empty"],
};

function withDependencies(...files: DescFile[]): DescFile[] {
  const all = new Set<DescFile>();
  const add = (file: DescFile) => {
    if (all.has(file) || !file.name.startsWith("gitpod/")) return;
    all.add(file);
    file.dependencies.forEach(add);
  };
  files.forEach(add);
  return [...all];
}

const registry = createRegistry(
  ...withDependencies(file_gitpod_v1_runner, file_gitpod_v1_identity, file_gitpod_v1_event, file_gitpod_v1_runner_interaction, file_gitpod_v1_group, file_gitpod_v1_organization),
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

/** `{NAME(1), OTHER(2)}`, as the references print enum allow and deny lists. */
function enumList(f: DescField, numbers: number[]): string {
  const e = f.fieldKind === "enum" ? f.enum : undefined;
  return `{${numbers.map((n) => `${e?.values.find((v) => v.number === n)?.name ?? "?"}(${n})`).join(", ")}}`;
}

/** buf.validate rules of one field type, in the reference's compact vocabulary. */
function typeRules(t: FieldRules["type"], inItems = false, f?: DescField): string[] {
  const out: string[] = [];
  switch (t.case) {
    case "string": {
      const s = t.value;
      if (s.wellKnown.case === "uuid") out.push(inItems ? "uuid" : "UUID");
      if (s.wellKnown.case === "uri") out.push("absolute URI");
      const min = isFieldSet(s, StringRulesSchema.field.minLen), max = isFieldSet(s, StringRulesSchema.field.maxLen);
      if (min) out.push(max ? `${s.minLen}..${s.maxLen} chars` : `>=${s.minLen} chars`);
      else if (max) out.push(`<=${s.maxLen} chars`);
      break;
    }
    case "bytes":
      if (isFieldSet(t.value, BytesRulesSchema.field.len)) out.push(`exactly ${t.value.len} bytes`);
      if (isFieldSet(t.value, BytesRulesSchema.field.maxLen)) out.push(`<=${t.value.maxLen} bytes`);
      break;
    case "enum":
      if (t.value.definedOnly) out.push("defined enum value");
      if (f && t.value.in.length) out.push(`in ${enumList(f, t.value.in)}`);
      if (f && t.value.notIn.length) out.push(`not in ${enumList(f, t.value.notIn)}`);
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

/** `not in {NAME(0)}` and `not in [0]` both become `not in [0]`: the numbers are the wire. */
function enumNumbers(rule: string): string {
  return rule.replace(/\{([^}]*)\}/g, (_, list: string) => `[${list.split(", ").map((v) => /\((\d+)\)$/.exec(v)?.[1] ?? v).join(", ")}]`);
}

function rulesOf(f: DescField): string[] {
  if (!hasOption(f, validateField)) return [];
  const r = getOption(f, validateField);
  const out = typeRules(r.type, false, f);
  if (r.ignore === Ignore.IF_ZERO_VALUE) out.push("rules skipped when empty");
  if (r.required) out.push("required");
  if (r.cel.length) out.push("cel");
  return out.map(enumNumbers).sort();
}

/**
 * Validation column → sorted rules (protovalidate 1.x has one "skip if zero/default" mode).
 * gitpod-v1-runner-channel.md writes a list rule as `<=25 items; each: UUID`, gitpod-v1-wire.md
 * as `<=25 items, each: uuid`: both become the latter.
 */
function refRules(cell: string): string[] {
  // gitpod-v1-events.md writes `0..25 items` (explicit min_items 0) and an enum deny list as `not in [0]`.
  cell = cell.replace(/\b(\d+)\.\.(\d+) items/g, ">=$1 items, <=$2 items").replace(/, each: UUID/g, ", each: uuid");
  const parts = cell.split(";").map((s) => s.trim()).filter((s) => s && s !== "**DEPRECATED**");
  const merged: string[] = [];
  for (const part of parts) {
    if (part.startsWith("each: ") && merged.length > 0) merged.push(`${merged.pop()}, ${part.replace("each: UUID", "each: uuid")}`);
    else merged.push(part === "rules skipped when default" ? "rules skipped when empty" : part);
  }
  return merged.map(enumNumbers).sort();
}

const idempotency = (level: MethodOptions_IdempotencyLevel) =>
  level === MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN ? "" : MethodOptions_IdempotencyLevel[level];

describe("the reference copy in docs/reference", () => {
  it("holds every file of the shared reference, unchanged", () => {
    expect(existsSync(REFERENCE_DIR), REFERENCE_DIR).toBe(true);
    if (!existsSync(SHARED_REFERENCE_DIR)) return; // a clone outside the workspace: the copy is all there is
    for (const name of readdirSync(SHARED_REFERENCE_DIR).filter((n) => n.endsWith(".md"))) {
      const copy = join(REFERENCE_DIR, name);
      expect(existsSync(copy), `docs/reference/${name} is missing: copy it from ../shared/reference`).toBe(true);
      expect(readFileSync(copy, "utf8") === readFileSync(join(SHARED_REFERENCE_DIR, name), "utf8"), `docs/reference/${name} differs from ../shared/reference/${name}`).toBe(true);
    }
  });
});

for (const check of CHECKS) {
  describe(`gitpod.v1 wire contract: ${check.reference}`, () => {
    // Never skipped: a missing reference fails here instead of silently checking nothing.
    const md = readFileSync(join(REFERENCE_DIR, check.reference), "utf8");
    const section = (from: string, to: string) => {
      const start = md.indexOf(from);
      const end = md.indexOf(to, start + from.length);
      if (start < 0 || end < 0) throw new Error(`${check.reference}: no section from "${from}" to "${to}"`);
      return md.slice(start, end);
    };

    if (check.services.length > 0) describe("services", () => {
      for (const { service, from, to, subset } of check.services) {
        it(service.typeName, () => {
          let want = tableRows(section(from, to), /^[A-Z]\w+$/).filter((r) => r[1]?.endsWith("Request"));
          if (subset) want = want.filter((r) => service.methods.some((m) => m.name === r[0]));
          const got = service.methods.map((m) => [
            m.name, strip(m.input.typeName), strip(m.output.typeName),
            m.methodKind === "server_streaming" ? "server-streaming" : m.methodKind, idempotency(m.idempotency),
          ]);
          expect(got).toEqual(want);
        });
      }
    });

    // A block that only points at an identical table printed earlier has nothing of its own.
    const blocks = check.messages
      .flatMap(({ from, to }) => `\n${section(from, to)}`.split("\n#### ").slice(1))
      .filter((b) => !/^\S.*\n+_Same table as/.test(b));
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
          // By number, as the reference prints them (a oneof's members are declared together,
          // so a field numbered between them comes after the oneof in the .proto).
          const got = [...message!.fields].sort((a, b) => a.number - b.number).map((f) => [
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
          // gitpod-v1-runner-channel.md prints "reserved: 34, 57; reserved names: "X"".
          expect(reserved).toBe(/\nreserved: (.*)/.exec(block)?.[1]?.replace("; reserved names: ", ", ") ?? "");
        });
      }
    });
  });
}
