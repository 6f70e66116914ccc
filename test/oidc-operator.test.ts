// What an operator does with the issuer: `npm start` with PUBLIC_URL, the `keys` and `secrets-key`
// CLI commands (real processes), and replicas on one PostgreSQL database serving the same JWKS and
// picking up a rotation made by the CLI.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { ManualClock } from "../src/domain/clock.js";
import { SecretsKeyring } from "../src/domain/secrets.js";
import { openTestDatabase, startServer, testDatabaseUrl, type TestServer } from "./harness.js";
import { isolatedDatabase, type IsolatedDatabase } from "./isolated-database.js";
import { migrateDataDir, runNode, startServerProcess } from "./processes.js";

// Signing keys are deployment-wide: each test here has a database of its own.
const onPostgres = testDatabaseUrl() !== undefined;
const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rcp-oidc-"));
  tempDirs.push(dir);
  return dir;
}
const databases: IsolatedDatabase[] = [];
afterAll(async () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  await Promise.all(databases.map((database) => database.drop()));
});

// The issuer's variables are cleared unless a test sets them.
const cli = (args: string[], env: Record<string, string>) =>
  runNode(["src/cli.ts", ...args], { SECRETS_KEY: "", SECRETS_KEY_FILE: "", PUBLIC_URL: "", ...env });

const lastLine = (text: string) => text.trim().split("\n").at(-1)!;
const tsv = (text: string) => text.trim().split("\n").map((line) => line.split("\t"));

describe("the keys and secrets-key commands", () => {
  it("rotate, list and revoke signing keys, and reseal them after a secrets key rotation", async () => {
    const oldKey = SecretsKeyring.generateKey();
    const newKey = SecretsKeyring.generateKey();
    const oldId = SecretsKeyring.parse(oldKey, "t").currentKeyId;
    const newId = SecretsKeyring.parse(newKey, "t").currentKeyId;
    const isolated = await isolatedDatabase();
    databases.push(isolated);
    if (isolated.url) await (await isolated.open()).close(); // migrated: the CLI's commands other than migrate do not migrate
    const database: Record<string, string> = isolated.url ? { DATABASE_URL: isolated.url } : { DATA_DIR: await migrateDataDir(tempDir()) };
    const env = { ...database, SECRETS_KEY: oldKey };

    const first = await cli(["keys", "rotate"], env);
    expect(first.code, first.stderr).toBe(0);
    const firstKid = lastLine(first.stdout);
    const second = await cli(["keys", "rotate"], env);
    expect(second.stderr).toContain(`key ${firstKid} keeps verifying its tokens until`);
    const secondKid = lastLine(second.stdout);
    const listed = tsv((await cli(["keys", "list"], env)).stdout).filter(([kid]) => kid === firstKid || kid === secondKid);
    expect(listed.map(([kid, state, , , sealedWith]) => [kid, state, sealedWith])).toEqual([
      [firstKid, "signing", oldId],
      [secondKid, "pending", oldId],
    ]);
    expect((await cli(["keys", "revoke", secondKid], env)).code).toBe(0);

    // The secrets key rotates: the new key first, the old one still there to open.
    const rotated = { ...database, SECRETS_KEY: `${newKey},${oldKey}` };
    const status = tsv((await cli(["secrets-key", "status"], rotated)).stdout);
    expect(status[0]).toEqual([newId, "current", "0"]);
    expect(status[1]![0]).toBe(oldId);
    expect(Number(status[1]![2])).toBeGreaterThanOrEqual(2);
    const reseal = await cli(["secrets-key", "reseal"], rotated);
    expect(reseal.code, reseal.stderr).toBe(0);
    expect(reseal.stderr).toMatch(/signing_keys\.private_key_sealed: \d+ sealed again, 0 already current/);
    // The old key can go: everything opens with the new one alone.
    const status2 = tsv((await cli(["secrets-key", "status"], { ...database, SECRETS_KEY: newKey })).stdout);
    expect(status2).toHaveLength(1);
    expect(status2[0]![1]).toBe("current");
  }, 300_000); // seven CLI processes, each opening the database

  it("refuses to seal without a secrets key on PostgreSQL, and generates keys without a database", async () => {
    const generated = await cli(["secrets-key", "generate"], {});
    expect(generated.code).toBe(0);
    expect(() => SecretsKeyring.parse(generated.stdout, "stdout")).not.toThrow();
    if (!onPostgres) return;
    await (await openTestDatabase()).close(); // migrated: the CLI's commands other than migrate do not migrate
    const refused = await cli(["keys", "rotate"], { DATABASE_URL: testDatabaseUrl()! });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("the server secrets key is not configured: set SECRETS_KEY_FILE");
  });
});

describe("npm start with PUBLIC_URL on the embedded database", () => {
  it("creates the secrets key file (0600) and serves a JWKS whose private key is sealed with it", async () => {
    const dataDir = tempDir();
    const { child, port, output: log } = await startServerProcess({ SECRETS_KEY: "", SECRETS_KEY_FILE: "", DATA_DIR: dataDir, PUBLIC_URL: "https://rcp.example.com" });
    try {
      const output = log();
      const keyFile = join(dataDir, "secrets-key");
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const keyId = SecretsKeyring.parse(readFileSync(keyFile, "utf8"), "file").currentKeyId;
      expect(output).toContain("created the server secrets key");
      expect(output).toContain(`"secretsKey":"${keyId}"`);
      expect(output).toContain("OIDC issuer: signing tokens");
      expect(output).not.toContain(readFileSync(keyFile, "utf8").split("\n")[1]!);
      const discovery = (await (await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`)).json()) as { issuer: string };
      expect(discovery.issuer).toBe("https://rcp.example.com");
      expect(((await (await fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`)).json()) as { keys: unknown[] }).keys).toHaveLength(1);
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("close", resolve));
    }
  }, 90_000); // a real server process on a fresh embedded database
});

describe.runIf(onPostgres)("three replicas on one database", () => {
  let replicas: TestServer[];
  let database: IsolatedDatabase;
  const env = { PUBLIC_URL: "https://rcp.example.com", SECRETS_KEY: SecretsKeyring.generateKey() };

  beforeAll(async () => {
    database = await isolatedDatabase();
    databases.push(database);
    // Started at once: they must agree on a single first key.
    const clock = new ManualClock(Date.now());
    replicas = await Promise.all([0, 1, 2].map(async () => startServer({ env, clock, db: await database.open() })));
  });
  afterAll(async () => {
    await Promise.all((replicas ?? []).map((replica) => replica.close()));
  });

  const jwksOf = async (replica: TestServer) => {
    const response = await fetch(`${replica.baseUrl}/.well-known/jwks.json`);
    return { body: await response.text(), etag: response.headers.get("etag") };
  };

  it("serve the same JWKS, sign with the same key, and follow a CLI rotation within 2 s", async () => {
    const jwks = await Promise.all(replicas.map(jwksOf));
    expect(new Set(jwks.map((j) => j.body)).size).toBe(1);
    expect(new Set(jwks.map((j) => j.etag)).size).toBe(1);
    expect(JSON.parse(jwks[0]!.body).keys).toHaveLength(1);

    const user = await replicas[0]!.newUser();
    const signWith = async (replica: TestServer) => (await replica.identity("grpc", user.apiKey).getIDToken({ audience: ["sts.amazonaws.com"] })).token;
    const tokens = await Promise.all(replicas.map(signWith));
    const kids = new Set(tokens.map((token) => decodeProtectedHeader(token).kid));
    expect(kids.size).toBe(1);
    // A token from one replica verifies with another replica's JWKS.
    const keySet = createLocalJWKSet(JSON.parse(jwks[2]!.body));
    await jwtVerify(tokens[0]!, keySet, { issuer: env.PUBLIC_URL, audience: "sts.amazonaws.com", currentDate: replicas[0]!.clock.now() });

    const rotated = await cli(["keys", "rotate", "--now"], { DATABASE_URL: database.url!, SECRETS_KEY: env.SECRETS_KEY });
    expect(rotated.code, rotated.stderr).toBe(0);
    const newKid = lastLine(rotated.stdout);
    replicas[0]!.clock.set(Date.now()); // the CLI's clock is the system's; the replicas share this one
    const since = performance.now();
    for (const replica of replicas) {
      for (;;) {
        if (decodeProtectedHeader(await signWith(replica)).kid === newKid) break;
        if (performance.now() - since > 2_000) throw new Error("a replica still signs with the old key after 2 s");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    const after = await Promise.all(replicas.map(jwksOf));
    expect(new Set(after.map((j) => j.body)).size).toBe(1);
    expect(JSON.parse(after[0]!.body).keys.map((key: { kid: string }) => key.kid)).toEqual([...kids, newKid]);
  });
});
