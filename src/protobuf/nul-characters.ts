// Finds a NUL character (U+0000) in any string of a message: scalar, repeated, map keys and
// values, oneof cases, nested messages at any depth. PostgreSQL `text` cannot store U+0000, so
// a request carrying one must be refused as the client's mistake before it reaches a handler.
//
// One walker per message type, generated on first use: it visits only the fields that are strings or
// lead (through messages, lists, maps) to a string, so a type without strings costs nothing and a
// typical request a few property reads and `includes` calls. The path it returns is a
// protobuf-es `Path`, the form protovalidate reports violations in.
import type { DescMessage } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import type { Path } from "@bufbuild/protobuf/reflect";
import { GeneratedFunction, perMessageType } from "./compiled-per-type.js";

export interface NulCharacter {
  /** Where the string is, e.g. `spec.configuration.region` or `labels["key"]`. */
  path: Path;
  /** True when the NUL is in a map key rather than in a value. */
  forKey: boolean;
}

type MessageObject = Record<string, unknown>;
/** The path of the first NUL, innermost element first (reversed once, when one is found). */
type Found = { reversed: Path; forKey: boolean };
type Walker = (message: MessageObject) => Found | undefined;

const NUL = "\u0000";

/** The first string of `message` (of type `schema`) containing U+0000, or undefined. */
export function findNulCharacter(schema: DescMessage, message: object): NulCharacter | undefined {
  const found = walkerOf(schema)(message as MessageObject);
  return found && { path: found.reversed.reverse(), forKey: found.forKey };
}

const walkerOf = perMessageType(compileWalker);
const nothing: Walker = () => undefined;

// Generated per type: straight-line property reads and `includes` calls, no closures per field;
// the (rare) path is only built when a NUL is found, by the helpers the code refers to.
function compileWalker(schema: DescMessage): Walker {
  if (!holdsStrings(schema)) return nothing;
  const generated = new GeneratedFunction();
  const ref = (value: unknown) => generated.ref(value);
  const lines = ["let v, f;"];
  for (const field of schema.fields) {
    const read = field.oneof
      ? `(m[${JSON.stringify(field.oneof.localName)}].case === ${JSON.stringify(field.localName)} ? m[${JSON.stringify(field.oneof.localName)}].value : undefined)`
      : `m[${JSON.stringify(field.localName)}]`;
    // What to return when the value (or its item) `x` holds the NUL at the inner path `f`.
    const at = (...elements: string[]) => `(f.reversed.push(${[...elements, ref(field)].join(", ")}), f)`;
    switch (field.fieldKind) {
      case "scalar":
        if (field.scalar !== ScalarType.STRING) continue;
        lines.push(`v = ${read}; if (typeof v === "string" && v.includes(${ref(NUL)})) return { reversed: [${ref(field)}], forKey: false };`);
        break;
      case "message":
        if (!holdsStrings(field.message)) continue;
        lines.push(`v = ${read}; if (v != null && (f = ${ref(walkerOf(field.message))}(v))) return ${at()};`);
        break;
      case "list": {
        const item = itemCode(field.scalar, field.message, ref);
        if (item === undefined) continue;
        lines.push(`v = ${read}; if (v !== undefined) for (let i = 0; i < v.length; i++) if ((f = ${item}(v[i]))) return ${at(`{ kind: "list_sub", index: i }`)};`);
        break;
      }
      case "map": {
        const value = itemCode(field.scalar, field.message, ref);
        const keys = field.mapKey === ScalarType.STRING;
        if (!keys && value === undefined) continue;
        lines.push(`v = ${read}; if (v !== undefined) for (const k in v) {`);
        if (keys) lines.push(`  if (k.includes(${ref(NUL)})) return { reversed: [{ kind: "map_sub", key: k }, ${ref(field)}], forKey: true };`);
        if (value) lines.push(`  if ((f = ${value}(v[k]))) return ${at(`{ kind: "map_sub", key: ${ref(mapKeyOf(field.mapKey))}(k) }`)};`);
        lines.push("}");
        break;
      }
    }
  }
  lines.push("return undefined;");
  return generated.build<Walker>("findNul", "m", lines);
}

/** Code for a function of one list item or map value, for a string or a message that holds strings. */
function itemCode(scalar: ScalarType | undefined, message: DescMessage | undefined, ref: (value: unknown) => string): string | undefined {
  if (scalar === ScalarType.STRING) return ref(stringItem);
  if (message !== undefined && holdsStrings(message)) return ref(walkerOf(message));
  return undefined;
}

function stringItem(value: string): Found | undefined {
  return value.includes(NUL) ? { reversed: [], forKey: false } : undefined;
}

/** Converts an object key to the map key protobuf-es paths want (object keys are always strings). */
function mapKeyOf(scalar: ScalarType): (key: string) => string | number | bigint | boolean {
  switch (scalar) {
    case ScalarType.STRING:
      return (key) => key;
    case ScalarType.BOOL:
      return (key) => key === "true";
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return (key) => BigInt(key);
    default:
      return (key) => Number(key);
  }
}

const stringHolders = new WeakMap<DescMessage, boolean>();

/** Whether a message of this type can contain a string anywhere (computed over all reachable types, so cycles are handled). */
function holdsStrings(schema: DescMessage): boolean {
  let holds = stringHolders.get(schema);
  if (holds !== undefined) return holds;
  const seen = new Set<DescMessage>([schema]);
  const queue = [schema];
  holds = false;
  while (queue.length > 0 && !holds) {
    for (const field of queue.pop()!.fields) {
      if (field.scalar === ScalarType.STRING || (field.fieldKind === "map" && field.mapKey === ScalarType.STRING)) {
        holds = true;
        break;
      }
      const message = field.message;
      if (message !== undefined && !seen.has(message)) {
        seen.add(message);
        queue.push(message);
      }
    }
  }
  stringHolders.set(schema, holds);
  return holds;
}
