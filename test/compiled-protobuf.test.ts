// The compiled protobuf code must do exactly what protobuf-es does by reflection, for every
// message type of the API: the JSON encoder (src/protobuf/json-encoder.ts) writes what toJsonString
// writes, or fails the same way; the binary encoder (src/protobuf/binary-encoder.ts) writes the
// bytes toBinary writes; createMessage (src/protobuf/create-message.ts) builds what create builds.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { create, createFileRegistry, fromBinary, toBinary, toJsonString, type DescMessage } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  TimestampSchema,
  timestampFromMs,
} from "@bufbuild/protobuf/wkt";
import { encodeJson } from "../src/protobuf/json-encoder.js";
import { encodeBinary } from "../src/protobuf/binary-encoder.js";
import { createMessage } from "../src/protobuf/create-message.js";
import { RunnerSchema, RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { RunnerConfigurationService } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { EventService } from "../gen/gitpod/v1/event_pb.js";
import { GroupService } from "../gen/gitpod/v1/group_pb.js";
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

function binaryOutcome(encode: () => Uint8Array): { bytes: string } | { error: string } {
  try {
    return { bytes: Buffer.from(encode()).toString("hex") };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function outcome(encode: () => string): { json: string } | { error: string } {
  try {
    return { json: encode() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const methods = [RunnerService, IdentityService, RunnerInteractionService, RunnerConfigurationService, EventService, GroupService].flatMap((service) => service.methods);
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
          { name: "named", number: 7, type: Type.MESSAGE, label: Label.REPEATED, typeName: ".encoder.test.Extras.NamedEntry", jsonName: "named" },
          { name: "labels", number: 8, type: Type.MESSAGE, label: Label.REPEATED, typeName: ".encoder.test.Extras.LabelsEntry", jsonName: "labels" },
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
          {
            name: "NamedEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", number: 1, type: Type.STRING, label: Label.OPTIONAL, jsonName: "key" },
              { name: "value", number: 2, type: Type.MESSAGE, label: Label.OPTIONAL, typeName: ".encoder.test.Extras", jsonName: "value" },
            ],
          },
          {
            name: "LabelsEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", number: 1, type: Type.STRING, label: Label.OPTIONAL, jsonName: "key" },
              { name: "value", number: 2, type: Type.SINT64, label: Label.OPTIONAL, jsonName: "value" },
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

  it.each(schemas.map((schema) => [schema.typeName, schema] as const))("encodes %s to binary exactly as protobuf-es does", (_name, schema) => {
    fc.assert(
      fc.property(messageInitArb(schema), (init) => {
        const message = create(schema, init);
        expect(binaryOutcome(() => encodeBinary(schema, message))).toEqual(binaryOutcome(() => toBinary(schema, message)));
      }),
      { numRuns: schema === RunnerSchema ? 2000 : 200 },
    );
  });

  it("writes strings in UTF-8 as protobuf-es does: Latin-1, lone surrogates, astral, around 64 characters", () => {
    const char = fc.oneof(
      fc.integer({ min: 0, max: 0x17f }),
      fc.constantFrom(0xd800, 0xdbff, 0xdc00, 0xdfff, 0xfffd, 0x7f, 0x80),
      fc.integer({ min: 0x10000, max: 0x10ffff }),
    ).map((code) => String.fromCodePoint(code));
    const text = fc.oneof(fc.string({ unit: char, maxLength: 70 }), fc.integer({ min: 60, max: 70 }).map((n) => "a".repeat(n)));
    fc.assert(
      fc.property(text, text, (name, region) => {
        const runner = create(RunnerSchema, { name, spec: { configuration: { region } } });
        expect(Buffer.from(encodeBinary(RunnerSchema, runner)).toString("hex")).toBe(Buffer.from(toBinary(RunnerSchema, runner)).toString("hex"));
      }),
      { numRuns: 2000 },
    );
  });

  it("writes unknown fields last in binary, as protobuf-es does", () => {
    const known = toBinary(RunnerSchema, create(RunnerSchema, { runnerId: "r", name: "n", status: { version: "1" } }));
    const unknown = new BinaryWriter().tag(900, WireType.LengthDelimited).string("later").tag(901, WireType.Varint).int32(7).finish();
    const decoded = fromBinary(RunnerSchema, new Uint8Array([...unknown, ...known]));
    expect(decoded.$unknown).toHaveLength(2);
    expect(encodeBinary(RunnerSchema, decoded)).toEqual(toBinary(RunnerSchema, decoded));
  });

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
