// What the compiled protobuf code (src/protobuf/json-encoder.ts, src/protobuf/create-message.ts) shares: one
// function per message type, made on first use, and functions generated from source lines.
import type { DescMessage } from "@bufbuild/protobuf";

/**
 * `compile(schema)` once per message type. While a type is being compiled, a lookup of it (a
 * recursive type) gets a forwarder to the function that is being made.
 */
export function perMessageType<F extends (arg: never) => unknown>(compile: (schema: DescMessage) => F): (schema: DescMessage) => F {
  const compiled = new WeakMap<DescMessage, F>();
  return (schema) => {
    let fn = compiled.get(schema);
    if (fn === undefined) {
      let body: F | undefined;
      fn = ((arg: never) => body!(arg)) as F;
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
