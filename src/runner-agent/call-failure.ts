// The error a call handler throws to answer with a CallError: the code the public caller gets,
// a message, and error details (packed into google.protobuf.Any).
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { anyPack, type Any } from "@bufbuild/protobuf/wkt";
import { SendResponseRequest_ErrorCode as ErrorCode } from "../../gen/gitpod/v1/runner_interaction_pb.js";

export { ErrorCode };

export class CallFailure extends Error {
  readonly details: Any[];

  constructor(
    readonly code: ErrorCode,
    message: string,
    details: Any[] = [],
  ) {
    super(message);
    this.details = details;
  }

  static withDetail<Desc extends DescMessage>(code: ErrorCode, message: string, schema: Desc, detail: MessageShape<Desc>): CallFailure {
    return new CallFailure(code, message, [anyPack(schema, detail)]);
  }
}

export function unimplemented(message: string): CallFailure {
  return new CallFailure(ErrorCode.UNIMPLEMENTED, message);
}

export function invalidArgument(message: string): CallFailure {
  return new CallFailure(ErrorCode.INVALID_ARGUMENT, message);
}
