// gRPC server reflection (v1 and v1alpha): real reflection clients discover and call the
// API without local .proto files, and without credentials for the schema itself.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, createFileRegistry, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ServerReflection, type ServerReflectionRequestSchema, type ServerReflectionResponse } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";

const execFileAsync = promisify(execFile);

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer();
  user = await server.newUser();
});
afterAll(() => server?.close());

const bufCurl = (...args: string[]) => execFileAsync("npx", ["buf", "curl", "--reflect", "--protocol", "grpc", "--http2-prior-knowledge", ...args]);

describe("buf curl --reflect (no local schema)", () => {
  it("lists the services and their methods", async () => {
    const services = (await bufCurl("--list-services", server.baseUrl)).stdout.trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining(["gitpod.v1.RunnerService", "gitpod.v1.IdentityService", "gitpod.v1.RunnerInteractionService", "grpc.reflection.v1.ServerReflection"]),
    );
    const methods = (await bufCurl("--list-methods", server.baseUrl)).stdout.trim().split("\n");
    expect(methods).toEqual(
      expect.arrayContaining([
        "gitpod.v1.RunnerService/CreateRunner",
        "gitpod.v1.RunnerService/ListRunners",
        "gitpod.v1.IdentityService/GetAuthenticatedIdentity",
        "gitpod.v1.RunnerInteractionService/MarkRunnerActive",
      ]),
    );
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("calls GetAuthenticatedIdentity with the schema from %s reflection", async (reflectProtocol) => {
    const { stdout } = await bufCurl(
      "--reflect-protocol", reflectProtocol,
      "-H", `Authorization: Bearer ${user.apiKey}`, "-d", "{}",
      `${server.baseUrl}/gitpod.v1.IdentityService/GetAuthenticatedIdentity`,
    );
    expect(JSON.parse(stdout)).toMatchObject({ subject: { id: user.userId, principal: "PRINCIPAL_USER" }, organizationId: user.organizationId });
  });

  it("still requires credentials for the RPCs it describes", async () => {
    const failed = await bufCurl("-d", "{}", `${server.baseUrl}/gitpod.v1.RunnerService/ListRunners`).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.stderr).toContain("unauthenticated");
  });
});

describe("reflection protocol", () => {
  type Request = MessageInitShape<typeof ServerReflectionRequestSchema>;

  /** Sends the requests on one stream and returns the responses in order. */
  async function reflect(requests: Request[]): Promise<ServerReflectionResponse[]> {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: server.baseUrl }));
    const responses: ServerReflectionResponse[] = [];
    async function* send() {
      yield* requests;
    }
    for await (const response of client.serverReflectionInfo(send())) responses.push(response);
    return responses;
  }

  const fileNames = (response: ServerReflectionResponse) =>
    response.messageResponse.case === "fileDescriptorResponse"
      ? response.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name)
      : [];

  it("answers each request with the file and only the dependencies not sent on this stream yet", async () => {
    const [first, second] = await reflect([
      { host: "localhost", messageRequest: { case: "fileContainingSymbol", value: "gitpod.v1.RunnerService.CreateRunner" } },
      { messageRequest: { case: "fileContainingSymbol", value: "gitpod.v1.RunnerPhase" } },
    ]);
    expect(first!.validHost).toBe("localhost");
    expect(first!.originalRequest?.messageRequest).toEqual({ case: "fileContainingSymbol", value: "gitpod.v1.RunnerService.CreateRunner" });
    const sent = fileNames(first!);
    expect(sent[0]).toBe("gitpod/v1/runner.proto");
    expect(sent).toEqual(expect.arrayContaining(["buf/validate/validate.proto", "google/protobuf/timestamp.proto", "google/protobuf/descriptor.proto"]));
    expect(new Set(sent).size).toBe(sent.length);
    expect(fileNames(second!)).toEqual(["gitpod/v1/runner.proto"]); // the requested file again, nothing else
  });

  it("returns descriptors a client can rebuild the whole schema from, validation rules included", async () => {
    const [response] = await reflect([{ messageRequest: { case: "fileByFilename", value: "gitpod/v1/runner_interaction.proto" } }]);
    expect(response!.messageResponse.case).toBe("fileDescriptorResponse");
    const files = (response!.messageResponse.value as { fileDescriptorProto: Uint8Array[] }).fileDescriptorProto;
    const protos = new Map(files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes)).map((proto) => [proto.name, proto]));
    // Imports first, as a FileDescriptorSet wants them; fails if the response lacks one.
    const ordered: FileDescriptorProto[] = [];
    const visit = (name: string) => {
      const proto = protos.get(name);
      if (proto === undefined) throw new Error(`reflection did not send ${name}`);
      if (ordered.includes(proto)) return;
      proto.dependency.forEach(visit);
      ordered.push(proto);
    };
    visit("gitpod/v1/runner_interaction.proto");
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
    const service = registry.getService("gitpod.v1.RunnerInteractionService");
    expect(service?.methods.map((method) => method.name)).toContain("UpdateRunnerStatus");
    expect(registry.getExtension("buf.validate.field")?.number).toBe(1159);
  });

  it("answers extension queries and unknown names with NOT_FOUND", async () => {
    const [numbers, byExtension, unknownSymbol, unknownFile, unknownType] = await reflect([
      { messageRequest: { case: "allExtensionNumbersOfType", value: "google.protobuf.FieldOptions" } },
      { messageRequest: { case: "fileContainingExtension", value: { containingType: "google.protobuf.FieldOptions", extensionNumber: 1159 } } },
      { messageRequest: { case: "fileContainingSymbol", value: "gitpod.v1.NoSuchThing" } },
      { messageRequest: { case: "fileByFilename", value: "secrets.proto" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "no.such.Type" } },
    ]);
    expect(numbers!.messageResponse).toMatchObject({
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: "google.protobuf.FieldOptions", extensionNumber: expect.arrayContaining([1159]) },
    });
    expect(fileNames(byExtension!)[0]).toBe("buf/validate/validate.proto");
    for (const response of [unknownSymbol, unknownFile, unknownType]) {
      expect(response!.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
    }
  });

  it("serves v1alpha with the same answers", async () => {
    const client = createClient(ServerReflectionV1alpha, createGrpcTransport({ baseUrl: server.baseUrl }));
    async function* send() {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    }
    const names: string[] = [];
    for await (const response of client.serverReflectionInfo(send())) {
      if (response.messageResponse.case === "listServicesResponse") names.push(...response.messageResponse.value.service.map((s) => s.name));
    }
    expect(names).toContain("gitpod.v1.RunnerService");
    expect(names).toContain("grpc.reflection.v1alpha.ServerReflection");
  });
});
