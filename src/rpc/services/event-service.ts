// gitpod.v1.EventService: WatchEvents (here over Connect, gRPC and gRPC-Web; the SDK's JSON
// Lines mode on the same path is src/rpc/jsonl-watch.ts, around the same `watchEvents`),
// ListAuditLogs and GetAuditLog (organization admins only: src/domain/audit-log.ts).
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { WatchEventsResponseSchema, type EventService, type WatchEventsRequest, type WatchEventsResponse } from "../../../gen/gitpod/v1/event_pb.js";
import { requireUser, type UserCaller } from "../../domain/auth.js";
import type { AuditLog } from "../../domain/audit-log.js";
import { invalidArgument } from "../../domain/errors.js";
import type { EventHub } from "../../domain/events.js";

/** The keepalive an idle stream gets: a WatchEventsResponse with no field set (operation UNSPECIFIED). */
export const KEEPALIVE = create(WatchEventsResponseSchema);

/**
 * The events of one WatchEvents call until the client goes, the server shuts down or the stream
 * must end (an error). Throws before yielding anything for a request it does not serve.
 */
export function watchEvents(
  hub: EventHub,
  user: UserCaller,
  request: WatchEventsRequest,
  signal: AbortSignal,
  shutdown: AbortSignal,
  jsonl = false,
): AsyncGenerator<WatchEventsResponse> {
  if (request.scope.case === "environmentId") {
    throw invalidArgument("environment_id", "this server has no environments: watch the organization (organization: true, or no scope)", "watch_events.environment_scope");
  }
  const subscription = hub.subscribe(user, request.resourceTypeFilters);
  const both = AbortSignal.any([signal, shutdown]);
  return (async function* () {
    // Connect and gRPC send headers with the first message: an empty one at once tells the client
    // the watch is established (every change from now on reaches it). The JSON Lines mode flushes
    // its headers instead and skips this (src/rpc/jsonl-watch.ts).
    if (!jsonl) yield KEEPALIVE;
    for await (const item of subscription.items(both)) {
      yield item === "idle" ? KEEPALIVE : create(WatchEventsResponseSchema, item);
    }
  })();
}

export function eventService(hub: EventHub, audit: AuditLog, shutdown: AbortSignal): ServiceImpl<typeof EventService> {
  return {
    async *watchEvents(request, ctx) {
      yield* watchEvents(hub, requireUser(ctx), request, ctx.signal, shutdown);
    },

    async listAuditLogs(request, ctx) {
      const { entries, nextToken } = await audit.list(requireUser(ctx), request);
      return { entries, pagination: { nextToken } };
    },

    async getAuditLog(request, ctx) {
      return { entry: await audit.get(requireUser(ctx), request.auditLogEntryId) };
    },
  };
}
