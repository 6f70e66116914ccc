// gRPC server reflection, v1 and v1alpha, so grpcurl, `buf curl --reflect`, grpcui and
// Postman can list, describe and call the API without local .proto files. It serves the
// file descriptors embedded in the generated code (gen/), so it always matches what the
// server runs. Reflection exposes only the public schema, so it needs no credentials
// (the RPCs it describes still do).
//
// Protocol: one bidirectional stream; each request (list services, file by name, file
// containing a symbol or an extension, extension numbers of a type) gets one response.
// A file is sent with the dependencies this stream has not received yet.
import { toBinary, type DescEnum, type DescExtension, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import {
  ServerReflection as ServerReflectionV1,
  type ServerReflectionRequest as RequestV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  type ServerReflectionRequest as RequestV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The response oneof, as a plain init object both protocol versions accept. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** Every file, symbol and extension reachable from the served services. */
export class SchemaIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, DescFile>();
  private readonly extensions = new Map<string, Map<number, DescExtension>>();
  private readonly encoded = new Map<DescFile, Uint8Array>();
  readonly serviceNames: string[];

  /**
   * @param files files that are imported only for their options (e.g. buf/validate): the
   *   generated code does not link those imports, so they must be given explicitly.
   */
  constructor(services: readonly DescService[], files: readonly DescFile[] = []) {
    this.serviceNames = services.map((service) => service.typeName);
    for (const file of [...services.map((service) => service.file), ...files]) this.addFile(file);
    // Fail at start, not in a client, when an import cannot be served.
    const missing = [...this.files.values()].flatMap((file) => file.proto.dependency.filter((name) => !this.files.has(name)));
    if (missing.length > 0) throw new Error(`reflection: no descriptor for imported file(s) ${[...new Set(missing)].join(", ")}`);
  }

  private addFile(file: DescFile): void {
    const name = `${file.name}.proto`;
    if (this.files.has(name)) return;
    this.files.set(name, file);
    const pkg = file.proto.package;
    for (const service of file.services) {
      this.symbols.set(service.typeName, file);
      for (const method of service.methods) this.symbols.set(`${service.typeName}.${method.name}`, file);
    }
    for (const message of file.messages) this.addMessage(file, message);
    for (const enumeration of file.enums) this.addEnum(file, enumeration, pkg);
    for (const extension of file.extensions) this.addExtension(file, extension);
    for (const dependency of file.dependencies) this.addFile(dependency);
  }

  private addMessage(file: DescFile, message: DescMessage): void {
    this.symbols.set(message.typeName, file);
    for (const field of message.fields) this.symbols.set(`${message.typeName}.${field.name}`, file);
    for (const oneof of message.oneofs) this.symbols.set(`${message.typeName}.${oneof.name}`, file);
    for (const nested of message.nestedMessages) this.addMessage(file, nested);
    for (const nested of message.nestedEnums) this.addEnum(file, nested, message.typeName);
    for (const extension of message.nestedExtensions) this.addExtension(file, extension);
  }

  // Enum values are scoped like their enum's siblings (e.g. gitpod.v1.RUNNER_PHASE_ACTIVE).
  private addEnum(file: DescFile, enumeration: DescEnum, scope: string): void {
    this.symbols.set(enumeration.typeName, file);
    for (const value of enumeration.values) this.symbols.set(scope ? `${scope}.${value.name}` : value.name, file);
  }

  private addExtension(file: DescFile, extension: DescExtension): void {
    this.symbols.set(extension.typeName, file);
    let byNumber = this.extensions.get(extension.extendee.typeName);
    if (!byNumber) this.extensions.set(extension.extendee.typeName, (byNumber = new Map()));
    byNumber.set(extension.number, extension);
  }

  fileByName(name: string): DescFile | undefined {
    return this.files.get(name);
  }

  fileContainingSymbol(symbol: string): DescFile | undefined {
    return this.symbols.get(symbol.startsWith(".") ? symbol.slice(1) : symbol);
  }

  extension(containingType: string, number: number): DescExtension | undefined {
    return this.extensions.get(containingType)?.get(number);
  }

  /** Extension numbers of a known message type, or undefined when the type is unknown. */
  extensionNumbers(typeName: string): number[] | undefined {
    if (!this.symbols.has(typeName)) return undefined;
    return [...(this.extensions.get(typeName)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** The file, then its transitive imports not in `sent`; records what it returns. */
  withDependencies(file: DescFile, sent: Set<DescFile>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const visit = (f: DescFile, requested: boolean) => {
      if (!requested && sent.has(f)) return;
      sent.add(f);
      out.push(this.encode(f));
      for (const name of f.proto.dependency) visit(this.files.get(name)!, false);
    };
    visit(file, true);
    return out;
  }

  private encode(file: DescFile): Uint8Array {
    let bytes = this.encoded.get(file);
    if (!bytes) this.encoded.set(file, (bytes = toBinary(FileDescriptorProtoSchema, file.proto)));
    return bytes;
  }
}

function notFound(message: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}

/** Answers one reflection request (both versions have the same request shape). */
export function answer(index: SchemaIndex, request: RequestV1 | RequestV1alpha, sent: Set<DescFile>): ReflectionAnswer {
  const files = (file: DescFile): ReflectionAnswer => ({
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: index.withDependencies(file, sent) },
  });
  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.serviceNames.map((name) => ({ name })) } };
    case "fileByFilename": {
      const file = index.fileByName(req.value);
      return file ? files(file) : notFound(`file not found: ${req.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.fileContainingSymbol(req.value);
      return file ? files(file) : notFound(`symbol not found: ${req.value}`);
    }
    case "fileContainingExtension": {
      const extension = index.extension(req.value.containingType, req.value.extensionNumber);
      return extension
        ? files(extension.file)
        : notFound(`extension not found: ${req.value.containingType} ${req.value.extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbers(req.value);
      return numbers
        ? { case: "allExtensionNumbersResponse", value: { baseTypeName: req.value, extensionNumber: numbers } }
        : notFound(`type not found: ${req.value}`);
    }
    default:
      return { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "empty reflection request" } };
  }
}

/** Registers grpc.reflection.v1 and v1alpha ServerReflection, describing `services` and themselves. */
export function reflectionRoutes(services: readonly DescService[]): (router: ConnectRouter) => void {
  const index = new SchemaIndex([...services, ServerReflectionV1, ServerReflectionV1alpha]);
  const v1: ServiceImpl<typeof ServerReflectionV1> = {
    async *serverReflectionInfo(requests) {
      const sent = new Set<DescFile>();
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, request, sent) };
      }
    },
  };
  const v1alpha: ServiceImpl<typeof ServerReflectionV1alpha> = {
    async *serverReflectionInfo(requests) {
      const sent = new Set<DescFile>();
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, request, sent) };
      }
    },
  };
  return (router) => {
    router.service(ServerReflectionV1, v1);
    router.service(ServerReflectionV1alpha, v1alpha);
  };
}
