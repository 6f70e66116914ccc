// Environment classes (RunnerConfigurationService Create/Get/List/UpdateEnvironmentClass and the
// runner-side ListRunnerEnvironmentClasses): what machines a runner offers. Whoever may use a
// runner sees its classes; whoever manages it creates and changes them.
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EnvironmentClassSchema, ListEnvironmentClassesRequest, UpdateEnvironmentClassRequest, CreateEnvironmentClassRequest } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import type { ListRunnerEnvironmentClassesRequest } from "../../gen/gitpod/v1/runner_interaction_pb.js";
import type { EnvironmentClassRow, EnvironmentClassStore } from "../store/environment-class-store.js";
import { listingScope } from "./access.js";
import type { UserCaller } from "./caller.js";
import type { Clock } from "./clock.js";
import { notFound } from "./errors.js";
import { scopeDigest, type PageTokenCodec } from "./page-token.js";
import type { RunnerRegistry } from "./runner-registry.js";


export function environmentClassMessage(row: EnvironmentClassRow): MessageInitShape<typeof EnvironmentClassSchema> {
  return {
    id: row.id,
    runnerId: row.runnerId,
    displayName: row.displayName,
    description: row.description,
    configuration: row.configuration,
    enabled: row.enabled,
  };
}

const cursorOf = (row: { createdAt: Date; id: string }) => ({ createdAt: row.createdAt, id: row.id });
const sortedIds = (ids: readonly string[]) => [...ids].map((id) => id.toLowerCase()).sort().join(",");

export class EnvironmentClasses {
  constructor(
    private readonly store: EnvironmentClassStore,
    private readonly registry: RunnerRegistry,
    private readonly clock: Clock,
    private readonly pageTokens: PageTokenCodec,
  ) {}

  async create(user: UserCaller, request: CreateEnvironmentClassRequest): Promise<string> {
    const runner = await this.registry.authorize(user, request.runnerId, "manage");
    const row = await this.store.insert(
      {
        id: randomUUID(),
        runnerId: runner.id,
        organizationId: runner.organizationId,
        displayName: request.displayName,
        description: request.description,
        configuration: request.configuration.map(({ key, value }) => ({ key, value })),
      },
      this.clock.now(),
    );
    return row.id;
  }

  /** The class, when the user may use its runner; else not_found, as for a missing one. */
  async get(user: UserCaller, id: string): Promise<EnvironmentClassRow> {
    const row = await this.store.get(user.organizationId, id);
    if (!row || (await this.registry.accessTo(user, row.runnerId)) === "none") throw notFound(`environment class ${id}`);
    return row;
  }

  async list(user: UserCaller, request: ListEnvironmentClassesRequest): Promise<{ rows: EnvironmentClassRow[]; nextToken: string }> {
    const filter = request.filter;
    // can_create_environments: the classes this caller may start environments with, i.e. enabled
    // ones on runners they may use (every listed class is on such a runner already).
    const enabled = filter?.canCreateEnvironments ? (filter.enabled === false ? undefined : true) : filter?.enabled;
    if (filter?.canCreateEnvironments && filter.enabled === false) return { rows: [], nextToken: "" };
    const storeFilter = {
      runnerIds: filter?.runnerIds ?? [],
      enabled,
      kinds: filter?.runnerKinds ?? [],
      providers: filter?.runnerProviders ?? [],
      ids: [],
    };
    const scope = listingScope(user);
    const digest = scopeDigest([
      "ListEnvironmentClasses", user.organizationId, sortedIds(storeFilter.runnerIds), String(enabled),
      storeFilter.kinds.join(","), storeFilter.providers.join(","),
    ]);
    return this.pageTokens.page(
      request.pagination,
      digest,
      "ListEnvironmentClasses",
      (after, limit) => this.store.list(user.organizationId, storeFilter, scope, after, limit),
      cursorOf,
    );
  }

  async update(user: UserCaller, request: UpdateEnvironmentClassRequest): Promise<void> {
    const existing = await this.get(user, request.environmentClassId);
    await this.registry.authorize(user, existing.runnerId, "manage");
    const updated = await this.store.update(
      user.organizationId,
      existing.id,
      { displayName: request.displayName, description: request.description, enabled: request.enabled },
      this.clock.now(),
    );
    if (!updated) throw notFound(`environment class ${request.environmentClassId}`);
  }

  /** The calling runner's own classes. */
  async listForRunner(runner: { id: string; organizationId: string }, request: ListRunnerEnvironmentClassesRequest) {
    const ids = request.filter?.environmentClassIds ?? [];
    const storeFilter = { runnerIds: [runner.id], enabled: undefined, kinds: [], providers: [], ids };
    return this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListRunnerEnvironmentClasses", runner.id, sortedIds(ids)]),
      "ListRunnerEnvironmentClasses",
      (after, limit) => this.store.list(runner.organizationId, storeFilter, undefined, after, limit),
      cursorOf,
    );
  }
}
