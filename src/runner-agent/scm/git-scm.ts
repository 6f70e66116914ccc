// The SCM calls a runner answers for plain git hosting: ParseContext (the URL forms of
// context-url.ts, resolved against the remote's refs), CheckRepositoryAccess and
// CheckAuthenticationForHost. Everything the runner knows about a remote comes from
// `git ls-remote`: no provider API is called, so titles and authors of pull requests and issues
// stay empty, and a host that cannot be reached yields the context as the URL spells it.
import { create } from "@bufbuild/protobuf";
import {
  CheckAuthenticationForHostResponseSchema,
  CheckRepositoryAccessResponseSchema,
  ParseContextURLPreconditionFailureDetailsSchema,
  ParseContextURLResponseSchema,
  type CheckAuthenticationForHostResponse,
  type CheckRepositoryAccessResponse,
  type ParseContextURLResponse,
} from "../../../gen/gitpod/v1/runner_pb.js";
import { CallFailure, ErrorCode, invalidArgument } from "../call-failure.js";
import { ContextUrlError, isCommitLike, parseContextUrl, redactUrl, type ParsedContext } from "./context-url.js";
import { RemoteFailure, type GitRemote, type RemoteAuth, type RemoteRefs } from "./git-remote.js";
import { PROVIDERS, type HostMap } from "./providers.js";

/** What the control plane holds for the runner (src/runner-agent/agent.ts fetches it). */
export interface CredentialSource {
  /** The principal's token for the host (opened with the runner's key), or undefined when none is stored. */
  tokenFor(principalId: string, host: string): Promise<string | undefined>;
  /** The runner's SCM integration for the host, if it has one. */
  integrationFor(host: string): Promise<{ scmId: string; pat: boolean } | undefined>;
}

/** The user name git sends with a token: what each host expects for a personal access token. */
const TOKEN_USERNAMES: Record<string, string> = { github: "x-access-token", gitlab: "oauth2", bitbucket: "x-token-auth" };

export interface GitScmOptions {
  hosts: HostMap;
  git: GitRemote;
  /** Hosts whose repositories need no authentication (the --repos-url host). */
  openHosts: Set<string>;
  /** Told when a host could not be reached and the context was answered unresolved. */
  onUnresolved?: (host: string, reason: string) => void;
}

const HEADS = "refs/heads/";
const TAGS = "refs/tags/";

export class GitScm {
  private credentials: CredentialSource | undefined;

  constructor(private readonly options: GitScmOptions) {}

  /** Set once the runner has signed up: from then on, users' stored tokens are used. */
  useCredentials(source: CredentialSource): void {
    this.credentials = source;
  }

  /** Basic credentials for the principal on the host, when they stored a token (none asked for where no authentication is needed). */
  private async authFor(principalId: string, parsed: ParsedContext): Promise<RemoteAuth | undefined> {
    if (!principalId || !this.credentials || this.options.openHosts.has(parsed.host)) return undefined;
    const token = await this.credentials.tokenFor(principalId, parsed.host);
    if (token === undefined) return undefined;
    return { username: TOKEN_USERNAMES[PROVIDERS[parsed.provider].scmId] ?? "git", password: token };
  }

  parse(url: string): ParsedContext {
    try {
      return parseContextUrl(url, this.options.hosts);
    } catch (err) {
      if (err instanceof ContextUrlError) throw invalidArgument(err.message);
      throw err;
    }
  }

  async parseContext(contextUrl: string, principalId = ""): Promise<ParseContextURLResponse> {
    const parsed = this.parse(contextUrl);
    const auth = await this.authFor(principalId, parsed);
    const provider = PROVIDERS[parsed.provider];
    const answer = create(ParseContextURLResponseSchema, {
      originalContextUrl: redactUrl(contextUrl),
      scmId: provider.scmId,
      git: { host: parsed.host, owner: parsed.owner, repo: parsed.repo, cloneUrl: parsed.cloneUrl },
    });
    const git = answer.git!;
    const target = parsed.target;
    if (!parsed.cloneUrl) {
      // An Azure DevOps work item: an issue of a project, not of a repository.
      if (target.kind === "issue") answer.issue = { $typeName: "gitpod.v1.ParseContextURLResponse.Issue", id: target.number, title: "" };
      return answer;
    }
    const pullRef = target.kind === "pull-request" ? provider.pullRequestRef?.(target.number) : undefined;
    const remote = await this.refsOf(parsed, pullRef ? [pullRef] : [], auth);
    git.cloneUrl = parsed.cloneUrl; // a plain git URL may have needed ".git"

    switch (target.kind) {
      case "repository":
      case "issue":
        git.branch = remote?.defaultBranch ?? "";
        git.commit = remote && git.branch ? (remote.refs.get(HEADS + git.branch) ?? "") : "";
        if (target.kind === "issue") answer.issue = { $typeName: "gitpod.v1.ParseContextURLResponse.Issue", id: target.number, title: "" };
        break;
      case "branch": {
        git.branch = target.name;
        if (remote) git.commit = required(remote, HEADS + target.name, `branch "${target.name}"`, parsed);
        break;
      }
      case "tag":
        git.tag = target.name;
        if (remote) git.commit = required(remote, TAGS + target.name, `tag "${target.name}"`, parsed);
        break;
      case "commit":
        git.commit = remote ? expandCommit(remote, target.sha) : target.sha;
        break;
      case "ref":
        Object.assign(git, resolveRefPath(remote, target.segments, parsed));
        break;
      case "pull-request": {
        const head = pullRef && remote ? remote.refs.get(pullRef) : undefined;
        if (pullRef && remote && !head) throw new CallFailure(ErrorCode.NOT_FOUND, `pull request ${target.number} not found in ${parsed.webUrl}`);
        // The host publishes the head commit only; a branch at that very commit is its source branch.
        const fromBranch = head && remote ? soleBranchAt(remote, head, pullRef!) : "";
        const url = `${parsed.webUrl}/${pullRequestPath(parsed.provider)}/${target.number}`;
        git.commit = head ?? "";
        git.branch = fromBranch;
        answer.pullRequest = {
          $typeName: "gitpod.v1.PullRequest",
          id: target.number,
          title: "",
          fromBranch,
          toBranch: "",
          url,
          author: "",
          repository: { $typeName: "gitpod.v1.PullRequest.Repository", cloneUrl: parsed.cloneUrl, host: parsed.host, owner: parsed.owner, name: parsed.repo },
          draft: false,
          state: 0,
          headSha: head ?? "",
        };
        answer.pr = { $typeName: "gitpod.v1.ParseContextURLResponse.PullRequest", id: target.number, title: "", fromBranch, toBranch: "" };
        break;
      }
    }
    return answer;
  }

  async checkRepositoryAccess(repositoryUrl: string, principalId = ""): Promise<CheckRepositoryAccessResponse> {
    const parsed = this.parse(repositoryUrl);
    if (!parsed.cloneUrl) throw invalidArgument(`${redactUrl(repositoryUrl)} names no repository`);
    const auth = await this.authFor(principalId, parsed);
    try {
      await this.orWithGitSuffix(parsed, (url) => this.options.git.probe(url, auth));
      return create(CheckRepositoryAccessResponseSchema, { hasAccess: true });
    } catch (err) {
      if (!(err instanceof RemoteFailure)) throw err;
      if (err.kind === "auth-required") {
        throw new CallFailure(ErrorCode.FAILED_PRECONDITION, `authentication required for ${parsed.host}: ${err.message}`);
      }
      const what = { "not-found": "repository not found", "permission-denied": "access denied", unreachable: `could not reach ${parsed.host}`, failed: "git failed" }[err.kind];
      return create(CheckRepositoryAccessResponseSchema, { hasAccess: false, errorMessage: `${what}: ${err.message}` });
    }
  }

  /**
   * What the runner can honestly say: a user is authenticated where no authentication is needed
   * (the hosts of --repos-url) and where they stored a token for the host with the control plane.
   * The SCM and the personal access token method come from the runner's SCM integration for the
   * host (without one, from the provider the host's URLs follow); no OAuth app.
   */
  async checkAuthenticationForHost(hostOrUrl: string, principalId = ""): Promise<CheckAuthenticationForHostResponse> {
    const host = hostOf(hostOrUrl);
    if (!host) throw invalidArgument(`"${hostOrUrl}" is not a host name`);
    if (this.options.openHosts.has(host)) {
      return create(CheckAuthenticationForHostResponseSchema, { authenticated: true, scmId: "", scmName: "Git" });
    }
    const integration = await this.credentials?.integrationFor(host);
    const configured = integration && Object.values(PROVIDERS).find((candidate) => candidate.scmId === integration.scmId);
    const provider = configured ?? PROVIDERS[this.options.hosts.providerOf(host)];
    const pat = integration && !integration.pat ? undefined : provider.pat;
    const origin = `https://${host}`;
    const authenticated = principalId !== "" && this.credentials !== undefined && (await this.credentials.tokenFor(principalId, host)) !== undefined;
    return create(CheckAuthenticationForHostResponseSchema, {
      authenticated,
      scmId: provider.scmId,
      scmName: provider.name,
      patSupported: pat !== undefined,
      supportsPat: pat && { createUrl: pat.createUrl(origin), docsUrl: pat.docsUrl, example: pat.example, requiredScopes: pat.requiredScopes },
    });
  }

  /**
   * A plain git URL without ".git" that is not found is tried once more with it, as the web
   * URL of a repository served from NAME.git; the URL that answered becomes the clone URL.
   */
  private async orWithGitSuffix<T>(parsed: ParsedContext, attempt: (url: string) => Promise<T>): Promise<T> {
    try {
      return await attempt(parsed.cloneUrl);
    } catch (err) {
      if (!(err instanceof RemoteFailure && err.kind === "not-found" && parsed.provider === "git" && !parsed.cloneUrl.endsWith(".git"))) throw err;
      const result = await attempt(`${parsed.cloneUrl}.git`).catch(() => {
        throw err; // the first failure is the one to report
      });
      parsed.cloneUrl = `${parsed.cloneUrl}.git`;
      return result;
    }
  }

  /** The remote's refs, or undefined when it cannot be reached (the context stays unresolved). */
  private async refsOf(parsed: ParsedContext, extraRefs: string[], auth: RemoteAuth | undefined): Promise<RemoteRefs | undefined> {
    try {
      return await this.orWithGitSuffix(parsed, (url) => this.options.git.listRefs(url, extraRefs, auth));
    } catch (err) {
      if (!(err instanceof RemoteFailure)) throw err;
      switch (err.kind) {
        case "unreachable":
          this.options.onUnresolved?.(parsed.host, err.message);
          return undefined;
        case "auth-required": {
          const provider = PROVIDERS[parsed.provider];
          const origin = parsed.webUrl.slice(0, parsed.webUrl.length - `/${parsed.owner}/${parsed.repo}`.length);
          throw CallFailure.withDetail(
            ErrorCode.FAILED_PRECONDITION,
            `authentication required for ${parsed.host}: ${err.message}`,
            ParseContextURLPreconditionFailureDetailsSchema,
            create(ParseContextURLPreconditionFailureDetailsSchema, {
              scmId: provider.scmId,
              authenticationRequiredUrl: provider.pat && parsed.provider !== "azure-devops" ? provider.pat.createUrl(origin) : "",
            }),
          );
        }
        case "permission-denied":
          throw new CallFailure(ErrorCode.PERMISSION_DENIED, `access to ${parsed.cloneUrl} denied: ${err.message}`);
        case "not-found":
          throw new CallFailure(ErrorCode.NOT_FOUND, `repository ${parsed.cloneUrl} not found: ${err.message}`);
        case "failed":
          throw new CallFailure(ErrorCode.UNAVAILABLE, `git ls-remote ${parsed.cloneUrl} failed: ${err.message}`);
      }
    }
  }
}

function required(remote: RemoteRefs, ref: string, what: string, parsed: ParsedContext): string {
  const sha = remote.refs.get(ref);
  if (!sha) throw new CallFailure(ErrorCode.NOT_FOUND, `${what} not found in ${parsed.cloneUrl}`);
  return sha;
}

/** A short commit id → the full id of a branch or tag tip that starts with it (else as given). */
function expandCommit(remote: RemoteRefs, sha: string): string {
  if (sha.length >= 40) return sha;
  const tips = new Set([...remote.refs.values()].filter((tip) => tip.startsWith(sha)));
  return tips.size === 1 ? [...tips][0]! : sha;
}

/**
 * "/tree/feature/x/src/lib": the longest leading run of segments that names a branch (or else a
 * tag) is the ref, the rest a path. Without refs (host unreachable) the first segment is taken.
 */
function resolveRefPath(remote: RemoteRefs | undefined, segments: string[], parsed: ParsedContext): { branch?: string; tag?: string; commit?: string } {
  if (!remote) return isCommitLike(segments[0]!) ? { commit: segments[0]!.toLowerCase() } : { branch: segments[0]! };
  for (let n = segments.length; n > 0; n--) {
    const name = segments.slice(0, n).join("/");
    const branch = remote.refs.get(HEADS + name);
    if (branch) return { branch: name, commit: branch };
    const tag = remote.refs.get(TAGS + name);
    if (tag) return { tag: name, commit: tag };
  }
  if (isCommitLike(segments[0]!)) return { commit: expandCommit(remote, segments[0]!.toLowerCase()) };
  throw new CallFailure(ErrorCode.NOT_FOUND, `no branch, tag or commit "${segments[0]}" in ${parsed.cloneUrl}`);
}

function soleBranchAt(remote: RemoteRefs, sha: string, except: string): string {
  const branches = [...remote.refs].filter(([ref, tip]) => tip === sha && ref !== except && ref.startsWith(HEADS));
  return branches.length === 1 ? branches[0]![0].slice(HEADS.length) : "";
}

function pullRequestPath(provider: ParsedContext["provider"]): string {
  switch (provider) {
    case "gitlab":
      return "-/merge_requests";
    case "bitbucket":
      return "pull-requests";
    case "azure-devops":
      return "pullrequest";
    default:
      return "pull";
  }
}

/** "github.com", "https://github.com/x" or "127.0.0.1:8000" → the host (with port), lower case. */
export function hostOf(hostOrUrl: string): string {
  const text = hostOrUrl.trim();
  if (text === "") return "";
  try {
    return new URL(text.includes("://") ? text : `https://${text}`).host.toLowerCase();
  } catch {
    return "";
  }
}
