// ConnectErrors for the rules enforced in code (the ones protovalidate cannot express).
// They carry the same buf.validate.Violations detail as protovalidate's own errors, so a
// client handles every invalid_argument the same way.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { FieldPathElementSchema, FieldPathSchema, ViolationSchema, ViolationsSchema } from "../../gen/buf/validate/validate_pb.js";

/** `field` is a dotted proto field path such as `spec.configuration.update_window.start_hour`. */
export function invalidArgument(field: string, problem: string, ruleId: string): ConnectError {
  const violation = create(ViolationSchema, {
    field: create(FieldPathSchema, {
      elements: field.split(".").map((fieldName) => create(FieldPathElementSchema, { fieldName })),
    }),
    ruleId,
    message: problem,
  });
  return new ConnectError(`${field}: ${problem} [${ruleId}]`, Code.InvalidArgument, undefined, [
    { desc: ViolationsSchema, value: create(ViolationsSchema, { violations: [violation] }) },
  ]);
}

export function notFound(what: string): ConnectError {
  return new ConnectError(`${what} not found`, Code.NotFound);
}

export function failedPrecondition(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}

export function permissionDenied(message: string): ConnectError {
  return new ConnectError(message, Code.PermissionDenied);
}

export function alreadyExists(message: string): ConnectError {
  return new ConnectError(message, Code.AlreadyExists);
}

/** A request this server understands but does not serve (a feature it does not have). */
export function unimplemented(message: string): ConnectError {
  return new ConnectError(message, Code.Unimplemented);
}
