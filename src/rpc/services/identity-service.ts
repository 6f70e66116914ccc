// gitpod.v1.IdentityService.
import type { ServiceImpl } from "@connectrpc/connect";
import { Principal, type IdentityService } from "../../../gen/gitpod/v1/identity_pb.js";
import { callerOf } from "../../domain/auth.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { notImplemented } from "./not-implemented.js";

export function identityService(registry: RunnerRegistry): ServiceImpl<typeof IdentityService> {
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

    getIDToken: notImplemented("GetIDToken", "it does not issue OIDC identity tokens"),
  };
}
