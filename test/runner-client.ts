// A runner written for the tests: registers through the real API (CreateRunner, ExchangeToken,
// Signup, UpdateRunnerStatus), then holds real WatchRequests streams over any transport and
// answers the calls it receives with SendResponse (over any transport, e.g. another replica).
// Pings are answered by default; other calls by the test's handler, or left unanswered.
import { create, createRegistry, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { file_gitpod_v1_runner, RunnerCapability, RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import {
  RunnerInteractionService,
  SendResponseRequestSchema,
  type WatchRequestsResponse,
} from "../gen/gitpod/v1/runner_interaction_pb.js";
import { bearer, type Protocol, type TestServer } from "./harness.js";

const registry = createRegistry(file_gitpod_v1_runner);

export type Answer = NonNullable<MessageInitShape<typeof SendResponseRequestSchema>["response"]>;
/** Decides the answer to a call; undefined leaves it unanswered. */
export type CallHandler = (call: WatchRequestsResponse) => Answer | undefined | Promise<Answer | undefined>;

export interface TransportOptions {
  protocol: Protocol;
  httpVersion?: "1.1" | "2";
  token?: string;
  /** For TLS: the CA to trust. */
  ca?: string | Buffer;
}

/** A transport of any protocol and HTTP version (gRPC is always HTTP/2). */
export function transportFor(baseUrl: string, options: TransportOptions): Transport {
  const interceptors = [bearer(options.token)];
  const nodeOptions = options.ca ? { ca: options.ca } : {};
  switch (options.protocol) {
    case "connect-json":
      // The registry writes CallError.details (google.protobuf.Any) as JSON.
      return createConnectTransport({ baseUrl, httpVersion: options.httpVersion ?? "1.1", useBinaryFormat: false, interceptors, nodeOptions, jsonOptions: { registry } });
    case "connect-binary":
      return createConnectTransport({ baseUrl, httpVersion: options.httpVersion ?? "2", useBinaryFormat: true, interceptors, nodeOptions });
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors, nodeOptions });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: options.httpVersion ?? "1.1", useBinaryFormat: true, interceptors, nodeOptions });
  }
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5_000, what = "condition"): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface Watch {
  /** Every message received, in order (pings included). */
  readonly received: WatchRequestsResponse[];
  /** Resolves with the first message (the server's opening ping): the stream is established. */
  readonly opened: Promise<void>;
  /** Resolves when the stream ends: undefined when it completed or was closed by us, else its error. */
  readonly ended: Promise<ConnectError | undefined>;
  /** Messages of one oneof member (e.g. "eventRunnerConfigurationChange", "callParseContext"). */
  of(member: string): WatchRequestsResponse[];
  /** Waits for the n-th (1-based) message of a member. */
  waitFor(member: string, n?: number, timeoutMs?: number): Promise<WatchRequestsResponse>;
  close(): Promise<void>;
}

export interface WatchOptions {
  transport: Transport;
  workerId?: string;
  shardIds?: number[];
  /** Answers calls (pings are answered anyway unless `answerPings` is false). */
  onCall?: CallHandler;
  answerPings?: boolean;
  /** Where answers are sent (default: the stream's own transport). */
  answerTransport?: Transport;
}

export class TestRunner {
  private constructor(
    readonly runnerId: string,
    readonly accessToken: string,
    readonly exchangeToken: string,
  ) {}

  /** A new runner of the user's organization, exchanged and signed up, with the given capabilities. */
  static async register(
    server: TestServer,
    apiKey: string,
    options: {
      name?: string;
      capabilities?: RunnerCapability[];
      signup?: boolean;
      provider?: RunnerProvider;
      /** The transport for the registration calls (default: the server's Connect binary). */
      transport?: (token: string | undefined) => Transport;
    } = {},
  ): Promise<TestRunner> {
    const transport = options.transport ?? ((token) => server.transport("connect-binary", token));
    const { runner, exchangeToken } = await createClient(RunnerService, transport(apiKey)).createRunner({
      name: options.name ?? "test runner",
      provider: options.provider ?? RunnerProvider.LINUX_HOST,
    });
    const { accessToken } = await createClient(IdentityService, transport(undefined)).exchangeToken({ exchangeToken });
    const self = new TestRunner(runner!.runnerId, accessToken, exchangeToken);
    if (options.signup !== false) {
      const client = self.client(transport(accessToken));
      await client.signup({ publicKey: new Uint8Array(32).fill(7) });
      if (options.capabilities?.length) await client.updateRunnerStatus({ runnerId: self.runnerId, capabilities: options.capabilities });
    }
    return self;
  }

  client(transport: Transport): Client<typeof RunnerInteractionService> {
    return createClient(RunnerInteractionService, transport);
  }

  /** Opens a WatchRequests stream and handles what arrives on it. */
  watch(options: WatchOptions): Watch {
    const abort = new AbortController();
    const received: WatchRequestsResponse[] = [];
    const waiting: (() => void)[] = [];
    const answers = this.client(options.answerTransport ?? options.transport);
    let opened!: () => void;
    const openedPromise = new Promise<void>((resolve) => (opened = resolve));
    const stream = this.client(options.transport).watchRequests(
      { runnerId: this.runnerId, workerId: options.workerId ?? "", shardIds: options.shardIds ?? [] },
      { signal: abort.signal },
    );
    const answer = async (call: WatchRequestsResponse) => {
      const response: Answer | undefined =
        call.request.case === "callPing" ? (options.answerPings === false ? undefined : { case: "callPing", value: {} }) : await options.onCall?.(call);
      if (response) await answers.sendResponse(create(SendResponseRequestSchema, { runnerId: this.runnerId, requestId: call.requestId, response }));
    };
    const ended = (async (): Promise<ConnectError | undefined> => {
      try {
        for await (const message of stream) {
          received.push(message);
          opened();
          for (const wake of waiting.splice(0)) wake();
          if (message.request.case?.startsWith("call")) void answer(message).catch(() => {}); // a refused answer is the test's business
        }
        return undefined;
      } catch (err) {
        if (abort.signal.aborted) return undefined;
        return ConnectError.from(err);
      } finally {
        opened();
        for (const wake of waiting.splice(0)) wake();
      }
    })();
    let done = false;
    void ended.then(() => (done = true));
    const of = (member: string) => received.filter((m) => m.request.case === member);
    return {
      received,
      opened: openedPromise,
      ended,
      of,
      async waitFor(member, n = 1, timeoutMs = 5_000) {
        const deadline = performance.now() + timeoutMs;
        for (;;) {
          const found = of(member)[n - 1];
          if (found) return found;
          if (done) throw new Error(`stream ended before ${n} × ${member} (got ${received.map((m) => m.request.case).join(", ")})`);
          const left = deadline - performance.now();
          if (left <= 0) throw new Error(`no ${n} × ${member} within ${timeoutMs} ms (got ${received.map((m) => m.request.case).join(", ")})`);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, left);
            waiting.push(() => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
      },
      async close() {
        abort.abort();
        await ended;
      },
    };
  }
}

export { RunnerCapability };
