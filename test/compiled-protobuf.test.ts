// The compiled protobuf code must do exactly what protobuf-es does by reflection, for every
// message type of the API: the JSON encoder (src/protobuf/json-encoder.ts) writes what toJsonString
// writes, or fails the same way; createMessage (src/protobuf/create-message.ts) builds what create builds.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { create, createFileRegistry, toJsonString, type DescMessage } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  TimestampSchema,
  timestampFromMs,
} from "@bufbuild/protobuf/wkt";
import { encodeJson } from "../src/protobuf/json-encoder.js";
import { createMessage } from "../src/protobuf/create-message.js";
import { RunnerSchema, RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { RunnerPhase } from "../gen/gitpod/v1/runner_pb.js";
import { messageArbitraries } from "./message-arbitrary.js";

const MIN_SECONDS = -62135596800n; // 0001-01-01T00:00:00Z
const MAX_SECONDS = 253402300799n; // 9999-12-31T23:59:59Z

// Timestamps as the server writes them (whole ms, µs and ns), at the edges, and out of range.
const timestampArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ seconds: fc.bigInt(MIN_SECONDS, MAX_SECONDS), nanos: fc.constantFrom(0, 1, 999_999_999, 500_000_000, 120_000, 7_000) }) },
  { weight: 6, arbitrary: fc.record({ seconds: fc.bigInt(MIN_SECONDS, MAX_SECONDS), nanos: fc.integer({ min: 0, max: 999_999_999 }) }) },
  { weight: 2, arbitrary: fc.record({ seconds: fc.constantFrom(MIN_SECONDS, MAX_SECONDS, 0n, -1n), nanos: fc.integer({ min: 0, max: 999 }).map((n) => n * 1_000_000) }) },
  { weight: 1, arbitrary: fc.record({ seconds: fc.constantFrom(MIN_SECONDS - 1n, MAX_SECONDS + 1n, 2n ** 62n), nanos: fc.constant(0) }) },
  { weight: 1, arbitrary: fc.record({ seconds: fc.constant(0n), nanos: fc.constantFrom(-1, 1_000_000_000) }) },
);

const { messageInitArb } = messageArbitraries({
  strings: () => fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: "binary", maxLength: 10 }), fc.constant("")),
  override: (desc) => (desc.typeName === TimestampSchema.typeName ? timestampArb : undefined),
});

function outcome(encode: () => string): { json: string } | { error: string } {
  try {
    return { json: encode() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const methods = [...RunnerService.methods, ...IdentityService.methods, ...RunnerInteractionService.methods];
// Responses are what the server encodes; requests add the remaining field types of the schema.
// A proto3 message with the field types gitpod.v1 does not use (floating point, maps of
// messages, repeated 64-bit integers, optional bytes).
const extraFile = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "encoder_test.proto",
    package: "encoder.test",
    syntax: "proto3",
    messageType: [
      {
        name: "Extras",
        field: [
          { name: "ratio", number: 1, type: Type.DOUBLE, label: Label.OPTIONAL, jsonName: "ratio" },
          { name: "weight", number: 2, type: Type.FLOAT, label: Label.OPTIONAL, jsonName: "weight" },
          { name: "counts", number: 3, type: Type.SINT64, label: Label.REPEATED, jsonName: "counts" },
          { name: "blob", number: 4, type: Type.BYTES, label: Label.OPTIONAL, jsonName: "blob", proto3Optional: true, oneofIndex: 0 },
          { name: "children", number: 5, type: Type.MESSAGE, label: Label.REPEATED, typeName: ".encoder.test.Extras.ChildrenEntry", jsonName: "children" },
          { name: "scores", number: 6, type: Type.FLOAT, label: Label.REPEATED, jsonName: "scores" },
        ],
        nestedType: [
          {
            name: "ChildrenEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", number: 1, type: Type.INT32, label: Label.OPTIONAL, jsonName: "key" },
              { name: "value", number: 2, type: Type.MESSAGE, label: Label.OPTIONAL, typeName: ".encoder.test.Extras", jsonName: "value" },
            ],
          },
        ],
        oneofDecl: [{ name: "_blob" }],
      },
    ],
  }),
  () => undefined, // no imports
);
const ExtrasSchema = extraFile.getMessage("encoder.test.Extras")!;

const schemas: DescMessage[] = [
  ...new Set([RunnerSchema, ...methods.map((m) => m.output), ...methods.map((m) => m.input), ExtrasSchema, TimestampSchema]),
];

describe("compiled protobuf code", () => {
  it.each(schemas.map((schema) => [schema.typeName, schema] as const))(
    "writes %s exactly as protobuf-es does",
    (_name, schema) => {
      fc.assert(
        fc.property(messageInitArb(schema), (init) => {
          const message = create(schema, init);
          expect(outcome(() => encodeJson(schema, message))).toEqual(outcome(() => toJsonString(schema, message)));
        }),
        { numRuns: schema === RunnerSchema ? 2000 : 200 },
      );
    },
  );

  it.each(schemas.map((schema) => [schema.typeName, schema] as const))("creates %s exactly as protobuf-es does", (_name, schema) => {
    fc.assert(
      fc.property(messageInitArb(schema), fc.boolean(), (init, asMessage) => {
        // Also with an init that is already a message, which create() returns as is.
        const given = asMessage ? create(schema, init) : init;
        const compiled = createMessage(schema, given);
        expect(compiled).toStrictEqual(create(schema, given));
        expect(Object.keys(compiled)).toEqual(Object.keys(create(schema, given)));
        if (asMessage) expect(compiled).toBe(given);
      }),
      { numRuns: schema === RunnerSchema ? 1000 : 100 },
    );
  });

  it("gives every message its own lists, maps and byte arrays", () => {
    const first = createMessage(RunnerSchema, { status: {} });
    const second = createMessage(RunnerSchema, { status: {} });
    first.status!.capabilities.push(1);
    expect(second.status!.capabilities).toEqual([]);
    expect(first.status!.publicKey).not.toBe(second.status!.publicKey);
  });

  it("writes a typical runner with the fields a client reads", () => {
    const runner = create(RunnerSchema, {
      runnerId: "0b6bd3b4-3f0c-4c2a-9d5b-4c1f3c6f6a11",
      name: "eu runner",
      createdAt: timestampFromMs(Date.UTC(2026, 10, 27, 22, 0, 0, 123)),
      status: { phase: RunnerPhase.ACTIVE, version: "1.2.3" },
    });
    const json = JSON.parse(encodeJson(RunnerSchema, runner));
    expect(json).toMatchObject({
      runnerId: "0b6bd3b4-3f0c-4c2a-9d5b-4c1f3c6f6a11",
      name: "eu runner",
      createdAt: "2026-11-27T22:00:00.123Z",
      status: { phase: "RUNNER_PHASE_ACTIVE", version: "1.2.3" },
    });
    expect(encodeJson(RunnerSchema, runner)).toBe(toJsonString(RunnerSchema, runner));
  });
});
