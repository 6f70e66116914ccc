// The development runner's version, reported with UpdateRunnerStatus and GetLatestVersion.
// Kept equal to package.json's version (test/runner-agent-units.test.ts checks it).
export const RUNNER_VERSION = "0.1.0";
