// Secrets: every token is new, well formed, and its random part uniform over the alphabet.
import { describe, expect, it } from "vitest";
import { generateToken, tokenKindOf } from "../src/domain/tokens.js";

describe("generated tokens", () => {
  it("are distinct, prefixed by kind, and carry a checksum that a one-character change breaks", () => {
    const tokens = Array.from({ length: 20_000 }, (_, i) => generateToken(i % 2 ? "exchange" : "runnerAccess"));
    expect(new Set(tokens).size).toBe(tokens.length);
    for (const [i, token] of tokens.entries()) {
      expect(token).toMatch(i % 2 ? /^rcpx_[0-9A-Za-z]{49}$/ : /^rcpr_[0-9A-Za-z]{49}$/);
      expect(tokenKindOf(token)).toBe(i % 2 ? "exchange" : "runnerAccess");
    }
    const token = tokens[0]!;
    const flipped = token.slice(0, 10) + (token[10] === "a" ? "b" : "a") + token.slice(11);
    expect(tokenKindOf(flipped)).toBeUndefined();
  });

  it("draw their 43 random characters uniformly from the 62 of the alphabet", () => {
    const counts = new Map<string, number>();
    const samples = 10_000;
    for (let i = 0; i < samples; i++) {
      for (const char of generateToken("runnerAccess").slice(5, 48)) counts.set(char, (counts.get(char) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    const expected = (samples * 43) / 62;
    const chiSquare = [...counts.values()].reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    // 61 degrees of freedom (mean 61, sd 11): 150 is beyond any chance result; modulo bias gives thousands.
    expect(chiSquare).toBeLessThan(150);
  });
});
