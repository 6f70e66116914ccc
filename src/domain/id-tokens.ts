// The tokens this server issues as an OIDC issuer at PUBLIC_URL: ID tokens (GetIDToken), with
// which a user or a runner proves who it is to another service (a cloud provider, Vault), and
// runner logs tokens (CreateRunnerLogsToken), with which an admin reads one runner's logs.
// Both are JWTs signed with the current signing key (src/domain/signing-keys.ts) and verifiable
// offline with the JWKS. Claims and formats are documented in docs/oidc.md.
import { randomUUID } from "node:crypto";
import { SignJWT, type JWTPayload } from "jose";
import { IDTokenVersion } from "../../gen/gitpod/v1/identity_pb.js";
import type { DescEnum } from "@bufbuild/protobuf";
import { RunnerKind, RunnerKindSchema, RunnerProviderSchema } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import type { Runner } from "../../gen/gitpod/v1/runner_pb.js";
import type { Caller } from "./caller.js";
import type { Clock } from "./clock.js";
import { failedPrecondition, invalidArgument } from "./errors.js";
import { MAX_TOKEN_LIFETIME_MS, SIGNING_ALGORITHM, type SigningKeys } from "./signing-keys.js";

/** ID tokens are short-lived: a caller asks for a new one whenever it needs one. */
export const ID_TOKEN_LIFETIME_MS = 10 * 60_000;
/** Runner logs tokens: one hour (gitpod-v1-wire.md section 9). */
export const LOGS_TOKEN_LIFETIME_MS = 60 * 60_000;
/** Audiences under this prefix name this server's own token kinds; GetIDToken refuses them. */
const RESERVED_AUDIENCE_PREFIX = "urn:rcp:";
/** The JOSE `typ` of a logs token, so it can never pass for an ID token or the other way round. */
export const LOGS_TOKEN_TYPE = "runner-logs+jwt";
export const LOGS_SCOPE = "logs";
const MAX_AUDIENCES = 10;
const MAX_AUDIENCE_LENGTH = 512;

/** The audience of runner `runnerId`'s logs tokens. */
export function logsAudience(runnerId: string): string {
  return `${RESERVED_AUDIENCE_PREFIX}runner:${runnerId}`;
}

/** Claims every relying party may rely on; V2 adds the descriptive ones. */
export const ID_TOKEN_CLAIMS = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "org_id", "principal", "user_id", "runner_id", "runner_provider"];
export const ID_TOKEN_V2_CLAIMS = ["email", "runner_name", "runner_kind"];

export interface TokenLookups {
  /** The runner of this organization (not_found otherwise). */
  runner(organizationId: string, runnerId: string): Promise<Runner>;
  /** The user's email address. */
  userEmail(userId: string): Promise<string | undefined>;
}

/** The `sub` of a caller: `org:<organization id>:user:<user id>` or `org:<organization id>:runner:<runner id>`. */
export function subjectOf(caller: Caller): string {
  return caller.kind === "user" ? `org:${caller.organizationId}:user:${caller.userId}` : `org:${caller.organizationId}:runner:${caller.runnerId}`;
}

/** The wire name of an enum value, as the API's JSON shows it (`RUNNER_PROVIDER_AWS_EC2`). */
function enumName(schema: DescEnum, value: number): string {
  return schema.value[value]?.name ?? String(value);
}

function checkAudiences(audiences: string[]): void {
  if (audiences.length === 0) throw invalidArgument("audience", "must contain at least 1 item", "repeated.min_items");
  if (audiences.length > MAX_AUDIENCES) throw invalidArgument("audience", `must contain at most ${MAX_AUDIENCES} items`, "repeated.max_items");
  audiences.forEach((audience, index) => {
    const problem = (text: string) => invalidArgument("audience", `item ${index} ${text}`, "id_token.audience");
    if (audience.length === 0 || audience.length > MAX_AUDIENCE_LENGTH) throw problem(`must be 1 to ${MAX_AUDIENCE_LENGTH} characters`);
    // RFC 7519 StringOrURI: printable ASCII without spaces here; a value with a colon must be a URI.
    if (!/^[\x21-\x7e]+$/.test(audience)) throw problem("must be printable ASCII without spaces");
    if (audience.includes(":") && !URL.canParse(audience)) throw problem(`contains ":" and so must be an absolute URI, got "${audience}"`);
    if (audience.startsWith(RESERVED_AUDIENCE_PREFIX)) throw problem(`must not start with "${RESERVED_AUDIENCE_PREFIX}" (reserved for this server's own tokens)`);
    if (audiences.indexOf(audience) !== index) throw invalidArgument("audience", `item ${index} repeats item ${audiences.indexOf(audience)}`, "repeated.unique");
  });
}

export class TokenIssuer {
  constructor(
    /** PUBLIC_URL without a trailing slash, or undefined when the server is not an issuer. */
    private readonly issuer: string | undefined,
    private readonly keys: SigningKeys | undefined,
    private readonly lookups: TokenLookups,
    private readonly clock: Clock,
  ) {
    if (LOGS_TOKEN_LIFETIME_MS > MAX_TOKEN_LIFETIME_MS || ID_TOKEN_LIFETIME_MS > MAX_TOKEN_LIFETIME_MS) {
      throw new Error("a token outlives the signing key overlap (MAX_TOKEN_LIFETIME_MS)");
    }
  }

  /** GetIDToken. */
  async idToken(caller: Caller, request: { audience: string[]; version: IDTokenVersion }): Promise<string> {
    const version = request.version === IDTokenVersion.ID_TOKEN_VERSION_UNSPECIFIED ? IDTokenVersion.ID_TOKEN_VERSION_V1 : request.version;
    if (version !== IDTokenVersion.ID_TOKEN_VERSION_V1 && version !== IDTokenVersion.ID_TOKEN_VERSION_V2) {
      throw invalidArgument("version", `must be ID_TOKEN_VERSION_V1 or ID_TOKEN_VERSION_V2, got ${request.version}`, "enum.defined_only");
    }
    checkAudiences(request.audience);
    const { issuer, keys } = this.enabled();
    const v2 = version === IDTokenVersion.ID_TOKEN_VERSION_V2;
    const claims: JWTPayload & Record<string, unknown> = { org_id: caller.organizationId, principal: caller.kind };
    if (caller.kind === "user") {
      claims.user_id = caller.userId;
      if (v2) claims.email = (await this.lookups.userEmail(caller.userId)) ?? "";
    } else {
      const runner = await this.lookups.runner(caller.organizationId, caller.runnerId);
      claims.runner_id = caller.runnerId;
      claims.runner_provider = enumName(RunnerProviderSchema, runner.provider);
      if (v2) {
        claims.runner_name = runner.name;
        claims.runner_kind = enumName(RunnerKindSchema, runner.kind);
      }
    }
    const audience = request.audience.length === 1 ? request.audience[0]! : request.audience;
    return this.sign(keys, issuer, { ...claims, sub: subjectOf(caller), aud: audience }, "JWT", ID_TOKEN_LIFETIME_MS);
  }

  /** CreateRunnerLogsToken, for a user already allowed to manage `runner` (src/domain/access.ts). */
  async logsToken(user: Extract<Caller, { kind: "user" }>, runner: { id: string; kind: number }): Promise<string> {
    const { issuer, keys } = this.enabled();
    if (runner.kind === RunnerKind.LOCAL_CONFIGURATION) {
      throw failedPrecondition("the RUNNER_KIND_LOCAL_CONFIGURATION runner is not a process and has no logs");
    }
    const claims = { sub: subjectOf(user), aud: logsAudience(runner.id), scope: LOGS_SCOPE, runner_id: runner.id, org_id: user.organizationId };
    return this.sign(keys, issuer, claims, LOGS_TOKEN_TYPE, LOGS_TOKEN_LIFETIME_MS);
  }

  /** The OIDC discovery document (OpenID Connect Discovery 1.0, the parts a token verifier reads). */
  discovery(): Record<string, unknown> | undefined {
    if (this.issuer === undefined) return undefined;
    return {
      issuer: this.issuer,
      jwks_uri: `${this.issuer}/.well-known/jwks.json`,
      response_types_supported: ["id_token"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: [SIGNING_ALGORITHM],
      claims_supported: [...ID_TOKEN_CLAIMS, ...ID_TOKEN_V2_CLAIMS],
    };
  }

  /** The JWKS's keys (empty when the server is not an issuer). */
  async publishedKeys(): Promise<Record<string, unknown>[]> {
    return this.keys ? this.keys.publishedKeys() : [];
  }

  private enabled(): { issuer: string; keys: SigningKeys } {
    if (this.issuer === undefined || this.keys === undefined) {
      throw failedPrecondition("this server issues no tokens: PUBLIC_URL is not set (the issuer URL relying parties reach it at, e.g. https://rcp.example.com)");
    }
    return { issuer: this.issuer, keys: this.keys };
  }

  private async sign(keys: SigningKeys, issuer: string, claims: JWTPayload, type: string, lifetimeMs: number): Promise<string> {
    const { kid, privateKey } = await keys.signer();
    const now = Math.floor(this.clock.now().getTime() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid, typ: type })
      .setIssuer(issuer)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + lifetimeMs / 1000)
      .setJti(randomUUID())
      .sign(privateKey);
  }
}
