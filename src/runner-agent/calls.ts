// One call received on WatchRequests → the member of SendResponseRequest.response that answers
// it: the call's own response, or `error` (a CallError) when the handler fails or the call is
// one this runner does not take. The runner never leaves a call unanswered.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { SearchMode } from "../../gen/gitpod/v1/runner_pb.js";
import { SendResponseRequestSchema, type WatchRequestsResponse } from "../../gen/gitpod/v1/runner_interaction_pb.js";
import { CallFailure, ErrorCode, unimplemented } from "./call-failure.js";
import type { GitScm } from "./scm/git-scm.js";
import { MAX_PAGE_SIZE, type ReposDirectory } from "./scm/repos-dir.js";

export type Answer = NonNullable<MessageInitShape<typeof SendResponseRequestSchema>["response"]>;
type Call = Extract<WatchRequestsResponse["request"], { case: `call${string}` }>;

export interface CallHandlers {
  scm: GitScm;
  /** Undefined without --repos-dir. */
  repos: ReposDirectory | undefined;
}

/** The public RPC each call stands for, for logs. */
export const CALL_NAMES: Record<Call["case"], string> = {
  callPing: "Ping",
  callParseContext: "ParseContextURL",
  callCheckAuthenticationForHost: "CheckAuthenticationForHost",
  callCheckRepositoryAccess: "CheckRepositoryAccess",
  callSearchRepositories: "SearchRepositories",
  callListScmOrganizations: "ListSCMOrganizations",
  callValidateConfig: "ValidateRunnerConfiguration",
  callSendMessageToAgentExecution: "SendMessageToAgentExecution",
  callImprovePromptForAgent: "ImprovePromptForAgent",
};

export function isCall(request: WatchRequestsResponse["request"]): request is Call {
  return request.case !== undefined && request.case.startsWith("call");
}

export async function answerCall(call: Call, handlers: CallHandlers): Promise<Answer> {
  try {
    return await dispatch(call, handlers);
  } catch (err) {
    const failure = err instanceof CallFailure ? err : new CallFailure(ErrorCode.UNSPECIFIED, `the runner failed: ${err instanceof Error ? err.message : String(err)}`);
    return { case: "error", value: { code: failure.code, message: failure.message, details: failure.details } };
  }
}

async function dispatch(call: Call, { scm, repos }: CallHandlers): Promise<Answer> {
  switch (call.case) {
    case "callPing":
      return { case: "callPing", value: {} };
    case "callParseContext":
      return { case: "callParseContext", value: { resp: await scm.parseContext(call.value.contextUrl, call.value.principalId) } };
    case "callCheckRepositoryAccess":
      return { case: "callCheckRepositoryAccess", value: { resp: await scm.checkRepositoryAccess(call.value.repositoryUrl, call.value.principalId) } };
    case "callCheckAuthenticationForHost":
      return { case: "callCheckAuthenticationForHost", value: { resp: await scm.checkAuthenticationForHost(call.value.host, call.value.principalId) } };
    case "callSearchRepositories": {
      const request = call.value;
      if (!repos) throw unimplemented("SearchRepositories needs a directory of repositories: start the runner with --repos-dir");
      // `limit` is deprecated; it counts only when no page size is given.
      const pageSize = request.pagination?.pageSize || Math.min(Math.max(request.limit, 0), MAX_PAGE_SIZE);
      const page = await repos.search(request.searchString, request.searchMode === SearchMode.NATIVE, request.scmHost, pageSize, request.pagination?.token ?? "");
      return {
        case: "callSearchRepositories",
        value: { repositories: page.items, pagination: { nextToken: page.nextToken }, lastPage: page.lastPage },
      };
    }
    case "callListScmOrganizations": {
      const request = call.value;
      if (!repos) throw unimplemented("ListSCMOrganizations needs a directory of repositories: start the runner with --repos-dir");
      const page = await repos.organizations(request.query, request.scmHost, request.pagination?.pageSize ?? 0, request.pagination?.token ?? "");
      return { case: "callListScmOrganizations", value: { organizations: page.items, pagination: { nextToken: page.nextToken } } };
    }
    case "callValidateConfig":
    case "callSendMessageToAgentExecution":
    case "callImprovePromptForAgent":
      throw unimplemented(`${CALL_NAMES[call.case]} is not supported by the development runner (it runs no environments or agents)`);
  }
}

/** A SendResponse request for an answer. */
export function responseTo(runnerId: string, requestId: string, response: Answer) {
  return create(SendResponseRequestSchema, { runnerId, requestId, response });
}
