// Unknown enum names in a JSON request. protobuf-es, told to ignore unknown fields (as a server
// must, for forward compatibility), also drops an enum value whose name it does not know, so
// `"desiredPhase": "INACTIVE"` would silently mean "unset". An unknown *name* in a known field is
// a client's mistake; this finds it, with the field's JSON path and the names that are allowed.
// (Unknown enum *numbers* are kept, as open enums prescribe.)
import type { DescEnum, DescField, DescMessage } from "@bufbuild/protobuf";

/** A field path in JSON names and what is wrong there. */
export interface UnknownEnumName {
  path: string;
  message: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * A checker for the JSON text of `schema`, or undefined when no enum can occur in it. Cheap on
 * the common path: only a text with a quoted upper-case word that is no enum name of the schema
 * is parsed and walked.
 */
export function unknownEnumNameChecker(schema: DescMessage): ((text: string) => UnknownEnumName | undefined) | undefined {
  const names = new Set<string>();
  collectEnumNames(schema, names, new Set());
  if (names.size === 0) return undefined;
  return (text) => {
    for (const match of text.matchAll(/"([A-Z][A-Z0-9_]*)"/g)) {
      if (names.has(match[1]!)) continue;
      let json: Json;
      try {
        json = JSON.parse(text) as Json;
      } catch {
        return undefined; // the decoder reports the syntax error
      }
      return findUnknownEnumName(schema, json, "");
    }
    return undefined;
  };
}

function collectEnumNames(schema: DescMessage, names: Set<string>, seen: Set<DescMessage>): void {
  if (seen.has(schema) || schema.typeName.startsWith("google.protobuf.")) return;
  seen.add(schema);
  for (const field of schema.fields) {
    if (field.enum) for (const value of field.enum.values) names.add(value.name);
    if (field.message) collectEnumNames(field.message, names, seen);
  }
}

function describe(path: string, value: string, desc: DescEnum): UnknownEnumName {
  const allowed = desc.values.map((v) => v.name).filter((name, index) => index > 0 || !name.endsWith("_UNSPECIFIED"));
  return { path, message: `${path}: ${JSON.stringify(value)} is not a ${desc.name} value; allowed: ${allowed.join(", ")}` };
}

function findUnknownEnumName(schema: DescMessage, json: Json, prefix: string): UnknownEnumName | undefined {
  if (json === null || typeof json !== "object" || Array.isArray(json) || schema.typeName.startsWith("google.protobuf.")) return undefined;
  for (const [key, value] of Object.entries(json)) {
    const field: DescField | undefined = schema.fields.find((f) => f.jsonName === key || f.name === key);
    if (field === undefined || value === null) continue;
    const path = prefix + field.jsonName;
    const problem = checkValue(field, value, path);
    if (problem) return problem;
  }
  return undefined;
}

function checkValue(field: DescField, value: Json, path: string): UnknownEnumName | undefined {
  const item = (v: Json, at: string): UnknownEnumName | undefined => {
    if (field.enum && typeof v === "string" && !field.enum.values.some((ev) => ev.name === v)) return describe(at, v, field.enum);
    if (field.message) return findUnknownEnumName(field.message, v, `${at}.`);
    return undefined;
  };
  if (field.fieldKind === "list" && Array.isArray(value)) {
    for (const [index, v] of value.entries()) {
      const problem = item(v, `${path}[${index}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  if (field.fieldKind === "map" && value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value)) {
      const problem = item(v, `${path}[${JSON.stringify(key)}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  return item(value, path);
}
