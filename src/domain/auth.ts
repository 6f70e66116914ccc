// Authentication: turns the bearer credential of a call into its Caller.
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { bearerToken, hashToken, hashesEqual, tokenKindOf } from "./tokens.js";
import { permissionDenied } from "./errors.js";
import type { IdentityStore } from "../store/identity-store.js";
import type { RunnerStore } from "../store/runner-store.js";
import type { CredentialCache } from "./credential-cache.js";
import type { Caller, UserCaller } from "./caller.js";

export type { Caller, UserCaller } from "./caller.js";

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

// One message for every failure, so a probe cannot tell a malformed key from a revoked one.
const unauthenticated = () =>
  new ConnectError("missing or invalid credentials: send Authorization: Bearer <API key or runner access token>", Code.Unauthenticated);

export class Authenticator {
  constructor(
    private readonly identities: IdentityStore,
    private readonly runners: RunnerStore,
    private readonly cache: CredentialCache,
  ) {}

  async authenticate(authorization: string | null): Promise<Caller> {
    const token = bearerToken(authorization);
    const kind = token === undefined ? undefined : tokenKindOf(token);
    // An exchange token is only good for IdentityService.ExchangeToken.
    if (token === undefined || (kind !== "apiKey" && kind !== "runnerAccess")) throw unauthenticated();
    const hash = hashToken(token);
    const key = hash.toString("base64");
    const cached = this.cache.get(key);
    if (cached) return cached;
    const epoch = this.cache.currentEpoch();
    if (kind === "apiKey") {
      const user = await this.identities.userByApiKeyHash(hash);
      if (!user || !hashesEqual(user.tokenHash, hash)) throw unauthenticated();
      const caller: Caller = {
        kind: "user",
        userId: user.userId,
        organizationId: user.organizationId,
        organizationTier: user.organizationTier,
        role: user.role,
        groupIds: user.groupIds,
      };
      this.cache.set(key, caller, user.apiKeyId, epoch);
      return caller;
    }
    const runner = await this.runners.runnerByAccessTokenHash(hash);
    if (!runner || !hashesEqual(runner.tokenHash, hash)) throw unauthenticated();
    const caller: Caller = { kind: "runner", runnerId: runner.runnerId, organizationId: runner.organizationId };
    this.cache.set(key, caller, undefined, epoch);
    return caller;
  }
}

export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw unauthenticated();
  return caller;
}

export function requireUser(ctx: HandlerContext): UserCaller {
  const caller = callerOf(ctx);
  if (caller.kind !== "user") throw permissionDenied("runner access tokens cannot call this method; use a user API key");
  return caller;
}

export function requireRunner(ctx: HandlerContext): Extract<Caller, { kind: "runner" }> {
  const caller = callerOf(ctx);
  if (caller.kind !== "runner") throw permissionDenied("this method is for runner processes; use a runner access token");
  return caller;
}

/** The calling runner, which may only act on itself. */
export function requireRunnerSelf(ctx: HandlerContext, runnerId: string): Extract<Caller, { kind: "runner" }> {
  const caller = requireRunner(ctx);
  if (runnerId.toLowerCase() !== caller.runnerId) throw permissionDenied("a runner may only act on itself");
  return caller;
}
