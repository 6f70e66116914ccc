// gitpod.v1.IdentityService.
import type { ServiceImpl } from "@connectrpc/connect";
import { Principal, type IdentityService } from "../../../gen/gitpod/v1/identity_pb.js";
import { callerOf } from "../../domain/auth.js";
import type { TokenIssuer } from "../../domain/id-tokens.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";

export function identityService(registry: RunnerRegistry, tokens: TokenIssuer): ServiceImpl<typeof IdentityService> {
  return {
    // Authenticated by the exchange token in the body, not by an Authorization header.
    async exchangeToken(request) {
      return { accessToken: await registry.exchange(request.exchangeToken) };
    },

    getAuthenticatedIdentity(_request, ctx) {
      const caller = callerOf(ctx);
      return caller.kind === "user"
        ? {
            subject: { id: caller.userId, principal: Principal.USER },
            organizationId: caller.organizationId,
            organizationTier: caller.organizationTier,
          }
        : { subject: { id: caller.runnerId, principal: Principal.RUNNER }, organizationId: caller.organizationId };
    },

    // A signed JWT for the caller (user or runner), for the requested audiences (docs/oidc.md).
    async getIDToken(request, ctx) {
      return { token: await tokens.idToken(callerOf(ctx), request) };
    },
  };
}
