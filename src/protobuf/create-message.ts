// protobuf-es' `create()`, compiled once per proto3 message type. The reflective `create()`
// walks the descriptor's members for every message it builds; a Runner and its nested parts
// took about 10 µs that way, more than reading its row from PostgreSQL. The generated function
// builds the same object (same properties, same zero values, same handling of nested inits,
// lists, maps, oneofs, bytes, wrappers and Struct) with constant property names. Types of other
// syntaxes (proto2, editions: presence through prototype chains) use `create()` itself.
// test/compiled-protobuf.test.ts compares the two on generated inits.
import {
  create,
  protoInt64,
  ScalarType,
  type DescField,
  type DescMessage,
  type DescOneof,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { GeneratedFunction, perMessageType } from "./compiled-per-type.js";

type Factory = (init: unknown) => object;

const EDITION_PROTO3 = 999; // google.protobuf.Edition.EDITION_PROTO3
const IMPLICIT = 2; // google.protobuf.FeatureSet.FieldPresence.IMPLICIT
/** Same as `create(schema, init)`. */
export function createMessage<Desc extends DescMessage>(schema: Desc, init?: MessageInitShape<Desc>): MessageShape<Desc> {
  return factoryOf(schema)(init) as MessageShape<Desc>;
}

const factoryOf = perMessageType<Factory>((schema) =>
  schema.file.edition === EDITION_PROTO3 ? compile(schema) : (init) => create(schema, init as never),
);

function compile(schema: DescMessage): Factory {
  const generated = new GeneratedFunction();
  const ref = (value: unknown) => generated.ref(value);
  const type = JSON.stringify(schema.typeName);
  // The zero message: oneofs and implicit-presence fields, in member order, as createZeroMessage.
  const zero: string[] = [`$typeName: ${type}`];
  for (const member of schema.members) {
    if (member.kind === "oneof") zero.push(`${JSON.stringify(member.localName)}: { case: undefined }`);
    else if (member.presence === IMPLICIT) zero.push(`${JSON.stringify(member.localName)}: ${zeroCode(member, ref)}`);
  }
  const lines = [
    `if (init !== null && typeof init === "object" && init.$typeName === ${type}) return init;`,
    `const m = { ${zero.join(", ")} };`,
    "if (init == null) return m;",
    "let v;",
  ];
  // Then each value the init has, in member order, as initMessage.
  for (const member of schema.members) {
    const name = JSON.stringify(member.localName);
    if (member.kind === "oneof") {
      lines.push(`v = ${ref(oneofInit(member))}(init[${name}]);`, `if (v !== undefined) m[${name}] = v;`);
      continue;
    }
    lines.push(`v = init[${name}];`, `if (v != null) m[${name}] = ${callCode(converter(member), ref)};`);
  }
  lines.push("return m;");
  return generated.build<Factory>("create", "init", lines);
}

function callCode(convert: (value: unknown) => unknown, ref: (value: unknown) => string): string {
  return convert === identity ? "v" : `${ref(convert)}(v)`;
}

function zeroCode(field: DescField, ref: (value: unknown) => string): string {
  switch (field.fieldKind) {
    case "list":
      return "[]";
    case "map":
      return "{}";
    case "enum":
      return String(field.enum.values[0]!.number);
    case "scalar":
      switch (field.scalar) {
        case ScalarType.STRING:
          return '""';
        case ScalarType.BOOL:
          return "false";
        case ScalarType.BYTES:
          return "new Uint8Array(0)";
        case ScalarType.INT64:
        case ScalarType.UINT64:
        case ScalarType.SFIXED64:
        case ScalarType.FIXED64:
        case ScalarType.SINT64:
          return field.longAsString ? '"0"' : ref(protoInt64.zero);
        default:
          return "0";
      }
    default:
      throw new Error(`${field.toString()}: a message field with implicit presence`);
  }
}

function converter(field: DescField): (value: unknown) => unknown {
  switch (field.fieldKind) {
    case "message":
      return messageConverter(field);
    case "scalar":
      return field.scalar === ScalarType.BYTES ? toBytes : identity;
    case "list":
      if (field.scalar === ScalarType.BYTES) return (value) => (Array.isArray(value) ? value.map(toBytes) : value);
      if (field.listKind === "message") {
        const item = itemConverter(field, field.message);
        return (value) => (Array.isArray(value) ? value.map(item) : value);
      }
      return identity;
    case "map":
      if (field.scalar === ScalarType.BYTES) return (value) => (isObject(value) ? mapValues(value, toBytes) : value);
      if (field.mapKind === "message") {
        const item = itemConverter(field, field.message);
        return (value) => (isObject(value) ? mapValues(value, item) : value);
      }
      return identity;
    default:
      return identity; // enums
  }
}

/** A singular message field's init, as protobuf-es' toMessage(). */
function messageConverter(field: DescField & { fieldKind: "message" }): (value: unknown) => unknown {
  const message = field.message;
  if (!field.oneof && isWrapper(message)) {
    // google.protobuf wrappers are plain values in singular fields outside oneofs.
    const wrapped = message.fields[0]!;
    return wrapped.fieldKind === "scalar" && wrapped.scalar === ScalarType.BYTES ? toBytes : identity;
  }
  return itemConverter(field, message);
}

/** A message value's init (singular, list item or map value), as toMessage() past the wrappers. */
function itemConverter(field: DescField, message: DescMessage): (value: unknown) => unknown {
  // A Struct is a plain JSON object in fields, except inside google.protobuf.Value.
  if (message.typeName === "google.protobuf.Struct" && field.parent.typeName !== "google.protobuf.Value") return identity;
  const factory = factoryOf(message);
  return (value) => messageValue(message, factory, value);
}

function messageValue(schema: DescMessage, factory: Factory, value: unknown): unknown {
  if (!isObject(value)) return value;
  const typeName = (value as { $typeName?: unknown }).$typeName;
  return typeof typeName === "string" && typeName === schema.typeName ? value : factory(value);
}

function oneofInit(oneof: DescOneof): (selected: unknown) => { case: string; value: unknown } | undefined {
  const converters = new Map(oneof.fields.map((field) => [field.localName, converter(field)]));
  return (selected) => {
    if (selected == null) return undefined;
    const name = (selected as { case?: unknown }).case;
    const convert = typeof name === "string" ? converters.get(name) : undefined;
    if (convert === undefined) return undefined;
    const value = (selected as { value?: unknown }).value;
    return { case: name as string, value: value == null ? value : convert(value) };
  };
}

const wrapperNames = new Set([
  "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
  "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.BoolValue", "google.protobuf.StringValue",
  "google.protobuf.BytesValue",
]);

function isWrapper(schema: DescMessage): boolean {
  return wrapperNames.has(schema.typeName);
}

function identity(value: unknown): unknown {
  return value;
}

function toBytes(value: unknown): unknown {
  return Array.isArray(value) ? new Uint8Array(value) : value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function mapValues(map: Record<string, unknown>, convert: (value: unknown) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(map)) out[key] = convert(value);
  return out;
}
