// fast-check generators of protobuf-es messages, driven by the schema: every field present or
// not, oneofs with one case or none, enums with unknown numbers, every scalar's full range.
// Shared by the wire fuzzer (test/fuzz.test.ts) and the JSON encoder test.
import fc from "fast-check";
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";

export interface MessageArbitraryOptions {
  /** Values of string fields. */
  strings: () => fc.Arbitrary<string>;
  /** A generator for a message type instead of its fields (e.g. well-formed Timestamps). */
  override?: (desc: DescMessage) => fc.Arbitrary<Record<string, unknown>> | undefined;
}

const specialNumbers = fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0);

export function messageArbitraries(options: MessageArbitraryOptions) {
  function scalarArb(field: { scalar: ScalarType; longAsString?: boolean }): fc.Arbitrary<unknown> {
    const long = (min: bigint, max: bigint) => fc.bigInt(min, max).map((v) => (field.longAsString ? v.toString() : v));
    switch (field.scalar) {
      case ScalarType.STRING:
        return options.strings();
      case ScalarType.BOOL:
        return fc.boolean();
      case ScalarType.BYTES:
        return fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.constant(new Uint8Array(32)));
      case ScalarType.DOUBLE:
        return fc.oneof(fc.double(), specialNumbers);
      case ScalarType.FLOAT:
        return fc.oneof(fc.float(), specialNumbers);
      case ScalarType.INT32:
      case ScalarType.SINT32:
      case ScalarType.SFIXED32:
        return fc.oneof(fc.integer({ min: -3, max: 30 }), fc.integer());
      case ScalarType.UINT32:
      case ScalarType.FIXED32:
        return fc.oneof(fc.nat(30), fc.nat());
      case ScalarType.INT64:
      case ScalarType.SINT64:
      case ScalarType.SFIXED64:
        return long(-(2n ** 63n), 2n ** 63n - 1n);
      case ScalarType.UINT64:
      case ScalarType.FIXED64:
        return long(0n, 2n ** 64n - 1n);
    }
  }

  function singleArb(field: DescField, depth: number): fc.Arbitrary<unknown> {
    const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind === "map" ? field.mapKind : field.fieldKind;
    if (kind === "enum") {
      const values = field.enum!.values.map((v) => v.number);
      return fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 1000 }) });
    }
    if (kind === "message") return messageInitArb(field.message!, depth + 1);
    return scalarArb(field as { scalar: ScalarType; longAsString?: boolean });
  }

  function fieldArb(field: DescField, depth: number): fc.Arbitrary<unknown> {
    if (field.fieldKind === "list") return fc.array(singleArb(field, depth), { maxLength: 4 });
    if (field.fieldKind === "map") {
      const key = scalarArb({ scalar: field.mapKey }).map((k) => String(k));
      return fc.array(fc.tuple(key, singleArb(field, depth)), { maxLength: 3 }).map((entries) => Object.fromEntries(entries));
    }
    return singleArb(field, depth);
  }

  /** An init object for create(): each field present or not, oneofs with one case or none. */
  function messageInitArb(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
    const override = options.override?.(desc);
    if (override) return override;
    if (depth > 4) return fc.constant({});
    const parts: fc.Arbitrary<[string, unknown] | undefined>[] = [];
    for (const field of desc.fields) {
      if (field.oneof) continue;
      parts.push(fc.option(fieldArb(field, depth).map((v): [string, unknown] => [field.localName, v]), { nil: undefined, freq: 2 }));
    }
    for (const oneof of desc.oneofs) {
      const cases = oneof.fields.map((field) =>
        singleArb(field, depth).map((value): [string, unknown] => [oneof.localName, { case: field.localName, value }]),
      );
      parts.push(fc.option(fc.oneof(...cases), { nil: undefined, freq: 2 }));
    }
    return fc.tuple(...parts).map((entries) => Object.fromEntries(entries.filter((e): e is [string, unknown] => e !== undefined)));
  }

  return { messageInitArb };
}
