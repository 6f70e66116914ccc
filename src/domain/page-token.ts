// Opaque, tamper-evident keyset page tokens. A token names the last row of the previous
// page (created_at, id) and a digest of the organization and filter it was issued for, signed with a key
// shared by all replicas. Editing it, or reusing it with another filter, is refused.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { invalidArgument } from "./errors.js";
import type { ListCursor, ListFilter } from "../store/runner-store.js";

const MAC_BYTES = 16;

/** Digest of what a token is bound to: the caller's organization and the filter. */
export function filterDigest(organizationId: string, filter: ListFilter): string {
  const canonical = [
    organizationId,
    [...filter.kinds].sort((a, b) => a - b).join(","),
    [...filter.providers].sort((a, b) => a - b).join(","),
    [...filter.creatorIds].map((id) => id.toLowerCase()).sort().join(","),
  ].join("|");
  return createHash("sha256").update(canonical).digest("base64url").slice(0, 11);
}

export class PageTokenCodec {
  constructor(private readonly key: Buffer) {}

  private mac(payload: string): Buffer {
    return createHmac("sha256", this.key).update(payload).digest().subarray(0, MAC_BYTES);
  }

  encode(cursor: ListCursor, organizationId: string, filter: ListFilter): string {
    const payload = Buffer.from(JSON.stringify([cursor.createdAt.getTime(), cursor.id, filterDigest(organizationId, filter)])).toString(
      "base64url",
    );
    return `${payload}.${this.mac(payload).toString("base64url")}`;
  }

  /** The cursor in a token issued to this organization for this filter; invalid_argument for anything else. */
  decode(token: string, organizationId: string, filter: ListFilter): ListCursor {
    const invalid = () =>
      invalidArgument("pagination.token", "is not a token returned by a previous ListRunners call with the same filter", "pagination.token_invalid");
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
    if (typeof createdAt !== "number" || typeof id !== "string" || digest !== filterDigest(organizationId, filter)) throw invalid();
    return { createdAt: new Date(createdAt), id };
  }
}
