// The server secrets key: envelope encryption of secrets kept in the database (signing keys'
// private halves today; host tokens, OAuth client secrets and runner secrets later).
//
// A keyring holds one or more 256-bit master keys. The first one seals; all of them open, so the
// master key can be rotated without a flag day (docs/operations.md#the-server-secrets-key).
// Each sealed record gets a fresh random 256-bit data key that encrypts the plaintext with
// AES-256-GCM; the data key itself is encrypted ("wrapped") with the master key, also AES-256-GCM.
// Both encryptions authenticate the record's header and a caller-given context (for example
// "signing_keys.private_key:<kid>"), so a sealed value copied into another row or column does not
// open. A data key encrypts exactly one message, so random 96-bit nonces can never repeat under it.
//
// AES-256-GCM from Node's OpenSSL rather than libsodium: it is the same primitive KMS envelope
// schemes use (so a KMS can wrap the data key later without changing the record format), runs
// synchronously with AES-NI, and needs no WebAssembly module (docs/architecture.md).
//
// Sealed format, version 1 (all lengths in bytes):
//   1 version | 8 master key id | 12 wrap nonce | 32 wrapped data key | 16 wrap tag
//   | 12 data nonce | n ciphertext | 16 data tag
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";

const VERSION = 1;
const KEY_BYTES = 32;
const KEY_ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
const WRAPPED_KEY_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES;
const OVERHEAD = HEADER_BYTES + WRAPPED_KEY_BYTES + NONCE_BYTES + TAG_BYTES;

/** A keyring text that is not a list of base64 keys; the message names where it came from. */
export class SecretsKeyError extends Error {}

/** A sealed value that does not open: unknown master key, wrong context, or altered bytes. */
export class SealedSecretError extends Error {}

interface MasterKey {
  /** Derived from the key (not secret): names the key in sealed records, logs and the CLI. */
  id: string;
  idBytes: Buffer;
  key: Buffer;
}

function keyIdOf(key: Buffer): Buffer {
  return createHmac("sha256", key).update("runner-control-plane secrets key id").digest().subarray(0, KEY_ID_BYTES);
}

function gcm(key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv("aes-256-gcm", key, nonce).setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function ungcm(key: Buffer, nonce: Buffer, aad: Buffer, sealed: Buffer): Buffer {
  const decipher = createDecipheriv("aes-256-gcm", key, nonce).setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
}

/** The master key id a sealed value names. */
export function sealedKeyId(sealed: Uint8Array): string {
  if (sealed.length < OVERHEAD || sealed[0] !== VERSION) {
    throw new SealedSecretError(`is not a sealed value (version ${sealed[0] ?? "none"}, ${sealed.length} bytes)`);
  }
  return Buffer.from(sealed.buffer, sealed.byteOffset + 1, KEY_ID_BYTES).toString("hex");
}

export class SecretsKeyring {
  private readonly byId: Map<string, MasterKey>;

  private constructor(private readonly keys: MasterKey[]) {
    this.byId = new Map(keys.map((key) => [key.id, key]));
  }

  /** A new master key in the keyring text format (base64 of 32 random bytes). */
  static generateKey(): string {
    return randomBytes(KEY_BYTES).toString("base64");
  }

  /**
   * Parses a keyring: one base64-encoded 32-byte key per line, the sealing key first, older keys
   * (still opened, never used to seal) after it. Blank lines and lines starting with # are ignored.
   * `origin` names the source (an environment variable or a file) in error messages.
   */
  static parse(text: string, origin: string): SecretsKeyring {
    const keys: MasterKey[] = [];
    text.split(/\r?\n/).forEach((raw, index) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const key = Buffer.from(line, "base64");
      // Buffer.from ignores what is not base64; a key must survive the round trip (either alphabet).
      const canonical = line.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
      if (key.length !== KEY_BYTES || key.toString("base64").replace(/=+$/, "") !== canonical) {
        throw new SecretsKeyError(
          `${origin}: line ${index + 1} is not a base64-encoded 32-byte key (generate one with: openssl rand -base64 32)`,
        );
      }
      const idBytes = keyIdOf(key);
      const id = idBytes.toString("hex");
      if (keys.some((other) => other.id === id)) throw new SecretsKeyError(`${origin}: line ${index + 1} repeats an earlier key`);
      keys.push({ id, idBytes, key });
    });
    if (keys.length === 0) throw new SecretsKeyError(`${origin} holds no key (generate one with: openssl rand -base64 32)`);
    return new SecretsKeyring(keys);
  }

  /** The id of the key that seals (the first one). */
  get currentKeyId(): string {
    return this.keys[0]!.id;
  }

  /** Every key's id, the sealing key first. */
  get keyIds(): string[] {
    return this.keys.map((key) => key.id);
  }

  /** Encrypts `plaintext` for storage, bound to `context` (which `open` must be given again). */
  seal(plaintext: Uint8Array, context: string): Buffer {
    const master = this.keys[0]!;
    const header = Buffer.concat([Buffer.of(VERSION), master.idBytes]);
    const aad = Buffer.concat([header, Buffer.from(context, "utf8")]);
    const dataKey = randomBytes(KEY_BYTES);
    const wrapNonce = randomBytes(NONCE_BYTES);
    const dataNonce = randomBytes(NONCE_BYTES);
    try {
      return Buffer.concat([header, wrapNonce, gcm(master.key, wrapNonce, aad, dataKey), dataNonce, gcm(dataKey, dataNonce, aad, plaintext)]);
    } finally {
      dataKey.fill(0);
    }
  }

  /** Decrypts what `seal` produced with the same context; throws SealedSecretError otherwise. */
  open(sealed: Uint8Array, context: string): Buffer {
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const keyId = this.keyIdOf(bytes);
    const master = this.byId.get(keyId);
    if (!master) {
      throw new SealedSecretError(
        `sealed with secrets key ${keyId}, which is not configured (configured: ${this.keyIds.join(", ")}); restore that key as a second line of the keyring`,
      );
    }
    const header = bytes.subarray(0, HEADER_BYTES);
    const aad = Buffer.concat([header, Buffer.from(context, "utf8")]);
    let offset = HEADER_BYTES;
    const wrapNonce = bytes.subarray(offset, (offset += NONCE_BYTES));
    const wrapped = bytes.subarray(offset, (offset += KEY_BYTES + TAG_BYTES));
    const dataNonce = bytes.subarray(offset, (offset += NONCE_BYTES));
    let dataKey: Buffer | undefined;
    try {
      dataKey = ungcm(master.key, wrapNonce, aad, wrapped);
      return ungcm(dataKey, dataNonce, aad, bytes.subarray(offset));
    } catch {
      throw new SealedSecretError(`does not open with secrets key ${keyId} for "${context}": altered, or sealed for another record`);
    } finally {
      dataKey?.fill(0);
    }
  }

  /** The master key id a sealed value names (whether or not this keyring has that key). */
  keyIdOf(sealed: Uint8Array): string {
    return sealedKeyId(sealed);
  }

  /** The value sealed again with the current key, or undefined when it already is. */
  reseal(sealed: Uint8Array, context: string): Buffer | undefined {
    if (this.keyIdOf(sealed) === this.currentKeyId) return undefined;
    const plaintext = this.open(sealed, context);
    try {
      return this.seal(plaintext, context);
    } finally {
      plaintext.fill(0);
    }
  }
}

/** A column of sealed values, for re-sealing everything after a master key rotation. */
export interface SealedColumn {
  /** `table.column`, for the CLI's report. */
  readonly name: string;
  /** Every row's id and sealed value. */
  rows(): Promise<{ id: string; sealed: Uint8Array }[]>;
  /** The context the row's value is sealed with. */
  context(id: string): string;
  /** Replaces the value only if it is still `before` (a concurrent change wins). */
  replace(id: string, before: Uint8Array, after: Uint8Array): Promise<boolean>;
}

export interface ResealReport {
  column: string;
  resealed: number;
  /** Rows already sealed with the current key. */
  current: number;
}

/** Seals every value of every column with the keyring's current key. Fails on the first value that does not open. */
export async function resealAll(keyring: SecretsKeyring, columns: SealedColumn[]): Promise<ResealReport[]> {
  const reports: ResealReport[] = [];
  for (const column of columns) {
    const report = { column: column.name, resealed: 0, current: 0 };
    for (const row of await column.rows()) {
      let after: Buffer | undefined;
      try {
        after = keyring.reseal(row.sealed, column.context(row.id));
      } catch (err) {
        throw new SealedSecretError(`${column.name} of ${row.id}: ${(err as Error).message}`, { cause: err });
      }
      if (after === undefined) report.current++;
      else if (await column.replace(row.id, row.sealed, after)) report.resealed++;
    }
    reports.push(report);
  }
  return reports;
}

/** How many values of each column are sealed with each master key id. */
export async function sealedKeyUsage(keyring: SecretsKeyring, columns: SealedColumn[]): Promise<Map<string, number>> {
  const usage = new Map<string, number>();
  for (const column of columns) {
    for (const row of await column.rows()) {
      const id = keyring.keyIdOf(row.sealed);
      usage.set(id, (usage.get(id) ?? 0) + 1);
    }
  }
  return usage;
}
