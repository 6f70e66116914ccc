// The audit log use cases (EventService.ListAuditLogs, GetAuditLog): organization admins only.
// Entries are written by the database in the transaction of each change (src/store/db/audit-context.ts).
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import {
  ListAuditLogsResponse_AuditLogEntrySchema,
  type ListAuditLogsRequest,
  type ListAuditLogsResponse_AuditLogEntry,
} from "../../gen/gitpod/v1/event_pb.js";
import { SortOrder } from "../../gen/gitpod/v1/pagination_pb.js";
import type { AuditFilter, AuditRow, AuditStore } from "../store/audit-store.js";
import { isOrganizationAdmin } from "./access.js";
import type { UserCaller } from "./caller.js";
import { invalidArgument, notFound, permissionDenied } from "./errors.js";
import { scopeDigest, type PageTokenCodec } from "./page-token.js";

function requireAdmin(user: UserCaller): void {
  if (!isOrganizationAdmin(user)) throw permissionDenied("only organization admins may read the audit log");
}

function entryOf(row: AuditRow): ListAuditLogsResponse_AuditLogEntry {
  return create(ListAuditLogsResponse_AuditLogEntrySchema, {
    id: row.id,
    actorId: row.actorId ?? "",
    actorPrincipal: row.actorPrincipal,
    subjectId: row.subjectId ?? "",
    subjectType: row.subjectType,
    action: row.action,
    kind: row.kind,
    createdAt: timestampFromDate(row.createdAt),
  });
}

const date = (t: Timestamp | undefined) => (t ? timestampDate(t) : undefined);

export class AuditLog {
  constructor(
    private readonly store: AuditStore,
    private readonly pageTokens: PageTokenCodec,
  ) {}

  async list(user: UserCaller, request: ListAuditLogsRequest): Promise<{ entries: ListAuditLogsResponse_AuditLogEntry[]; nextToken: string }> {
    requireAdmin(user);
    const sort = request.sort;
    if (sort && sort.field !== "" && sort.field !== "createdAt") {
      throw invalidArgument("sort.field", `can only be "createdAt", got ${JSON.stringify(sort.field)}`, "sort.field_supported");
    }
    const ascending = sort?.order === SortOrder.ASC;
    const f = request.filter;
    const filter: AuditFilter = {
      actorIds: f?.actorIds ?? [],
      actorPrincipals: (f?.actorPrincipals ?? []).filter((p) => p !== 0),
      subjectIds: f?.subjectIds ?? [],
      subjectTypes: (f?.subjectTypes ?? []).filter((t) => t !== 0),
      from: date(f?.from),
      to: date(f?.to),
    };
    const scope = scopeDigest([
      user.organizationId, ascending ? "asc" : "desc",
      [...filter.actorIds].map((id) => id.toLowerCase()).sort().join(","), [...filter.actorPrincipals].sort().join(","),
      [...filter.subjectIds].map((id) => id.toLowerCase()).sort().join(","), [...filter.subjectTypes].sort().join(","),
      String(filter.from?.getTime() ?? ""), String(filter.to?.getTime() ?? ""),
    ]);
    const { rows, nextToken } = await this.pageTokens.page(
      request.pagination,
      scope,
      "ListAuditLogs",
      (after, limit) => this.store.list(user.organizationId, filter, ascending, after, limit),
      (row) => ({ createdAt: row.createdAt, id: row.id }),
    );
    return { entries: rows.map(entryOf), nextToken };
  }

  async get(user: UserCaller, id: string): Promise<ListAuditLogsResponse_AuditLogEntry> {
    requireAdmin(user);
    const row = await this.store.get(user.organizationId, id);
    if (!row) throw notFound(`audit log entry ${id}`);
    return entryOf(row);
  }
}
