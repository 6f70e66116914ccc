// Live updates: keeps every runner query of the page current without a reload, through
// EventService.WatchEvents. Each event (a runner created, changed, deleted, its phase flipped by
// the server's sweeper; a policy changed) re-reads the runner queries the page shows, coalesced;
// an event about an SCM integration, a host token or an environment class re-reads the
// RunnerConfigurationService queries instead.
// When the stream drops it reconnects with a growing delay, and re-lists once it is back, since
// events sent while it was away are not replayed.
import { useEffect, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { createConnectQueryKey, useTransport } from "@connectrpc/connect-query";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { RunnerService } from "../../gen/gitpod/v1/runner_pb.js";
import { GroupService } from "../../gen/gitpod/v1/group_pb.js";
import { RunnerConfigurationService } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import { EventService, ResourceOperation, ResourceType } from "../../gen/gitpod/v1/event_pb.js";

export type LiveState = { mode: "connecting" } | { mode: "watching" } | { mode: "reconnecting"; reason: string };

/** Re-reads of a burst of events become one. */
const COALESCE_MS = 150;
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10_000;

type Service = typeof RunnerService | typeof GroupService | typeof RunnerConfigurationService;
const RUNNER_SERVICES: Service[] = [RunnerService, GroupService];
const CONFIGURATION_TYPES = new Set([ResourceType.RUNNER_SCM_INTEGRATION, ResourceType.HOST_AUTHENTICATION_TOKEN, ResourceType.ENVIRONMENT_CLASS]);

/** The services whose queries show a resource of this type (docs/events.md). */
function servicesFor(type: ResourceType): Service[] {
  return CONFIGURATION_TYPES.has(type) ? [RunnerConfigurationService] : RUNNER_SERVICES;
}

/** Re-reads the queries of `services` (by default every RunnerService and GroupService (policy names) query) that a page shows. */
export function useRefreshRunners(): (services?: Service[]) => Promise<void> {
  const queryClient = useQueryClient();
  return async (services = RUNNER_SERVICES) => {
    await Promise.all(services.map((schema) => queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema, cardinality: undefined }) })));
  };
}

export function LiveUpdates({ onState }: { onState: (state: LiveState) => void }) {
  const transport = useTransport();
  const refresh = useRefreshRunners();
  useEffect(() => {
    const stop = new AbortController();
    const client = createClient(EventService, transport);
    let pending: ReturnType<typeof setTimeout> | undefined;
    const stale = new Set<Service>();
    const soon = (services: Service[] = [...RUNNER_SERVICES, RunnerConfigurationService]) => {
      for (const service of services) stale.add(service);
      pending ??= setTimeout(() => {
        pending = undefined;
        const due = [...stale];
        stale.clear();
        void refresh(due);
      }, COALESCE_MS);
    };
    const sleep = (ms: number) => new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      stop.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });

    void (async () => {
      let delay = RECONNECT_FIRST_MS;
      let reason = "the stream ended";
      for (let attempt = 0; !stop.signal.aborted; attempt++) {
        const opened = () => {
          onState({ mode: "watching" });
          delay = RECONNECT_FIRST_MS;
          // What changed while the stream was not there is not replayed: read it all again.
          if (attempt > 0) soon();
        };
        try {
          // The whole organization, every resource type: runners, their policies, groups, configuration.
          const stream = client.watchEvents({ scope: { case: "organization", value: true } }, { signal: stop.signal, onHeader: opened, timeoutMs: 0 });
          for await (const event of stream) {
            if (event.operation === ResourceOperation.UNSPECIFIED) continue; // a keepalive
            soon(servicesFor(event.resourceType));
          }
        } catch (err) {
          if (stop.signal.aborted) return;
          const error = ConnectError.from(err);
          // A revoked key: the next read answers unauthenticated and the app signs out.
          if (error.code === Code.Unauthenticated) {
            soon();
            return;
          }
          reason = error.rawMessage;
        }
        onState({ mode: "reconnecting", reason });
        await sleep(delay);
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      }
    })();
    return () => {
      stop.abort();
      clearTimeout(pending);
    };
    // One stream per transport (the page keeps it for as long as it is signed in).
  }, [transport]);
  return null;
}

/**
 * Asks the server again when a shown runner's liveness window runs out: an ACTIVE runner turns
 * INACTIVE by the clock alone, with no write and so no event.
 */
export function useRefreshAt(moments: (Date | undefined)[]): void {
  const refresh = useRefreshRunners();
  const next = moments.reduce<number | undefined>((min, d) => {
    const t = d?.getTime();
    return t !== undefined && t > Date.now() && (min === undefined || t < min) ? t : min;
  }, undefined);
  useEffect(() => {
    if (next === undefined) return;
    // A little after the moment, so the server's clock has passed it too.
    const timer = setTimeout(() => void refresh(), Math.min(next - Date.now() + 500, 2 ** 31 - 1));
    return () => clearTimeout(timer);
  }, [next]);
}

/** The current time, ticking every `ms`, for "12 s ago". */
export function useNow(ms = 1_000): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const timer = setInterval(() => setNow(new Date()), ms);
    return () => clearInterval(timer);
  }, [ms, setNow]);
  return now;
}
