// Opaque, tamper-evident keyset page tokens. A token names the last row of the previous
// page (created_at, id) and a digest of what it was issued for (the list, the caller's
// organization, the filter), signed with a key shared by all replicas. Editing it, or reusing
// it with another filter or another list, is refused.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { invalidArgument } from "./errors.js";
import type { PaginationRequest } from "../../gen/gitpod/v1/pagination_pb.js";
import type { ListCursor, ListFilter } from "../store/runner-store.js";

const MAC_BYTES = 16;

export const DEFAULT_PAGE_SIZE = 25;
export const MAX_PAGE_SIZE = 100;

/** Digest of a token's scope: its parts in a canonical order. */
export function scopeDigest(parts: readonly string[]): string {
  return createHash("sha256").update(parts.join("|")).digest("base64url").slice(0, 11);
}

/** ListRunners' scope: the caller's organization and the filter. */
export function filterDigest(organizationId: string, filter: ListFilter): string {
  return scopeDigest([
    organizationId,
    [...filter.kinds].sort((a, b) => a - b).join(","),
    [...filter.providers].sort((a, b) => a - b).join(","),
    [...filter.creatorIds].map((id) => id.toLowerCase()).sort().join(","),
  ]);
}

export class PageTokenCodec {
  constructor(private readonly key: Buffer) {}

  private mac(payload: string): Buffer {
    return createHmac("sha256", this.key).update(payload).digest().subarray(0, MAC_BYTES);
  }

  /** `scope`: a digest (filterDigest, scopeDigest) of what the token is valid for. */
  encode(cursor: ListCursor, scope: string): string {
    const payload = Buffer.from(JSON.stringify([cursor.createdAt.getTime(), cursor.id, scope])).toString("base64url");
    return `${payload}.${this.mac(payload).toString("base64url")}`;
  }

  /** The cursor in a token issued for this scope; invalid_argument naming `method` for anything else. */
  decode(token: string, scope: string, method: string): ListCursor {
    const invalid = () =>
      invalidArgument("pagination.token", `is not a token returned by a previous ${method} call with the same filter`, "pagination.token_invalid");
    const [payload, mac, extra] = token.split(".");
    if (!payload || !mac || extra !== undefined) throw invalid();
    const given = Buffer.from(mac, "base64url");
    if (given.length !== MAC_BYTES || !timingSafeEqual(given, this.mac(payload))) throw invalid();
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      throw invalid();
    }
    if (!Array.isArray(decoded) || decoded.length !== 3) throw invalid();
    const [createdAt, id, digest] = decoded as [unknown, unknown, unknown];
    if (typeof createdAt !== "number" || typeof id !== "string" || digest !== scope) throw invalid();
    return { createdAt: new Date(createdAt), id };
  }

  /**
   * One page of a keyset-paged list: decodes the request's token, fetches one row more than
   * the page (so the last page has no next token) and encodes the cursor of its last row.
   */
  async page<Row>(
    pagination: PaginationRequest | undefined,
    scope: string,
    method: string,
    fetch: (after: ListCursor | undefined, limit: number) => Promise<Row[]>,
    cursorOf: (row: Row) => ListCursor,
  ): Promise<{ rows: Row[]; nextToken: string }> {
    const pageSize = pagination?.pageSize || DEFAULT_PAGE_SIZE;
    const token = pagination?.token ?? "";
    const after = token === "" ? undefined : this.decode(token, scope, method);
    const rows = await fetch(after, pageSize + 1);
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    return { rows: page, nextToken: rows.length > pageSize && last ? this.encode(cursorOf(last), scope) : "" };
  }
}
