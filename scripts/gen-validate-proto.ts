// Regenerates third_party/protovalidate/buf/validate/validate.proto from the serialized
// descriptor embedded in @bufbuild/protovalidate's generated code (validate_pb.js).
//
// Why: buf.validate normally comes from the BSR (`deps: [buf.build/bufbuild/protovalidate]`),
// which is unreachable offline, and no npm package ships the .proto source. The rebuilt file
// compiles to a descriptor wire-identical to the embedded one (comments are not preserved).
// The script throws on any descriptor construct it does not know how to print, so a future
// protovalidate release that needs more fails loudly instead of producing a wrong file.
//
// Usage: npm run proto:validate  (or: tsx scripts/gen-validate-proto.ts [out-file])
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { clone, getOption, isFieldSet } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as T,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate, predefined } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

const OUT = process.argv[2] ?? "third_party/protovalidate/buf/validate/validate.proto";

// --- the embedded descriptor -------------------------------------------------------------------
// protobuf-es hydrates it with its import list restored (descriptor/duration/field_mask/timestamp).
const validateFile = file_buf_validate_validate;
const fd = clone(FileDescriptorProtoSchema, validateFile.proto);
if (fd.syntax !== "" && fd.syntax !== "proto2") throw new Error(`unsupported syntax ${fd.syntax}`);
// Only for the header line. package.json is not in "exports": derive it from the main entry.
const pkgDir = createRequire(import.meta.url)
  .resolve("@bufbuild/protovalidate", { paths: [process.cwd()] })
  .replace(/[\\/]dist[\\/]cjs[\\/]index\.js$/, "");
const version: string = JSON.parse(readFileSync(`${pkgDir}/package.json`, "utf8")).version;

// --- printing helpers --------------------------------------------------------------------------
const SCALAR: Partial<Record<T, string>> = {
  [T.DOUBLE]: "double", [T.FLOAT]: "float", [T.INT64]: "int64", [T.UINT64]: "uint64",
  [T.INT32]: "int32", [T.FIXED64]: "fixed64", [T.FIXED32]: "fixed32", [T.BOOL]: "bool",
  [T.STRING]: "string", [T.BYTES]: "bytes", [T.UINT32]: "uint32", [T.SFIXED32]: "sfixed32",
  [T.SFIXED64]: "sfixed64", [T.SINT32]: "sint32", [T.SINT64]: "sint64",
};
const MAX_FIELD_NUMBER = 536870911;

/** Protobuf string literal; non-ASCII bytes are octal-escaped so the file stays ASCII. */
function quote(s: string): string {
  const escaped = [...Buffer.from(s, "utf8")].map((b) => {
    switch (b) {
      case 0x22: return '\\"';
      case 0x5c: return "\\\\";
      case 0x0a: return "\\n";
      case 0x09: return "\\t";
      case 0x0d: return "\\r";
      default:
        return b < 0x20 || b > 0x7e ? "\\" + b.toString(8).padStart(3, "0") : String.fromCharCode(b);
    }
  });
  return `"${escaped.join("")}"`;
}

const typeOf = (f: FieldDescriptorProto) => SCALAR[f.type] ?? f.typeName;

/** Message reserved/extension ranges are end-exclusive. */
function range(start: number, endExclusive: number): string {
  if (endExclusive - 1 === start) return `${start}`;
  return `${start} to ${endExclusive - 1 >= MAX_FIELD_NUMBER ? "max" : endExclusive - 1}`;
}

/**
 * The only field options validate.proto uses are `(predefined).cel` rules. Printed in the
 * layout `buf format` produces, so the generated file passes `buf format --diff --exit-code`.
 */
function fieldOptions(msgName: string, f: FieldDescriptorProto, indent: string): string {
  const known = Object.entries(f.options ?? {}).filter(
    ([k, v]) => k !== "$typeName" && k !== "$unknown" && v !== undefined && !(Array.isArray(v) && v.length === 0),
  );
  if (known.length) throw new Error(`unhandled option on ${msgName}.${f.name}: ${known.map(([k]) => k)}`);
  const unknown = f.options?.$unknown ?? [];
  if (!unknown.length) return "";
  if (unknown.some((u) => u.no !== predefined.number)) throw new Error(`unhandled extension on ${msgName}.${f.name}`);
  const desc = validateFile.messages.find((m) => m.name === msgName)?.fields.find((x) => x.number === f.number);
  if (!desc) throw new Error(`field ${msgName}.${f.name} not found`);
  const rules = getOption(desc, predefined).cel;
  const rule = (r: (typeof rules)[number], ind: string): string =>
    [
      "(predefined).cel = {",
      r.id && `${ind}  id: ${quote(r.id)}`,
      r.message && `${ind}  message: ${quote(r.message)}`,
      r.expression && `${ind}  expression: ${quote(r.expression)}`,
      `${ind}}`,
    ].filter(Boolean).join("\n");
  if (rules.length === 1) return ` [${rule(rules[0]!, indent)}]`;
  return ` [\n${rules.map((r) => `${indent}  ${rule(r, indent + "  ")}`).join(",\n")}\n${indent}]`;
}

function printMessage(m: DescriptorProto): string {
  if (m.nestedType.length || m.enumType.length || m.extension.length) {
    throw new Error(`nested declarations in ${m.name} are not supported`);
  }
  const lines = [`message ${m.name} {`];
  const printedOneofs = new Set<number>();
  const inRealOneof = (x: FieldDescriptorProto) =>
    isFieldSet(x, FieldDescriptorProtoSchema.field.oneofIndex) && !x.proto3Optional;
  for (const f of m.field) {
    if (isFieldSet(f, FieldDescriptorProtoSchema.field.defaultValue)) throw new Error("default values unsupported");
    if (inRealOneof(f)) {
      if (printedOneofs.has(f.oneofIndex)) continue;
      printedOneofs.add(f.oneofIndex);
      lines.push(`  oneof ${m.oneofDecl[f.oneofIndex]?.name} {`);
      for (const g of m.field.filter((x) => inRealOneof(x) && x.oneofIndex === f.oneofIndex)) {
        lines.push(`    ${typeOf(g)} ${g.name} = ${g.number}${fieldOptions(m.name, g, "    ")};`);
      }
      lines.push("  }");
      continue;
    }
    const label = f.label === Label.REPEATED ? "repeated" : f.label === Label.REQUIRED ? "required" : "optional";
    lines.push(`  ${label} ${typeOf(f)} ${f.name} = ${f.number}${fieldOptions(m.name, f, "  ")};`);
  }
  for (const r of m.extensionRange) lines.push(`  extensions ${range(r.start, r.end)};`);
  if (m.reservedRange.length) lines.push(`  reserved ${m.reservedRange.map((r) => range(r.start, r.end)).join(", ")};`);
  if (m.reservedName.length) lines.push(`  reserved ${m.reservedName.map(quote).join(", ")};`);
  lines.push("}");
  return lines.join("\n");
}

function printEnum(e: EnumDescriptorProto): string {
  const lines = [`enum ${e.name} {`, ...e.value.map((v) => `  ${v.name} = ${v.number};`)];
  // Enum reserved ranges are end-inclusive (unlike message reserved ranges).
  if (e.reservedRange.length) {
    lines.push(`  reserved ${e.reservedRange.map((r) => (r.start === r.end ? `${r.start}` : `${r.start} to ${r.end}`)).join(", ")};`);
  }
  if (e.reservedName.length) lines.push(`  reserved ${e.reservedName.map(quote).join(", ")};`);
  lines.push("}");
  return lines.join("\n");
}

// --- assemble the file -------------------------------------------------------------------------
const o = fd.options;
const sections = [
  [
    `// GENERATED by scripts/gen-validate-proto.ts from @bufbuild/protovalidate@${version}`,
    "// (embedded descriptor of buf/validate/validate.proto, Apache-2.0, Buf Technologies).",
    "// Comments are not preserved. Do not edit; re-run `npm run proto:validate` instead.",
  ].join("\n"),
  'syntax = "proto2";',
  `package ${fd.package};`,
  fd.dependency.map((d) => `import ${quote(d)};`).join("\n"),
  [
    o?.goPackage && `option go_package = ${quote(o.goPackage)};`,
    o?.javaMultipleFiles && "option java_multiple_files = true;",
    o?.javaOuterClassname && `option java_outer_classname = ${quote(o.javaOuterClassname)};`,
    o?.javaPackage && `option java_package = ${quote(o.javaPackage)};`,
  ].filter(Boolean).join("\n"),
  ...fd.extension.map((e) => `extend ${e.extendee.replace(/^\./, "")} {\n  optional ${typeOf(e)} ${e.name} = ${e.number};\n}`),
  ...fd.enumType.map(printEnum),
  ...fd.messageType.map(printMessage),
];
const src = sections.filter(Boolean).join("\n\n") + "\n";

mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, src);
console.log(`wrote ${OUT} (${src.length} bytes) from @bufbuild/protovalidate@${version}`);
