// Protobuf JSON encoding compiled once per message type, for the responses the server sends
// most. protobuf-es encodes by reflection: every call wraps each message in a reflection object,
// walks and sorts its fields and formats each Timestamp with two Date.parse calls; for a page of
// 25 runners that was 35–40 % of a ListRunners call's CPU (bench/README.md). Here each type gets
// a function generated once from its descriptor that writes the JSON text straight from the
// message's properties, with constant property names (fast property access) and no
// intermediate objects.
//
// The output is exactly protobuf-es' `toJsonString` with default write options (fields in
// field-number order, implicit zero values omitted, int64 as strings, enum names, Timestamps in
// RFC 3339): test/compiled-protobuf.test.ts compares both on generated messages. Well-known types other
// than Timestamp, and anything this encoder would reject, go to protobuf-es itself, so its errors
// stay the same too.
import { ScalarType, toJson, type DescEnum, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { base64Encode } from "@bufbuild/protobuf/wire";
import { GeneratedFunction, perMessageType, setCondition } from "./compiled-per-type.js";

type MessageObject = Record<string, unknown>;
type Encoder = (message: MessageObject) => string;

/** The JSON text of `message`, identical to `toJsonString(schema, message)`. */
export function encodeJson(schema: DescMessage, message: object): string {
  return encoderOf(schema)(message as MessageObject);
}

const encoderOf = perMessageType(compileMessage);

const TIMESTAMP = "google.protobuf.Timestamp";
// The range RFC 3339 can express; outside it (and for bad nanos) protobuf-es throws its own error.
const MIN_TIMESTAMP_MS = Date.parse("0001-01-01T00:00:00Z");
const MAX_TIMESTAMP_MS = Date.parse("9999-12-31T23:59:59Z");

function compileMessage(schema: DescMessage): Encoder {
  if (schema.typeName === TIMESTAMP) return (message) => timestampToJson(schema, message);
  if (schema.typeName.startsWith("google.protobuf.")) return (message) => JSON.stringify(toJson(schema, message as never));
  // Values the generated code refers to (encoders of other types, enum tables, helpers).
  const generated = new GeneratedFunction();
  const ref = (value: unknown) => generated.ref(value);
  const lines = ['let s = "{", v;'];
  const fields = schema.fields.concat().sort((a, b) => a.number - b.number);
  for (const field of fields) {
    // `"jsonName":`, preceded by a comma unless it is the first member written.
    const key = JSON.stringify(JSON.stringify(field.jsonName) + ":");
    const write = (value: string) => `s += (s.length > 1 ? "," : "") + ${key} + ${value};`;
    const property = `m[${JSON.stringify(field.localName)}]`;
    if (field.oneof) {
      lines.push(`v = m[${JSON.stringify(field.oneof.localName)}];`);
      lines.push(`if (v.case === ${JSON.stringify(field.localName)}) { v = v.value; ${write(valueCode(field, ref))} }`);
      continue;
    }
    lines.push(`v = ${property};`);
    switch (field.fieldKind) {
      case "list":
        lines.push(`if (v.length > 0) ${write(`"[" + v.map(${ref(itemEncoder(field))}).join(",") + "]"`)}`);
        break;
      case "map":
        lines.push(`if (Object.keys(v).length > 0) ${write(`${ref(mapEncoder(itemEncoder(field)))}(v)`)}`);
        break;
      default:
        lines.push(`if (${setCondition(field, ref)}) ${write(valueCode(field, ref))}`);
    }
  }
  lines.push('return s + "}";');
  return generated.build<Encoder>("encode", "m", lines);
}

/** Code for the JSON text of the singular value `v`. */
function valueCode(field: DescField, ref: (value: unknown) => string): string {
  switch (field.fieldKind) {
    case "scalar":
      return `${ref(scalarEncoder(field.scalar))}(v)`;
    case "enum":
      return `${ref(enumEncoder(field.enum))}(v)`;
    case "message":
      return `${ref(encoderOf(field.message))}(v)`;
    default:
      throw new Error(`${field.toString()}: not a singular field`);
  }
}

function itemEncoder(field: DescField & { fieldKind: "list" | "map" }): (value: unknown) => string {
  const kind = field.fieldKind === "list" ? field.listKind : field.mapKind;
  switch (kind) {
    case "scalar":
      return scalarEncoder(field.scalar!);
    case "enum":
      return enumEncoder(field.enum!);
    case "message": {
      const encode = encoderOf(field.message!);
      return (value) => encode(value as MessageObject);
    }
  }
}

function mapEncoder(item: (value: unknown) => string): (map: Record<string, unknown>) => string {
  return (map) => `{${Object.keys(map).map((key) => `${JSON.stringify(key)}:${item(map[key])}`).join(",")}}`;
}

function enumEncoder(schema: DescEnum): (value: unknown) => string {
  if (schema.typeName === "google.protobuf.NullValue") return () => "null";
  const names = new Map(schema.values.map((value) => [value.number, JSON.stringify(value.name)]));
  // An unknown number is written as the number, as protobuf-es does.
  return (value) => names.get(value as number) ?? JSON.stringify(value);
}

function scalarEncoder(scalar: ScalarType): (value: unknown) => string {
  switch (scalar) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return (value) => {
        const number = value as number;
        if (Number.isNaN(number)) return '"NaN"';
        if (number === Number.POSITIVE_INFINITY) return '"Infinity"';
        if (number === Number.NEGATIVE_INFINITY) return '"-Infinity"';
        return JSON.stringify(number);
      };
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      return (value) => JSON.stringify((value as bigint | string | number).toString());
    case ScalarType.BYTES:
      return (value) => `"${base64Encode(value as Uint8Array)}"`;
    default: // string, bool and the 32-bit integers are themselves in JSON
      return (value) => JSON.stringify(value);
  }
}

function timestampToJson(schema: DescMessage, message: MessageObject): string {
  const ms = Number(message.seconds) * 1000;
  const nanos = message.nanos as number;
  if (!(ms >= MIN_TIMESTAMP_MS && ms <= MAX_TIMESTAMP_MS) || nanos < 0 || nanos > 999_999_999) {
    return JSON.stringify(toJson(schema, message as never)); // throws protobuf-es' own error
  }
  if (nanos === 0) return `"${isoSeconds(ms)}Z"`;
  const digits = String(nanos + 1_000_000_000).slice(1);
  const fraction = digits.endsWith("000000") ? digits.slice(0, 3) : digits.endsWith("000") ? digits.slice(0, 6) : digits;
  return `"${isoSeconds(ms)}.${fraction}Z"`;
}

// Date#toISOString costs over a microsecond here, and a runner has four timestamps; the same
// second also tends to repeat (created, updated, last seen), so remember the last one.
let lastSecondsMs = Number.NaN;
let lastSecondsText = "";

/** "YYYY-MM-DDTHH:MM:SS" (UTC) for whole-second `ms` in years 1 to 9999. */
function isoSeconds(ms: number): string {
  if (ms === lastSecondsMs) return lastSecondsText;
  const days = Math.floor(ms / 86_400_000);
  const secondOfDay = (ms - days * 86_400_000) / 1000;
  // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthIndex = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthIndex + 2) / 5) + 1;
  const month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(secondOfDay / 3600);
  const minute = Math.floor((secondOfDay % 3600) / 60);
  const second = secondOfDay % 60;
  lastSecondsText = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}`;
  lastSecondsMs = ms;
  return lastSecondsText;
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, "0");
}
