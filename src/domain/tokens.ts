// Secrets we hand out: user API keys, one-time runner exchange tokens and runner access
// tokens. Format: <prefix><43 base62 chars: 256 random bits><6 base62 chars: CRC-32>.
// The prefix lets secret scanners recognise a leaked token and tells the server which
// table to look in; the checksum rejects typos and garbage without a database round trip.
// Only the SHA-256 of a whole token is stored. With 256 bits of entropy a fast hash is
// enough: nothing can be brute-forced from it.
import { createHash, randomFillSync, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";

export const TokenKind = {
  apiKey: "rcpk_",
  exchange: "rcpx_",
  runnerAccess: "rcpr_",
} as const;
export type TokenKind = keyof typeof TokenKind;

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LENGTH = 43; // 43 * log2(62) = 256.1 bits
const CHECKSUM_LENGTH = 6; // 62^6 > 2^32
const TOKEN_PATTERN = /^(rcp[kxr]_)([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

// Random bytes are drawn from the CSPRNG a few KiB at a time (as Node does for randomUUID)
// instead of one system call per token; each byte is used once.
const randomPool = Buffer.alloc(4096);
let randomPoolOffset = randomPool.length;

function randomByte(): number {
  if (randomPoolOffset === randomPool.length) {
    randomFillSync(randomPool);
    randomPoolOffset = 0;
  }
  return randomPool[randomPoolOffset++]!;
}

function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    const byte = randomByte();
    // 248 = 4 * 62: reject the top bytes so every character is equally likely.
    if (byte < 248) out += ALPHABET[byte % 62];
  }
  return out;
}

function base62Checksum(text: string): string {
  let value = crc32(text);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

export function generateToken(kind: TokenKind): string {
  const head = TokenKind[kind] + randomBase62(BODY_LENGTH);
  return head + base62Checksum(head);
}

/** The kind of a well-formed token, or undefined for anything else (wrong prefix, length, checksum). */
export function tokenKindOf(token: string): TokenKind | undefined {
  const checked = checkToken(token);
  return typeof checked === "string" ? checked : undefined;
}

/** Why a string is not a token, from its format alone (nothing about whether such a token exists). */
export type TokenFormatProblem = "not_ours" | "malformed" | "checksum";

/** The kind of a well-formed token, or what is wrong with its format. */
export function checkToken(token: string): TokenKind | { problem: TokenFormatProblem } {
  const prefix = /^rcp[kxr]_/.exec(token)?.[0];
  if (prefix === undefined) return { problem: "not_ours" };
  const match = TOKEN_PATTERN.exec(token);
  if (!match) return { problem: "malformed" };
  const [, , body, checksum] = match;
  const expected = base62Checksum(prefix + body!);
  if (!timingSafeEqual(Buffer.from(expected), Buffer.from(checksum!))) return { problem: "checksum" };
  return (Object.keys(TokenKind) as TokenKind[]).find((kind) => TokenKind[kind] === prefix)!;
}

/** A token as pasted or read from a file: surrounding whitespace (a trailing newline) is not part of it. */
export function trimToken(token: string): string {
  return token.trim();
}

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/** Constant-time equality of two stored/computed hashes. */
export function hashesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Bearer credential from an Authorization header value, or undefined. */
export function bearerToken(header: string | null): string | undefined {
  if (!header) return undefined;
  const match = /^\s*Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
