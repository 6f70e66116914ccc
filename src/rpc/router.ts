// The Connect layer on the Fastify app: every gitpod.v1 service over Connect (JSON and binary,
// POST and GET), gRPC and gRPC-Web, at the root and under /api, the unary short path in front
// of them, gRPC server reflection and gRPC health checking.
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { Code, ConnectError, createConnectRouter, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { createRegistry, type DescFile } from "@bufbuild/protobuf";
import { withKnownEnumNames, withProtocolGuards, withSafeJsonDecoding } from "./protocol-guards.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { healthRoutes, type HealthOptions } from "./health.js";
import { registerRpcFallbacks } from "./fallbacks.js";
import { reflectionRoutes } from "./reflection.js";
import { unaryFastPath, type FastPathProtocol, type ServiceRoute } from "./unary-fast-path.js";

export interface RpcRoutesOptions {
  /** The services and their implementations; reflection describes the same list. */
  services: ServiceRoute[];
  /** Outermost first, around every call of `services`. */
  interceptors: Interceptor[];
  /** Around reflection calls, which describe only the public schema and need no credentials. */
  reflectionInterceptors: Interceptor[];
  /** grpc.health.v1 (src/rpc/health.ts): the readiness signal and the shutdown signal; known services are `services`. */
  health: Omit<HealthOptions, "services"> & { interceptors: Interceptor[] };
  contextValues: (request: FastifyRequest) => ContextValues;
  readMaxBytes: number;
  maxTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** Serve plain unary calls on the short path (src/rpc/unary-fast-path.ts). */
  unaryFastPath: boolean;
  onFastPathServed?: (protocol: FastPathProtocol) => void;
}

export async function registerRpcRoutes(app: FastifyInstance, options: RpcRoutesOptions): Promise<void> {
  const { services, interceptors, contextValues } = options;
  // Before the Connect plugins, so that they inherit the error handler (src/rpc/fallbacks.ts).
  registerRpcFallbacks(
    app,
    [...services.map(({ service }) => service), Health].flatMap((service) => service.methods.map((method) => `${service.typeName}/${method.name}`)),
  );
  // The registry resolves google.protobuf.Any in JSON (SendResponse's CallError.details): every
  // message of the served files and the files they import.
  const registry = createRegistry(...withImports(services.map(({ service }) => service.file)));
  const jsonOptions = withSafeJsonDecoding({ ignoreUnknownFields: true, registry }); // src/rpc/protocol-guards.ts
  // Method by method: each reads JSON with its own check of enum names (withKnownEnumNames).
  const routes = (router: ConnectRouter) => {
    for (const { service, impl } of services) {
      for (const method of service.methods) {
        const implementation = (impl as Record<string, unknown>)[method.localName] ?? notImplemented(`${service.typeName}.${method.name}`);
        router.rpc(method, implementation as never, { jsonOptions: withKnownEnumNames(jsonOptions, method.input) });
      }
    }
  };
  const connectOptions: Parameters<typeof fastifyConnectPlugin>[1] = {
    routes: withProtocolGuards(routes, options), // src/rpc/protocol-guards.ts
    interceptors,
    contextValues,
    readMaxBytes: options.readMaxBytes,
    maxTimeoutMs: options.maxTimeoutMs,
    shutdownTimeoutMs: options.shutdownTimeoutMs,
    shutdownError: new ConnectError("the server is shutting down", Code.Unavailable),
    jsonOptions,
  };
  // Plain unary Connect and gRPC calls take a shorter path with the same interceptors and
  // handlers (src/rpc/unary-fast-path.ts), which hands anything unusual to Connect's own handlers
  // (a router of its own, built from the same options). After CORS, whose onRequest hook must
  // see them first.
  if (options.unaryFastPath) {
    const connectRouter = createConnectRouter({ ...connectOptions, acceptCompression: [compressionGzip, compressionBrotli] });
    connectOptions.routes!(connectRouter);
    app.addHook(
      "onRequest",
      unaryFastPath({
        services,
        prefixes: ["/api"],
        interceptors,
        jsonOptions,
        readMaxBytes: options.readMaxBytes,
        contextValues,
        connectHandlers: connectRouter.handlers,
        onServed: options.onFastPathServed,
      }),
    );
  }
  // Served at the root and under /api, so SDKs configured with the public base URL's
  // path (https://app.gitpod.io/api) work unchanged against this host.
  await app.register(fastifyConnectPlugin, connectOptions);
  await app.register(fastifyConnectPlugin, { ...connectOptions, prefix: "/api" });
  // gRPC server reflection (v1, v1alpha) at the root, for grpcurl and `buf curl --reflect`.
  // It describes only the public schema, so it has no authentication interceptor.
  await app.register(fastifyConnectPlugin, {
    ...connectOptions,
    routes: withProtocolGuards(reflectionRoutes([...services.map(({ service }) => service), Health]), options),
    interceptors: options.reflectionInterceptors,
  });
  // grpc.health.v1.Health at the root, for Kubernetes gRPC probes and grpc_health_probe: no
  // credentials, and not load-shed (an overloaded server answers NOT_SERVING, as /readyz says 503).
  const { interceptors: healthInterceptors, ...health } = options.health;
  await app.register(fastifyConnectPlugin, {
    ...connectOptions,
    routes: withProtocolGuards(healthRoutes({ ...health, services: services.map(({ service }) => service.typeName) }), options),
    interceptors: healthInterceptors,
  });
}

/** What Connect's router.service() gives a method the implementation leaves out. */
function notImplemented(name: string): () => never {
  return () => {
    throw new ConnectError(`${name} is not implemented`, Code.Unimplemented);
  };
}

function withImports(files: DescFile[]): DescFile[] {
  const all = new Set<DescFile>();
  const add = (file: DescFile) => {
    if (all.has(file)) return;
    all.add(file);
    file.dependencies.forEach(add);
  };
  files.forEach(add);
  return [...all];
}
