// ListRunners: order, page sizes, keyset page tokens (walked by the typed clients, by the
// official SDK while runners are being added, and by hand), filters, and what a caller can
// never see (other organizations, deleted runners).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import Gitpod from "@gitpod/sdk";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListRunnersRequest_FilterSchema, Runner } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerKind, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { codeOf, postJson, protocols, startServer, type TestServer, type TestUser } from "./harness.js";

type ListRequest = { filter?: MessageInitShape<typeof ListRunnersRequest_FilterSchema>; pagination?: { pageSize?: number; token?: string } };

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server?.close());

const MANAGER_ID = "7b3f7c1e-2f0a-4d7e-9a55-0d7a0f3b6c11";


const ids = (runners: Runner[]) => runners.map((runner) => runner.runnerId);

async function create(user: TestUser, provider = RunnerProvider.AWS_EC2, name = "listed runner"): Promise<Runner> {
  const request = provider === RunnerProvider.MANAGED ? { name, provider, runnerManagerId: MANAGER_ID } : { name, provider };
  return (await server.runners("connect-json", user.apiKey).createRunner(request)).runner!;
}

function list(user: TestUser, request: ListRequest = {}, protocol: (typeof protocols)[number] = "connect-json") {
  return server.runners(protocol, user.apiKey).listRunners(request);
}

/** Every runner of the request's filter, following next tokens; also returns the page sizes. */
async function walk(user: TestUser, request: ListRequest, protocol: (typeof protocols)[number] = "connect-json") {
  const runners: Runner[] = [];
  const pages: number[] = [];
  let token = "";
  do {
    const response = await list(user, { ...request, pagination: { ...request.pagination, token } }, protocol);
    runners.push(...response.runners);
    pages.push(response.runners.length);
    token = response.pagination?.nextToken ?? "";
  } while (token !== "" && pages.length < 100);
  return { runners, pages };
}

/** The documented order: newest first, then by id (descending) among runners created at the same instant. */
function documentedOrder(runners: { runnerId: string; createdAt: number }[]): string[] {
  return [...runners]
    .sort((a, b) => b.createdAt - a.createdAt || (a.runnerId < b.runnerId ? 1 : a.runnerId > b.runnerId ? -1 : 0))
    .map((runner) => runner.runnerId);
}

const createdAtOf = (runner: Runner) => ({ runnerId: runner.runnerId, createdAt: timestampDate(runner.createdAt!).getTime() });

describe("an organization with 31 runners", () => {
  let owner: TestUser;
  let expected: string[];

  beforeAll(async () => {
    owner = await server.newUser();
    const local = (await list(owner)).runners;
    expect(local).toHaveLength(1);
    const created: Runner[] = [];
    // Groups of four share a created_at (1 ms apart from the next group), so page
    // boundaries fall between runners created at the same instant.
    for (let i = 0; i < 30; i++) {
      if (i % 4 === 0) server.clock.advance(1);
      created.push(await create(owner, RunnerProvider.AWS_EC2, `runner ${i}`));
    }
    expected = documentedOrder([...local, ...created].map(createdAtOf));
  });

  it("lists newest first, then by id", async () => {
    const { runners, pagination } = await list(owner, { pagination: { pageSize: 100 } });
    expect(ids(runners)).toEqual(expected);
    expect(pagination?.nextToken).toBe("");
  });

  it("defaults to 25 per page (page_size 0 or absent) and allows up to 100", async () => {
    for (const request of [{}, { pagination: {} }, { pagination: { pageSize: 0 } }]) {
      const { runners, pagination } = await list(owner, request);
      expect(ids(runners)).toEqual(expected.slice(0, 25));
      expect(pagination?.nextToken).not.toBe("");
    }
    expect((await list(owner, { pagination: { pageSize: 100 } })).runners).toHaveLength(31);
    expect(await codeOf(list(owner, { pagination: { pageSize: 101 } }))).toBe("InvalidArgument");
    expect(await codeOf(list(owner, { pagination: { pageSize: -1 } }))).toBe("InvalidArgument");
  });

  it.each(protocols)("walks every runner exactly once in pages of 7 over %s", async (protocol) => {
    const { runners, pages } = await walk(owner, { pagination: { pageSize: 7 } }, protocol);
    expect(pages).toEqual([7, 7, 7, 7, 3]);
    expect(ids(runners)).toEqual(expected);
  });

  it("ends with an empty next token when the last page is exactly full", async () => {
    const { pages } = await walk(owner, { pagination: { pageSize: 31 } });
    expect(pages).toEqual([31]);
  });

  it("honours the SDK's ?token=&pageSize= query parameters on a raw POST", async () => {
    const auth = { authorization: `Bearer ${owner.apiKey}` };
    const first = await postJson(server, "gitpod.v1.RunnerService/ListRunners?pageSize=4", {}, auth);
    expect(first.status).toBe(200);
    expect(first.body.runners.map((runner: { runnerId: string }) => runner.runnerId)).toEqual(expected.slice(0, 4));
    const token = encodeURIComponent(first.body.pagination.nextToken);
    const second = await postJson(server, `gitpod.v1.RunnerService/ListRunners?token=${token}&pageSize=4`, {}, auth);
    expect(second.status).toBe(200);
    expect(second.body.runners.map((runner: { runnerId: string }) => runner.runnerId)).toEqual(expected.slice(4, 8));
    // The SDK re-sends the first page's body with the next page's ?token=: the query's token wins.
    const resent = await postJson(server, `gitpod.v1.RunnerService/ListRunners?token=${token}&pageSize=4`, { pagination: { token: "stale" } }, auth);
    expect(resent.body.runners.map((runner: { runnerId: string }) => runner.runnerId)).toEqual(expected.slice(4, 8));
    // The body wins when it sets the page size itself.
    const body = await postJson(server, "gitpod.v1.RunnerService/ListRunners?pageSize=4", { pagination: { pageSize: 6 } }, auth);
    expect(body.body.runners).toHaveLength(6);
    const bad = await postJson(server, "gitpod.v1.RunnerService/ListRunners?pageSize=many", {}, auth);
    expect([bad.status, bad.body.code]).toEqual([400, "invalid_argument"]);
  });

  it("answers a Connect GET (no side effects) with the runners", async () => {
    const message = encodeURIComponent(JSON.stringify({ pagination: { pageSize: 3 } }));
    const response = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/ListRunners?connect=v1&encoding=json&message=${message}`, {
      headers: { authorization: `Bearer ${owner.apiKey}` },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { runners: { runnerId: string }[]; pagination: { nextToken: string } };
    expect(body.runners.map((runner) => runner.runnerId)).toEqual(expected.slice(0, 3));
    expect(body.pagination.nextToken).not.toBe("");

    const all = await fetch(
      `${server.baseUrl}/gitpod.v1.RunnerService/ListRunners?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({}))}`,
      { headers: { authorization: `Bearer ${owner.apiKey}` } },
    );
    expect(all.status).toBe(200);
    expect(((await all.json()) as { runners: unknown[] }).runners).toHaveLength(25);
    const anonymous = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/ListRunners?connect=v1&encoding=json&message=%7B%7D`);
    expect(anonymous.status).toBe(401);
  });

  describe("page tokens", () => {
    let token: string;
    beforeAll(async () => {
      token = (await list(owner, { pagination: { pageSize: 5 } })).pagination!.nextToken;
      expect(token).not.toBe("");
    });

    it("accept the token they issued", async () => {
      expect(ids((await list(owner, { pagination: { pageSize: 5, token } })).runners)).toEqual(expected.slice(5, 10));
    });

    it("reject a token with any character changed", async () => {
      const flip = (at: number) => token.slice(0, at) + (token[at] === "A" ? "B" : "A") + token.slice(at + 1);
      const dot = token.indexOf(".");
      for (const at of [0, Math.floor(dot / 2), dot - 2, dot + 1, dot + 5]) {
        expect([at, await codeOf(list(owner, { pagination: { pageSize: 5, token: flip(at) } }))]).toEqual([at, "InvalidArgument"]);
      }
    });

    it("reject garbage", async () => {
      for (const garbage of ["not-a-token", "a.b", "....", "%%%", "x".repeat(500)]) {
        expect([garbage, await codeOf(list(owner, { pagination: { token: garbage } }))]).toEqual([garbage, "InvalidArgument"]);
      }
    });

    it("reject a token issued for another filter", async () => {
      const filtered = await list(owner, { filter: { kinds: [RunnerKind.REMOTE] }, pagination: { pageSize: 5 } });
      const remoteToken = filtered.pagination!.nextToken;
      expect(remoteToken).not.toBe("");
      const misuse = [
        list(owner, { pagination: { pageSize: 5, token: remoteToken } }),
        list(owner, { filter: { kinds: [RunnerKind.LOCAL] }, pagination: { pageSize: 5, token: remoteToken } }),
        list(owner, { filter: { providers: [RunnerProvider.AWS_EC2] }, pagination: { pageSize: 5, token } }),
      ];
      for (const call of misuse) expect(await codeOf(call)).toBe("InvalidArgument");
      // The same filter, listed in another order, is the same filter.
      const same = await list(owner, {
        filter: { kinds: [RunnerKind.LOCAL_CONFIGURATION, RunnerKind.REMOTE] },
        pagination: { pageSize: 5 },
      });
      const reordered = await list(owner, {
        filter: { kinds: [RunnerKind.REMOTE, RunnerKind.LOCAL_CONFIGURATION] },
        pagination: { pageSize: 5, token: same.pagination!.nextToken },
      });
      expect(ids(reordered.runners)).toEqual(expected.slice(5, 10));
    });

    it("are refused for another organization (tokens are bound to the issuing organization)", async () => {
      const stranger = await server.newUser();
      for (const request of [{ pagination: { token } }, { pagination: { pageSize: 100, token } }]) {
        const err = await list(stranger, request).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code).toBe(Code.InvalidArgument);
        expect(err?.rawMessage).toMatch(/^pagination\.token:/);
      }
    });
  });
});

describe("walking with the official SDK", () => {
  it("sees every runner that existed when the walk started exactly once while new ones are added", async () => {
    const owner = await server.newUser();
    const existing: string[] = ids((await list(owner)).runners);
    for (let i = 0; i < 13; i++) {
      if (i % 3 === 0) server.clock.advance(1_000);
      existing.push((await create(owner, RunnerProvider.GCP, `existing ${i}`)).runnerId);
    }
    const requests: URL[] = [];
    const client = new Gitpod({
      bearerToken: owner.apiKey,
      baseURL: server.baseUrl,
      maxRetries: 0,
      fetch: (input, init) => {
        requests.push(new URL(String(input instanceof Request ? input.url : input)));
        return fetch(input, init);
      },
    });

    const added: string[] = [];
    let walking = true;
    const adder = (async () => {
      while (walking && added.length < 50) {
        server.clock.advance(1_000);
        added.push((await create(owner, RunnerProvider.AWS_EC2, `added ${added.length}`)).runnerId);
      }
    })();
    const seen: string[] = [];
    try {
      for await (const runner of client.runners.list({ pagination: { pageSize: 5 } })) {
        seen.push(runner.runnerId!);
        // Give the concurrent creator a chance to land between pages.
        if (seen.length % 5 === 0) await create(owner, RunnerProvider.AWS_EC2, "added mid-page").then((r) => added.push(r.runnerId));
      }
    } finally {
      walking = false;
      await adder;
    }

    expect(requests.length).toBeGreaterThanOrEqual(3);
    expect(requests.slice(1).every((url) => url.searchParams.get("token"))).toBe(true);
    expect(new Set(seen).size).toBe(seen.length);
    const counts = new Map<string, number>();
    for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1);
    expect(existing.filter((id) => counts.get(id) !== 1)).toEqual([]);
    expect(added.length).toBeGreaterThan(0);
    // Anything else it saw was added during the walk.
    const known = new Set([...existing, ...added]);
    expect(seen.filter((id) => !known.has(id))).toEqual([]);
  });
});

describe("filters", () => {
  let alice: TestUser;
  let bob: TestUser;
  let catalog: { runnerId: string; kind: RunnerKind; provider: RunnerProvider; creatorId: string }[];

  beforeAll(async () => {
    alice = await server.newUser();
    bob = await server.newUser(alice.organizationSlug, { role: "admin" }); // a second user (and admin) of the same organization
    expect(bob.organizationId).toBe(alice.organizationId);
    const made: [TestUser, RunnerProvider][] = [
      [alice, RunnerProvider.AWS_EC2],
      [alice, RunnerProvider.GCP],
      [alice, RunnerProvider.LINUX_HOST],
      [bob, RunnerProvider.AWS_EC2],
      [bob, RunnerProvider.DESKTOP_MAC],
      [bob, RunnerProvider.MANAGED],
    ];
    catalog = [];
    for (const [user, provider] of made) {
      server.clock.advance(1);
      const runner = await create(user, provider);
      catalog.push({ runnerId: runner.runnerId, kind: runner.kind, provider, creatorId: user.userId });
    }
    const local = (await list(alice, { filter: { kinds: [RunnerKind.LOCAL_CONFIGURATION] } })).runners[0]!;
    catalog.push({ runnerId: local.runnerId, kind: RunnerKind.LOCAL_CONFIGURATION, provider: RunnerProvider.UNSPECIFIED, creatorId: "" });
  });

  type Filter = { kinds?: RunnerKind[]; providers?: RunnerProvider[]; creatorIds?: string[] };
  const cases: [string, (users: { alice: string; bob: string }) => Filter][] = [
    ["no filter", () => ({})],
    ["kind REMOTE", () => ({ kinds: [RunnerKind.REMOTE] })],
    ["kinds LOCAL or LOCAL_CONFIGURATION", () => ({ kinds: [RunnerKind.LOCAL, RunnerKind.LOCAL_CONFIGURATION] })],
    ["provider AWS_EC2", () => ({ providers: [RunnerProvider.AWS_EC2] })],
    ["providers GCP or DESKTOP_MAC", () => ({ providers: [RunnerProvider.GCP, RunnerProvider.DESKTOP_MAC] })],
    ["creator alice", (u) => ({ creatorIds: [u.alice] })],
    ["creator alice or bob", (u) => ({ creatorIds: [u.alice, u.bob] })],
    ["creator bob and kind REMOTE", (u) => ({ creatorIds: [u.bob], kinds: [RunnerKind.REMOTE] })],
    ["creator alice and provider AWS_EC2 or DESKTOP_MAC", (u) => ({ creatorIds: [u.alice], providers: [RunnerProvider.AWS_EC2, RunnerProvider.DESKTOP_MAC] })],
    ["kind LOCAL and provider AWS_EC2 (nothing)", () => ({ kinds: [RunnerKind.LOCAL], providers: [RunnerProvider.AWS_EC2] })],
    ["all three", (u) => ({ kinds: [RunnerKind.REMOTE], providers: [RunnerProvider.MANAGED, RunnerProvider.GCP], creatorIds: [u.bob] })],
  ];

  it.each(cases)("%s: OR within a list, AND across lists", async (_name, filterOf) => {
    const filter = filterOf({ alice: alice.userId, bob: bob.userId });
    const matches = catalog.filter(
      (entry) =>
        (!filter.kinds?.length || filter.kinds.includes(entry.kind)) &&
        (!filter.providers?.length || filter.providers.includes(entry.provider)) &&
        (!filter.creatorIds?.length || filter.creatorIds.includes(entry.creatorId)),
    );
    const { runners } = await walk(bob, { filter, pagination: { pageSize: 2 } });
    expect(new Set(ids(runners))).toEqual(new Set(matches.map((entry) => entry.runnerId)));
    expect(runners).toHaveLength(matches.length);
  });

  it("rejects more than 25 entries per list, but takes 25", async () => {
    const uuids = Array.from({ length: 26 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
    const kinds = Array.from({ length: 26 }, () => RunnerKind.REMOTE);
    const providers = Array.from({ length: 26 }, () => RunnerProvider.GCP);
    for (const filter of [{ creatorIds: uuids }, { kinds }, { providers }]) {
      expect(await codeOf(list(alice, { filter }))).toBe("InvalidArgument");
    }
    const { runners } = await list(alice, { filter: { creatorIds: [...uuids.slice(0, 24), alice.userId] } });
    expect(runners).toHaveLength(3);
  });

  it("rejects a creator id that is not a UUID and enum values that are not defined", async () => {
    for (const filter of [
      { creatorIds: ["alice"] },
      { creatorIds: [alice.userId, ""] },
      { kinds: [99 as RunnerKind] },
      { providers: [RunnerProvider.GCP, 42 as RunnerProvider] },
    ]) {
      expect(await codeOf(list(alice, { filter }))).toBe("InvalidArgument");
    }
  });
});

describe("what is never listed", () => {
  it("omits deleted runners, even when the page boundary runner is deleted mid-walk", async () => {
    const owner = await server.newUser();
    for (let i = 0; i < 8; i++) {
      server.clock.advance(1);
      await create(owner, RunnerProvider.GCP, `deletable ${i}`);
    }
    const all = ids((await list(owner, { pagination: { pageSize: 100 } })).runners);
    expect(all).toHaveLength(9);

    const first = await list(owner, { pagination: { pageSize: 3 } });
    expect(ids(first.runners)).toEqual(all.slice(0, 3));
    // Delete the runner the token points at and one that would be on the next page.
    await server.runners("connect-json", owner.apiKey).deleteRunner({ runnerId: all[2]! });
    await server.runners("connect-json", owner.apiKey).deleteRunner({ runnerId: all[4]! });
    const second = await list(owner, { pagination: { pageSize: 3, token: first.pagination!.nextToken } });
    expect(ids(second.runners)).toEqual([all[3], all[5], all[6]]);

    const remaining = ids((await walk(owner, { pagination: { pageSize: 2 } })).runners);
    expect(remaining).toEqual(all.filter((id) => id !== all[2] && id !== all[4]));
  });

  it("never lists another organization's runners", async () => {
    const one = await server.newUser();
    const two = await server.newUser();
    const ofOne = new Set([...ids((await list(one)).runners), ...ids([await create(one), await create(one)])]);
    const ofTwo = new Set([...ids((await list(two)).runners), ...ids([await create(two)])]);
    expect(new Set(ids((await walk(one, { pagination: { pageSize: 2 } })).runners))).toEqual(ofOne);
    expect(new Set(ids((await walk(two, { pagination: { pageSize: 2 } })).runners))).toEqual(ofTwo);
    // Not even when filtering by the other organization's user.
    expect((await list(two, { filter: { creatorIds: [one.userId] } })).runners).toEqual([]);
  });
});
