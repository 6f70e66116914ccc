// The runners page: every runner of the organization with its phase and the reason for it,
// filtered by provider (by the API), by creator (by the API) and by phase (on the page shown),
// sorted, and paged with the API's own page tokens.
import { useState } from "react";
import { keepPreviousData } from "@tanstack/react-query";
import { useQuery } from "@connectrpc/connect-query";
import { RunnerPhase, RunnerPhaseSchema, RunnerService, type Runner } from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerProviderSchema } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import type { Settings } from "./api.js";
import { describeError } from "./api.js";
import { enumLabel, shortId, timestampText } from "./format.js";
import { dateOf, phaseExpiresAt, phaseView } from "./phase.js";
import { Link } from "./router.js";
import { useNow, useRefreshAt } from "./live.js";
import { CreateRunner } from "./create-runner.js";
import { PhaseBadge } from "./phase-badge.js";
import { EnumOptions } from "./fields.js";

type SortKey = "created" | "name" | "provider" | "phase" | "version" | "region";
const SORTS: [SortKey, string][] = [
  ["created", "Created"],
  ["name", "Name"],
  ["provider", "Provider"],
  ["phase", "Phase"],
  ["version", "Version"],
  ["region", "Region"],
];

const PHASE_ORDER: Record<number, number> = {
  [RunnerPhase.DEGRADED]: 0,
  [RunnerPhase.INACTIVE]: 1,
  [RunnerPhase.CREATED]: 2,
  [RunnerPhase.ACTIVE]: 3,
};

function sortValue(runner: Runner, key: SortKey): string | number {
  switch (key) {
    case "created":
      return dateOf(runner.createdAt)?.getTime() ?? 0;
    case "name":
      return runner.name.toLowerCase();
    case "provider":
      return enumLabel(RunnerProviderSchema, runner.provider);
    case "phase":
      return PHASE_ORDER[runner.status?.phase ?? 0] ?? 9;
    case "version":
      return runner.status?.version ?? "";
    case "region":
      return regionOf(runner);
  }
}

function regionOf(runner: Runner): string {
  return runner.status?.region || runner.spec?.configuration?.region || "";
}

export function RunnerList({ settings, myId }: { settings: Settings; myId: string | undefined }) {
  const now = useNow();
  const [provider, setProvider] = useState(0);
  const [phase, setPhase] = useState(0);
  const [mine, setMine] = useState(false);
  const [pageSize, setPageSize] = useState(25);
  // Tokens of the pages before this one: [""] is the first page.
  const [tokens, setTokens] = useState<string[]>([""]);
  const [sort, setSort] = useState<{ key: SortKey; descending: boolean }>({ key: "created", descending: true });
  const [creating, setCreating] = useState(false);

  const resetPaging = () => setTokens([""]);
  const list = useQuery(
    RunnerService.method.listRunners,
    {
      pagination: { pageSize, token: tokens.at(-1)! },
      filter: { providers: provider ? [provider] : [], creatorIds: mine && myId ? [myId] : [] },
    },
    { placeholderData: keepPreviousData },
  );
  const runners = list.data?.runners ?? [];
  useRefreshAt(runners.map((r) => phaseExpiresAt(r, settings)));

  const shown = runners
    .filter((r) => phase === 0 || r.status?.phase === phase)
    .sort((a, b) => {
      const x = sortValue(a, sort.key);
      const y = sortValue(b, sort.key);
      const order = x < y ? -1 : x > y ? 1 : 0;
      return sort.descending ? -order : order;
    });
  const nextToken = list.data?.pagination?.nextToken ?? "";

  const header = (key: SortKey, label: string) => {
    const active = sort.key === key;
    return (
      <th key={key} scope="col" aria-sort={active ? (sort.descending ? "descending" : "ascending") : "none"}>
        <button
          type="button"
          className="sort"
          onClick={() => setSort({ key, descending: active ? !sort.descending : key === "created" })}
          aria-label={`Sort by ${label}${active ? (sort.descending ? ", sorted descending" : ", sorted ascending") : ""}`}
        >
          {label}
          <span aria-hidden="true">{active ? (sort.descending ? " ▼" : " ▲") : ""}</span>
        </button>
      </th>
    );
  };

  return (
    <>
      <div className="page-head">
        <h1>Runners</h1>
        <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating} aria-controls="create-runner">
          {creating ? "Close" : "Create runner"}
        </button>
      </div>
      {creating && <CreateRunner settings={settings} onClose={() => setCreating(false)} />}

      <form className="filters" aria-label="Filter runners" onSubmit={(e) => e.preventDefault()}>
        <label>
          <span id="filter-provider-label">Provider</span>
          <select aria-labelledby="filter-provider-label"
            value={provider}
            onChange={(e) => {
              setProvider(Number(e.target.value));
              resetPaging();
            }}
          >
            <option value={0}>All providers</option>
            <EnumOptions schema={RunnerProviderSchema} />
          </select>
        </label>
        <label>
          <span id="filter-phase-label">Phase</span>
          <select aria-labelledby="filter-phase-label" value={phase} onChange={(e) => setPhase(Number(e.target.value))} aria-describedby="phase-filter-help">
            <option value={0}>All phases</option>
            <EnumOptions schema={RunnerPhaseSchema} skip={[RunnerPhase.DELETING, RunnerPhase.DELETED]} />
          </select>
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={mine}
            onChange={(e) => {
              setMine(e.target.checked);
              resetPaging();
            }}
          />
          Created by me
        </label>
        <label>
          <span id="filter-sort-label">Sort by</span>
          <select aria-labelledby="filter-sort-label"
            value={`${sort.key} ${sort.descending ? "desc" : "asc"}`}
            onChange={(e) => {
              const [key, order] = e.target.value.split(" ");
              setSort({ key: key as SortKey, descending: order === "desc" });
            }}
          >
            {SORTS.map(([key, label]) =>
              (["desc", "asc"] as const).map((order) => (
                <option key={`${key} ${order}`} value={`${key} ${order}`}>
                  {label}, {order === "desc" ? (key === "created" ? "newest first" : "descending") : key === "created" ? "oldest first" : "ascending"}
                </option>
              )),
            )}
          </select>
        </label>
        <label>
          <span id="filter-page-size-label">Per page</span>
          <select aria-labelledby="filter-page-size-label"
            value={pageSize}
            onChange={(e) => {
              setPageSize(Number(e.target.value));
              resetPaging();
            }}
          >
            {[10, 25, 50, 100].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <p id="phase-filter-help" className="help">
          Provider and creator are filtered by the server; phase and sorting apply to the page shown (the server lists newest first).
        </p>
      </form>

      {list.error && (
        <p className="page-error" role="alert">
          Could not list runners: {describeError(list.error)}
        </p>
      )}
      <div className="table-wrap">
        <table className="runners" aria-busy={list.isFetching}>
          <caption className="visually-hidden">Runners, page {tokens.length}</caption>
          <thead>
            <tr>
              {SORTS.filter(([key]) => key !== "created").map(([key, label]) => header(key, label))}
              <th scope="col">Creator</th>
              {header("created", "Created")}
            </tr>
          </thead>
          <tbody>
            {shown.map((runner) => {
              const view = phaseView(runner, now, settings);
              return (
                <tr key={runner.runnerId} data-runner-id={runner.runnerId}>
                  <td data-label="Name">
                    <Link to={`/runners/${encodeURIComponent(runner.runnerId)}`}>{runner.name}</Link>
                  </td>
                  <td data-label="Provider">{enumLabel(RunnerProviderSchema, runner.provider)}</td>
                  <td data-label="Phase" className="phase-cell">
                    <PhaseBadge view={view} />
                  </td>
                  <td data-label="Version">{runner.status?.version || "—"}</td>
                  <td data-label="Region">{regionOf(runner) || "—"}</td>
                  <td data-label="Creator" title={runner.creator?.id}>
                    {runner.creator?.id ? (runner.creator.id === myId ? "you" : shortId(runner.creator.id)) : "—"}
                  </td>
                  <td data-label="Created">{timestampText(runner.createdAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {list.isSuccess && shown.length === 0 && (
          <p className="empty">{runners.length === 0 ? "No runners yet. Create one to start." : "No runner on this page has that phase."}</p>
        )}
      </div>
      <nav className="pager" aria-label="Pages">
        <button type="button" className="secondary" disabled={tokens.length === 1} onClick={() => setTokens(tokens.slice(0, -1))}>
          Previous page
        </button>
        <span>Page {tokens.length}</span>
        <button type="button" className="secondary" disabled={nextToken === ""} onClick={() => setTokens([...tokens, nextToken])}>
          Next page
        </button>
      </nav>
    </>
  );
}
