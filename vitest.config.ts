import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Each file starts its own server (and, embedded, its own PGlite): give them room.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // connect-node raises an error it created itself as an uncaught exception when a server's
    // GOAWAY reaches an idle client connection that is being replaced (connectrpc/connect-es#1768,
    // open; the development runner guards against it the same way). Tests that keep streams open
    // past the server's idle timeout hit it; it says nothing about the code under test.
    onUnhandledError(error) {
      return !error.message?.includes("received GOAWAY without any open streams");
    },
  },
});
