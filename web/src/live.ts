// Live updates: keeps every runner query of the page current without a reload.
//
// INTERIM (until EventService.WatchEvents of issue #16 is merged): the runner queries are
// re-read every 2 s. The page does not depend on how: when WatchEvents lands, this file
// switches to the stream and re-lists on every reconnect, and nothing else changes.
import { useEffect, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { createConnectQueryKey } from "@connectrpc/connect-query";
import { RunnerService } from "../../gen/gitpod/v1/runner_pb.js";

export type LiveState =
  | { mode: "connecting" }
  | { mode: "watching" }
  | { mode: "polling"; intervalSeconds: number }
  | { mode: "reconnecting"; reason: string };

const POLL_MS = 2_000;

/** Re-reads every RunnerService query that a page shows. */
export function useRefreshRunners(): () => Promise<void> {
  const queryClient = useQueryClient();
  return () => queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: RunnerService, cardinality: undefined }) });
}

export function LiveUpdates({ onState }: { onState: (state: LiveState) => void }) {
  const refresh = useRefreshRunners();
  useEffect(() => {
    onState({ mode: "polling", intervalSeconds: POLL_MS / 1000 });
    const timer = setInterval(() => void refresh(), POLL_MS);
    return () => clearInterval(timer);
  }, []);
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
