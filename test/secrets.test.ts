// The server secrets key (src/domain/secrets.ts): envelope encryption bound to a context, master
// key rotation by key id, and how the key is configured (SECRETS_KEY, SECRETS_KEY_FILE, the
// embedded database's generated key file).
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { embeddedSecretsKeyring } from "../src/bootstrap.js";
import { resealAll, SealedSecretError, SecretsKeyError, SecretsKeyring, sealedKeyUsage, type SealedColumn } from "../src/domain/secrets.js";

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rcp-secrets-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const oldKey = SecretsKeyring.generateKey();
const newKey = SecretsKeyring.generateKey();
const secret = Buffer.from("-----BEGIN PRIVATE KEY----- not really");

describe("seal and open", () => {
  const keyring = SecretsKeyring.parse(oldKey, "test");

  it("opens what it sealed, with the same context, and never stores the plaintext", () => {
    const sealed = keyring.seal(secret, "signing_keys.private_key:a");
    expect(keyring.open(sealed, "signing_keys.private_key:a")).toEqual(secret);
    expect(sealed.includes(secret.subarray(0, 8))).toBe(false);
    // A fresh data key and nonces each time: the same plaintext never seals to the same bytes.
    expect(keyring.seal(secret, "signing_keys.private_key:a").equals(sealed)).toBe(false);
    expect(keyring.open(keyring.seal(Buffer.alloc(0), "empty"), "empty")).toEqual(Buffer.alloc(0));
  });

  it("refuses a value moved to another record (another context)", () => {
    const sealed = keyring.seal(secret, "signing_keys.private_key:a");
    expect(() => keyring.open(sealed, "signing_keys.private_key:b")).toThrow(SealedSecretError);
  });

  it("refuses a value with any byte changed", () => {
    const sealed = keyring.seal(secret, "ctx");
    for (let i = 0; i < sealed.length; i++) {
      const altered = Buffer.from(sealed);
      altered[i]! ^= 0x01;
      expect(() => keyring.open(altered, "ctx"), `byte ${i}`).toThrow(SealedSecretError);
    }
    expect(() => keyring.open(sealed.subarray(0, 20), "ctx")).toThrow(/not a sealed value/);
  });

  it("names the master key a value needs when it is not configured", () => {
    const sealed = keyring.seal(secret, "ctx");
    const other = SecretsKeyring.parse(newKey, "test");
    expect(() => other.open(sealed, "ctx")).toThrow(`sealed with secrets key ${keyring.currentKeyId}, which is not configured`);
  });
});

describe("master key rotation", () => {
  it("seals with the first key, opens with every key, and reseals old values with the current key", async () => {
    const before = SecretsKeyring.parse(oldKey, "test");
    const rows = new Map([
      ["a", before.seal(Buffer.from("alpha"), "t.c:a")],
      ["b", before.seal(Buffer.from("beta"), "t.c:b")],
    ]);
    const rotated = SecretsKeyring.parse(`# the new key first\n${newKey}\n\n${oldKey}\n`, "test");
    expect(rotated.keyIds).toEqual([SecretsKeyring.parse(newKey, "t").currentKeyId, before.currentKeyId]);
    expect(rotated.keyIdOf(rotated.seal(secret, "x"))).toBe(rotated.currentKeyId);
    expect(rotated.open(rows.get("a")!, "t.c:a").toString()).toBe("alpha");

    const column: SealedColumn = {
      name: "t.c",
      rows: async () => [...rows].map(([id, sealed]) => ({ id, sealed })),
      context: (id) => `t.c:${id}`,
      replace: async (id, expected, after) => {
        if (!rows.get(id)!.equals(Buffer.from(expected))) return false;
        rows.set(id, Buffer.from(after));
        return true;
      },
    };
    expect(await sealedKeyUsage(rotated, [column])).toEqual(new Map([[before.currentKeyId, 2]]));
    expect(await resealAll(rotated, [column])).toEqual([{ column: "t.c", resealed: 2, current: 0 }]);
    expect(await resealAll(rotated, [column])).toEqual([{ column: "t.c", resealed: 0, current: 2 }]);
    // The old key can go now.
    const after = SecretsKeyring.parse(newKey, "test");
    expect(after.open(rows.get("b")!, "t.c:b").toString()).toBe("beta");
  });

  it("derives key ids from the keys, so a mislabelled key is impossible", () => {
    expect(SecretsKeyring.parse(oldKey, "a").currentKeyId).toBe(SecretsKeyring.parse(` ${oldKey.replace(/=+$/, "")} `, "b").currentKeyId);
    expect(SecretsKeyring.parse(oldKey, "a").currentKeyId).toMatch(/^[0-9a-f]{16}$/);
  });

  it("rejects keyrings that are not lists of distinct base64 32-byte keys, naming the source and line", () => {
    expect(() => SecretsKeyring.parse("", "SECRETS_KEY")).toThrow("SECRETS_KEY holds no key");
    expect(() => SecretsKeyring.parse("# only a comment\n", "SECRETS_KEY")).toThrow(SecretsKeyError);
    expect(() => SecretsKeyring.parse(`${oldKey}\nnot base64 at all!`, "SECRETS_KEY_FILE (k)")).toThrow("SECRETS_KEY_FILE (k): line 2 is not a base64-encoded 32-byte key");
    expect(() => SecretsKeyring.parse(Buffer.alloc(16).toString("base64"), "X")).toThrow("line 1 is not a base64-encoded 32-byte key");
    expect(() => SecretsKeyring.parse(`${oldKey}\n${oldKey}`, "X")).toThrow("line 2 repeats an earlier key");
  });
});

describe("configuration", () => {
  it("reads SECRETS_KEY (keys separated by commas) or SECRETS_KEY_FILE, not both", () => {
    const file = join(tempDir(), "key");
    writeFileSync(file, `${newKey}\n${oldKey}\n`, { mode: 0o600 });
    const fromFile = loadConfig({ SECRETS_KEY_FILE: file }).secretsKey!;
    const fromEnv = loadConfig({ SECRETS_KEY: `${newKey},${oldKey}` }).secretsKey!;
    expect(fromFile.keyring.keyIds).toEqual(fromEnv.keyring.keyIds);
    expect(fromFile.origin).toContain("SECRETS_KEY_FILE");
    expect(loadConfig({}).secretsKey).toBeUndefined();
    expect(() => loadConfig({ SECRETS_KEY: newKey, SECRETS_KEY_FILE: file })).toThrow("set SECRETS_KEY or SECRETS_KEY_FILE, not both");
    expect(() => loadConfig({ SECRETS_KEY_FILE: join(tempDir(), "missing") })).toThrow(/SECRETS_KEY_FILE is not a readable file: .*missing \(ENOENT\)/);
    expect(() => loadConfig({ SECRETS_KEY: "short" })).toThrow("SECRETS_KEY: line 1 is not a base64-encoded 32-byte key");
  });

  it("requires the secrets key on PostgreSQL when PUBLIC_URL makes the server an issuer", () => {
    const database = { DATABASE_URL: "postgres://db/rcp", PUBLIC_URL: "https://rcp.example.com" };
    expect(() => loadConfig(database)).toThrow(/PUBLIC_URL makes the server an OIDC issuer.*set SECRETS_KEY_FILE/);
    expect(loadConfig({ ...database, SECRETS_KEY: newKey }).publicUrl).toBe("https://rcp.example.com");
    // Without PUBLIC_URL nothing is sealed yet, so existing deployments keep starting.
    expect(loadConfig({ DATABASE_URL: "postgres://db/rcp" }).secretsKey).toBeUndefined();
  });

  it("validates PUBLIC_URL and drops a trailing slash (the issuer must match exactly)", () => {
    expect(loadConfig({ PUBLIC_URL: "https://rcp.example.com/" }).publicUrl).toBe("https://rcp.example.com");
    expect(loadConfig({ PUBLIC_URL: "https://example.com/rcp/" }).publicUrl).toBe("https://example.com/rcp");
    expect(loadConfig({ PUBLIC_URL: "http://127.0.0.1:8080" }).publicUrl).toBe("http://127.0.0.1:8080");
    expect(loadConfig({}).publicUrl).toBeUndefined();
    for (const bad of ["rcp.example.com", "ftp://rcp.example.com", "https://rcp.example.com/?x=1", "https://rcp.example.com/#top", "https://u:p@rcp.example.com"]) {
      expect(() => loadConfig({ PUBLIC_URL: bad }), bad).toThrow(/^PUBLIC_URL must be the absolute https:\/\/ URL/);
    }
  });

  it("generates the embedded database's key file once, mode 0600, and never overwrites it", () => {
    const dataDir = join(tempDir(), "data");
    const first = embeddedSecretsKeyring(dataDir);
    expect(first.created).toBe(true);
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    const again = embeddedSecretsKeyring(dataDir);
    expect(again.created).toBe(false);
    expect(again.keyring.currentKeyId).toBe(first.keyring.currentKeyId);
    expect(readFileSync(first.path, "utf8")).toMatch(/^# runner-control-plane server secrets key/);
    chmodSync(first.path, 0o600);
    writeFileSync(first.path, "garbage\n");
    expect(() => embeddedSecretsKeyring(dataDir)).toThrow(/embedded database's key file .*secrets-key: line 1 is not a base64-encoded 32-byte key/);
  });
});
