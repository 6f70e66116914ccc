// ReportRunnerMetrics: a runner with managed metrics on pushes a Snappy-compressed Prometheus
// remote-write WriteRequest; it is checked (it decompresses and decodes), labelled with the
// runner's runner_id and organization_id (replacing any it set itself, so a runner cannot
// pose as another), and handed to the forwarder for METRICS_REMOTE_WRITE_URL.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import SnappyJS from "snappyjs";
import { WriteRequestSchema, type Label } from "../../gen/prometheus/remote_pb.js";
import type { RunnerRow } from "../store/runner-store.js";
import { failedPrecondition, invalidArgument } from "./errors.js";

/** Largest uncompressed WriteRequest accepted (a 512 KiB Snappy block can claim far more). */
const MAX_UNCOMPRESSED_BYTES = 32 * 1024 * 1024;

/** Takes a relabelled, Snappy-compressed WriteRequest; false when it cannot (its queue is full). */
export type MetricsSink = (body: Uint8Array) => boolean;

export class RunnerMetrics {
  readonly stats = { batches: 0, series: 0, samples: 0 };

  constructor(private readonly sink: MetricsSink | undefined) {}

  async report(runner: RunnerRow, compressed: Uint8Array): Promise<void> {
    if (!runner.metricsManagedEnabled) {
      throw failedPrecondition(`managed metrics are off for runner ${runner.id}: spec.configuration.metrics.managed_metrics_enabled is false`);
    }
    if (!this.sink) throw failedPrecondition("this server does not forward runner metrics: METRICS_REMOTE_WRITE_URL is not set");
    const request = decode(compressed);
    let samples = 0;
    for (const series of request.timeseries) {
      const labels: Label[] = series.labels.filter((label) => label.name !== "runner_id" && label.name !== "organization_id");
      labels.push({ $typeName: "prometheus.Label", name: "runner_id", value: runner.id }, { $typeName: "prometheus.Label", name: "organization_id", value: runner.organizationId });
      // Remote-write wants label names sorted.
      series.labels = labels.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      samples += series.samples.length;
    }
    const body = SnappyJS.compress(toBinary(WriteRequestSchema, request));
    if (!this.sink(body)) throw new ConnectError("runner metrics are not being forwarded fast enough: retry later", Code.Unavailable);
    this.stats.batches++;
    this.stats.series += request.timeseries.length;
    this.stats.samples += samples;
  }
}

function decode(compressed: Uint8Array) {
  const length = uncompressedLength(compressed);
  if (length === undefined) throw invalidArgument("compressed_metrics", "is not Snappy-compressed (block format)", "metrics.snappy");
  if (length > MAX_UNCOMPRESSED_BYTES) {
    throw invalidArgument("compressed_metrics", `decompresses to ${length} bytes, more than ${MAX_UNCOMPRESSED_BYTES}`, "metrics.too_large");
  }
  let bytes: Uint8Array;
  try {
    bytes = SnappyJS.uncompress(compressed);
  } catch {
    throw invalidArgument("compressed_metrics", "is not Snappy-compressed (block format)", "metrics.snappy");
  }
  try {
    return fromBinary(WriteRequestSchema, bytes);
  } catch (err) {
    throw invalidArgument("compressed_metrics", `is not a Prometheus remote-write WriteRequest: ${(err as Error).message}`, "metrics.write_request");
  }
}

/** A Snappy block starts with its uncompressed length as a varint. */
function uncompressedLength(block: Uint8Array): number | undefined {
  let value = 0;
  for (let i = 0, shift = 0; i < 5 && i < block.length; i++, shift += 7) {
    value += (block[i]! & 0x7f) * 2 ** shift;
    if ((block[i]! & 0x80) === 0) return value;
  }
  return undefined;
}
