// Protobuf binary encoding compiled once per message type, for the answers of Connect binary and
// gRPC calls. protobuf-es' toBinary wraps every message (and every nested one) in a reflection
// object and asks it, field by field, whether the field is set and what its value is; for a
// GetRunner over gRPC that was 7 % of the server's CPU (bench/README.md). Here each type gets a
// function generated from its descriptor that tests and writes its fields with constant property
// names, into protobuf-es' own BinaryWriter, so every value is encoded by the same code as before.
//
// The output is exactly toBinary's with default options (fields in field-number order, unknown
// fields last): test/compiled-protobuf.test.ts compares both on generated messages. Types this
// encoder does not compile (groups, proto2 required fields, maps with non-string keys) are
// written by toBinary itself, and a message the compiled code fails on is encoded again by
// toBinary, so errors stay protobuf-es'.
import { ScalarType, toBinary, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { GeneratedFunction, perMessageType, setCondition } from "./compiled-per-type.js";

type MessageObject = Record<string, unknown>;
type Writer = (writer: BinaryWriter, message: MessageObject) => void;

/** The binary encoding of `message`, identical to `toBinary(schema, message)`. */
export function encodeBinary(schema: DescMessage, message: object): Uint8Array {
  try {
    const writer = new BinaryWriter(encodeUtf8);
    writerOf(schema)(writer, message as MessageObject);
    return writer.finish();
  } catch {
    return toBinary(schema, message as never); // throws protobuf-es' own error
  }
}

const textEncoder = new TextEncoder();

/**
 * UTF-8 of a string, as TextEncoder#encode gives it. A runner has some twenty short strings, and
 * each TextEncoder call crosses into C++ and back (5 % of a GetRunner over gRPC); short ASCII
 * strings, nearly all of them, are copied here instead.
 */
function encodeUtf8(value: string): Uint8Array {
  const length = value.length;
  if (length > 64) return textEncoder.encode(value);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const code = value.charCodeAt(i);
    if (code > 0x7f) return textEncoder.encode(value);
    bytes[i] = code;
  }
  return bytes;
}

const LEGACY_REQUIRED = 3;

const writerOf = perMessageType((schema: DescMessage): Writer => {
  if (compilable(schema)) return compileMessage(schema);
  // toBinary of a message is the encoding of its fields, what a writer appends for it.
  return (writer, message) => void writer.raw(toBinary(schema, message as never));
});

function compilable(schema: DescMessage): boolean {
  return schema.fields.every(
    (field) =>
      field.presence !== LEGACY_REQUIRED &&
      !(field as { delimitedEncoding?: boolean }).delimitedEncoding &&
      !(field.fieldKind === "map" && field.mapKey !== ScalarType.STRING),
  );
}

function compileMessage(schema: DescMessage): Writer {
  const generated = new GeneratedFunction();
  const ref = (value: unknown) => generated.ref(value);
  const lines = ["let v;"];
  for (const field of schema.fields.concat().sort((a, b) => a.number - b.number)) {
    if (field.oneof) {
      lines.push(`v = m[${JSON.stringify(field.oneof.localName)}];`);
      lines.push(`if (v.case === ${JSON.stringify(field.localName)}) { v = v.value; ${singular(field, ref)} }`);
      continue;
    }
    lines.push(`v = m[${JSON.stringify(field.localName)}];`);
    switch (field.fieldKind) {
      case "list":
        if (field.listKind === "message") {
          lines.push(`for (const item of v) { w.tag(${field.number}, ${WireType.LengthDelimited}).fork(); ${ref(writerOf(field.message))}(w, item); w.join(); }`);
        } else if (field.packed) {
          lines.push(`if (v.length > 0) { w.tag(${field.number}, ${WireType.LengthDelimited}).fork(); for (const item of v) w.${METHODS[scalarOf(field)]}(item); w.join(); }`);
        } else {
          lines.push(`for (const item of v) w.tag(${field.number}, ${wireTypeOf(scalarOf(field))}).${METHODS[scalarOf(field)]}(item);`);
        }
        break;
      case "map": {
        // Key field 1 (a string here), value field 2.
        const value =
          field.mapKind === "message"
            ? `w.tag(2, ${WireType.LengthDelimited}).fork(); ${ref(writerOf(field.message))}(w, v[key]); w.join();`
            : `w.tag(2, ${wireTypeOf(scalarOf(field))}).${METHODS[scalarOf(field)]}(v[key]);`;
        lines.push(`for (const key of Object.keys(v)) { w.tag(${field.number}, ${WireType.LengthDelimited}).fork().tag(1, ${WireType.LengthDelimited}).string(key); ${value} w.join(); }`);
        break;
      }
      default:
        lines.push(`if (${setCondition(field, ref)}) { ${singular(field, ref)} }`);
    }
  }
  // Unknown fields last, as toBinary writes them (writeUnknownFields defaults to true).
  lines.push("v = m.$unknown;", "if (v !== undefined) for (const u of v) w.tag(u.no, u.wireType).raw(u.data);");
  return generated.build<Writer>("encode", "w, m", lines);
}

/** Code that writes the singular value `v` of `field`. */
function singular(field: DescField, ref: (value: unknown) => string): string {
  if (field.fieldKind === "message") {
    return `w.tag(${field.number}, ${WireType.LengthDelimited}).fork(); ${ref(writerOf(field.message))}(w, v); w.join();`;
  }
  const scalar = scalarOf(field);
  return `w.tag(${field.number}, ${wireTypeOf(scalar)}).${METHODS[scalar]}(v);`;
}

/** The scalar type of a scalar or enum field, list or map value (enums are int32). */
function scalarOf(field: DescField): ScalarType {
  return (field as { scalar?: ScalarType }).scalar ?? ScalarType.INT32;
}

const METHODS: Record<ScalarType, keyof BinaryWriter> = {
  [ScalarType.DOUBLE]: "double",
  [ScalarType.FLOAT]: "float",
  [ScalarType.INT64]: "int64",
  [ScalarType.UINT64]: "uint64",
  [ScalarType.INT32]: "int32",
  [ScalarType.FIXED64]: "fixed64",
  [ScalarType.FIXED32]: "fixed32",
  [ScalarType.BOOL]: "bool",
  [ScalarType.STRING]: "string",
  [ScalarType.BYTES]: "bytes",
  [ScalarType.UINT32]: "uint32",
  [ScalarType.SFIXED32]: "sfixed32",
  [ScalarType.SFIXED64]: "sfixed64",
  [ScalarType.SINT32]: "sint32",
  [ScalarType.SINT64]: "sint64",
};

function wireTypeOf(scalar: ScalarType): WireType {
  switch (scalar) {
    case ScalarType.BYTES:
    case ScalarType.STRING:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
    case ScalarType.FLOAT:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}
