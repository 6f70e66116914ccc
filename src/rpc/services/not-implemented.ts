// The answer of an RPC this server does not implement: `unimplemented` with the reason.
import { Code, ConnectError } from "@connectrpc/connect";

export function notImplemented(method: string, reason: string): () => never {
  return () => {
    throw new ConnectError(`${method} is not implemented by this server: ${reason}`, Code.Unimplemented);
  };
}
