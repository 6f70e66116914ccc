// What the compiled protobuf code (src/protobuf/json-encoder.ts, src/protobuf/binary-encoder.ts,
// src/protobuf/create-message.ts) shares: one function per message type, made on first use,
// functions generated from source lines, and the test of whether a field is written.
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";

/**
 * `compile(schema)` once per message type. While a type is being compiled, a lookup of it (a
 * recursive type) gets a forwarder to the function that is being made.
 */
export function perMessageType<F extends (...args: never[]) => unknown>(compile: (schema: DescMessage) => F): (schema: DescMessage) => F {
  const compiled = new WeakMap<DescMessage, F>();
  return (schema) => {
    let fn = compiled.get(schema);
    if (fn === undefined) {
      let body: F | undefined;
      fn = ((...args: never[]) => body!(...args)) as F;
      compiled.set(schema, fn);
      body = compile(schema);
      compiled.set(schema, body);
    }
    return fn;
  };
}

/** Source of a generated function, and the values its code refers to as `r[i]`. */
export class GeneratedFunction {
  private readonly refs: unknown[] = [];

  /** An expression for `value` in the generated code. */
  ref(value: unknown): string {
    return `r[${this.refs.push(value) - 1}]`;
  }

  /** The function `name(parameter) { lines }`. */
  build<F>(name: string, parameter: string, lines: string[]): F {
    return new Function("r", `return function ${name}(${parameter}) {\n${lines.join("\n")}\n};`)(this.refs) as F;
  }
}

const IMPLICIT = 2; // google.protobuf.FeatureSet.FieldPresence.IMPLICIT

/**
 * When a singular field that is not in a oneof is written, as protobuf-es' isFieldSet decides,
 * as code over the field's value `v` and its message `m`.
 */
export function setCondition(field: DescField, ref: (value: unknown) => string): string {
  if (field.presence !== IMPLICIT) {
    // Explicit presence: an own, defined property.
    return `v !== undefined && Object.hasOwn(m, ${JSON.stringify(field.localName)})`;
  }
  if (field.fieldKind === "enum") return `v !== ${field.enum.values[0]!.number}`;
  if (field.fieldKind !== "scalar") throw new Error(`${field.toString()}: a message field with implicit presence`);
  switch (field.scalar) {
    case ScalarType.BOOL:
      return "v !== false";
    case ScalarType.STRING:
      return 'v !== ""';
    case ScalarType.BYTES:
      return "!(v instanceof Uint8Array && v.byteLength === 0)";
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return `!${ref(Object.is)}(v, 0)`; // -0 is written
    default:
      return "v != 0"; // 0, 0n and "0" are zero
  }
}
