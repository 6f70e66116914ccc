// Refuses any request message with a NUL character (U+0000) in a string, on every protocol and
// both paths (Connect's handler and the unary short path run the same interceptors), before
// the handler runs. PostgreSQL `text` cannot hold U+0000: such a value used to fail in the
// INSERT and surface as `internal`. It is the client's mistake, so: `invalid_argument` naming the
// field, with the same buf.validate.Violations detail protovalidate gives (field path with
// numbers, types, list indexes and map keys). Nothing is stripped: a value the client sent is
// stored as sent, or refused.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { DescMessage } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { Violation, violationsToProto } from "@bufbuild/protovalidate";
import { findNulCharacter } from "../protobuf/nul-characters.js";

export const NUL_RULE_ID = "string.no_nul";

export function rejectNulInterceptor(): Interceptor {
  return (next) => (req) => {
    if (!req.stream) {
      check(req.method.input, req.message);
      return next(req);
    }
    // Streaming requests: every message, as it arrives.
    const messages = req.message;
    return next({
      ...req,
      message: {
        async *[Symbol.asyncIterator]() {
          for await (const message of messages) {
            check(req.method.input, message);
            yield message;
          }
        },
      },
    });
  };
}

function check(schema: DescMessage, message: object): void {
  const found = findNulCharacter(schema, message);
  if (found === undefined) return;
  const problem = found.forKey ? "map key must not contain a NUL character (U+0000)" : "must not contain a NUL character (U+0000)";
  const violation = new Violation(problem, NUL_RULE_ID, found.path, [], found.forKey);
  const [value, desc] = violationsToProto([violation]);
  // Map keys are quoted in the path; the NUL itself is shown escaped, never echoed raw.
  const field = pathToString(found.path).replaceAll("\u0000", "\\u0000");
  throw new ConnectError(`${field}: ${problem} [${NUL_RULE_ID}]`, Code.InvalidArgument, undefined, [{ desc, value }]);
}
