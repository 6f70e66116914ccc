// Opaque, tamper-evident keyset page tokens. A token names the last row of the previous
// page (created_at, id) and a digest of the filter it was issued for, signed with a key
// shared by all replicas. Editing it, or reusing it with another filter, is refused.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { invalidArgument } from "./errors.js";
import type { ListCursor, ListFilter } from "../store/runner-store.js";

const MAC_BYTES = 16;

export function filterDigest(filter: ListFilter): string {
  const canonical = [
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

  encode(cursor: ListCursor, filter: ListFilter): string {
    const payload = Buffer.from(JSON.stringify([cursor.createdAt.getTime(), cursor.id, filterDigest(filter)])).toString("base64url");
    return `${payload}.${this.mac(payload).toString("base64url")}`;
  }

  /** The cursor in a token issued for this filter; invalid_argument for anything else. */
  decode(token: string, filter: ListFilter): ListCursor {
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
    if (typeof createdAt !== "number" || typeof id !== "string" || digest !== filterDigest(filter)) throw invalid();
    return { createdAt: new Date(createdAt), id };
  }
}
