// Authentication: turns the bearer credential of a call into its Caller.
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { bearerToken, checkToken, hashToken, hashesEqual, TokenKind, type TokenFormatProblem } from "./tokens.js";
import { permissionDenied } from "./errors.js";
import type { IdentityStore } from "../store/identity-store.js";
import type { RunnerStore } from "../store/runner-store.js";
import type { CredentialCache } from "./credential-cache.js";
import type { Caller, UserCaller } from "./caller.js";

export type { Caller, UserCaller } from "./caller.js";

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

// What the message may say depends only on what the caller sent, never on what is stored: a
// well-formed key that is unknown and one that was revoked get the same answer.
const SEND = "send the header Authorization: Bearer <API key or runner access token>";
const unauthenticated = (reason = `missing or invalid credentials: ${SEND}`) => new ConnectError(reason, Code.Unauthenticated);

const formatProblems: Record<TokenFormatProblem, string> = {
  not_ours: `the bearer token is not an API key (${TokenKind.apiKey}…) or a runner access token (${TokenKind.runnerAccess}…)`,
  malformed: `the bearer token is malformed: tokens are a prefix such as ${TokenKind.apiKey} followed by 49 letters and digits`,
  checksum: "the bearer token's checksum does not match: it was truncated or mistyped",
};

/** What is wrong with an Authorization header whose token is not a usable credential by its format alone. */
function headerProblem(authorization: string | null): string | undefined {
  if (!authorization?.trim()) return `no credentials: ${SEND}`;
  const token = bearerToken(authorization);
  if (token === undefined) return "the Authorization header must be `Bearer <token>` (one space, then the token)";
  const checked = checkToken(token);
  if (checked === "exchange") return "this is an exchange token: call IdentityService.ExchangeToken with it to get a runner access token";
  return typeof checked === "string" ? undefined : formatProblems[checked.problem];
}

export class Authenticator {
  constructor(
    private readonly identities: IdentityStore,
    private readonly runners: RunnerStore,
    private readonly cache: CredentialCache,
  ) {}

  async authenticate(authorization: string | null): Promise<Caller> {
    const problem = headerProblem(authorization);
    if (problem !== undefined) throw unauthenticated(problem);
    const token = bearerToken(authorization)!;
    const kind = checkToken(token) as "apiKey" | "runnerAccess";
    const hash = hashToken(token);
    const key = hash.toString("base64");
    const cached = this.cache.get(key);
    if (cached) return cached;
    const epoch = this.cache.currentEpoch();
    if (kind === "apiKey") {
      const user = await this.identities.userByApiKeyHash(hash);
      if (!user || !hashesEqual(user.tokenHash, hash)) throw unauthenticated("the API key is not valid: it is unknown or was revoked; create one with `cli api-key create`");
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
    if (!runner || !hashesEqual(runner.tokenHash, hash)) throw unauthenticated("the runner access token is not valid: it is unknown or was revoked");
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
