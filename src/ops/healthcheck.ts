// Container HEALTHCHECK: exits 0 when GET /healthz on this container's port answers 200,
// else 1. Speaks https when TLS_CERT_FILE is set (without verifying the certificate: it
// only asks whether the process serves). Usage: node dist/src/ops/healthcheck.js
import * as http from "node:http";
import * as https from "node:https";

const port = Number(process.env.PORT || 8080);
const client = process.env.TLS_CERT_FILE ? https : http;
const request = client.get(
  { host: "127.0.0.1", port, path: "/healthz", timeout: 2_000, rejectUnauthorized: false },
  (response) => {
    response.resume();
    process.exit(response.statusCode === 200 ? 0 : 1);
  },
);
request.on("timeout", () => request.destroy(new Error("timed out")));
request.on("error", (err) => {
  console.error(`healthcheck: ${err.message}`);
  process.exit(1);
});
