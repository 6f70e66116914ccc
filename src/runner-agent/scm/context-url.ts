// Context URLs → what they point at, without touching the network. The forms of GitHub, GitLab,
// Bitbucket and Azure DevOps (repository, branch, tag, commit, pull/merge request, issue), and
// any other http(s) URL as a plain git remote. A ref in a path ("/tree/feature/x/src") cannot
// be split into ref and file path without the remote's refs; `resolve.ts` does that.
import { HostMap, type ProviderId } from "./providers.js";

/** A URL the runner cannot take as a context; answered `invalid_argument`. */
export class ContextUrlError extends Error {}

export type Target =
  | { kind: "repository" }
  /** Path segments that begin with a branch, tag or commit, possibly followed by a file path. */
  | { kind: "ref"; segments: string[] }
  | { kind: "branch"; name: string }
  | { kind: "tag"; name: string }
  | { kind: "commit"; sha: string }
  | { kind: "pull-request"; number: string }
  | { kind: "issue"; number: string };

export interface ParsedContext {
  provider: ProviderId;
  /** host[:port], lower case, as in the URL. */
  host: string;
  /** "owner", "group/subgroup" (GitLab), "organization/project" (Azure DevOps), the directory (plain git). */
  owner: string;
  repo: string;
  /** The URL git clones; empty for an Azure DevOps work item, which names no repository. */
  cloneUrl: string;
  /** The repository's web URL, for the URLs of pull requests and issues. */
  webUrl: string;
  target: Target;
}

const COMMIT = /^[0-9a-f]{7,64}$/i;
const NUMBER = /^[1-9][0-9]{0,9}$/;

export function isCommitLike(value: string): boolean {
  return COMMIT.test(value);
}

/** The URL as text with any user name and password removed (for answers and logs). */
export function withoutCredentials(url: URL): string {
  if (!url.username && !url.password) return url.href;
  const copy = new URL(url.href);
  copy.username = "";
  copy.password = "";
  return copy.href;
}

/** Like `withoutCredentials`, for text that may not be a URL at all. */
export function redactUrl(text: string): string {
  try {
    return withoutCredentials(new URL(text));
  } catch {
    return text.replace(/\/\/[^/@\s]*@/g, "//");
  }
}

export function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new ContextUrlError(`"${redactUrl(text)}" is not an absolute URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ContextUrlError(`only http:// and https:// URLs are supported, not ${url.protocol}//`);
  }
  return url;
}

export function parseContextUrl(text: string, hosts: HostMap = new HostMap()): ParsedContext {
  const url = parseUrl(text);
  const host = url.host.toLowerCase();
  const provider = hosts.providerOf(host);
  const segments = url.pathname
    .split("/")
    .filter((segment) => segment !== "")
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw new ContextUrlError(`the path of ${withoutCredentials(url)} is not valid percent-encoding`);
      }
    });
  switch (provider) {
    case "github":
      return parseGitHub(url, host, segments);
    case "gitlab":
      return parseGitLab(url, host, segments);
    case "bitbucket":
      return parseBitbucket(url, host, segments);
    case "azure-devops":
      return parseAzureDevOps(url, host, segments);
    case "git":
      return parsePlainGit(url, host, segments);
  }
}

/** scheme://host of the URL (credentials dropped); the public hosts always use https. */
function origin(url: URL, host: string, publicHosts: string[]): string {
  return publicHosts.includes(host) ? `https://${host}` : `${url.protocol}//${url.host}`;
}

function stripGit(name: string): string {
  return name.endsWith(".git") ? name.slice(0, -4) : name;
}

function needRepository(url: URL, owner: string | undefined, repo: string | undefined, provider: string): asserts repo is string {
  if (!owner || !repo) throw new ContextUrlError(`${withoutCredentials(url)} names no ${provider} repository (expected …/owner/repository)`);
}

function number(url: URL, value: string | undefined, what: string): string {
  if (!value || !NUMBER.test(value)) throw new ContextUrlError(`${withoutCredentials(url)}: "${value ?? ""}" is not a ${what} number`);
  return value;
}

function rest(url: URL, segments: string[], what: string): string[] {
  if (segments.length === 0) throw new ContextUrlError(`${withoutCredentials(url)} names no ${what}`);
  return segments;
}

function commit(url: URL, value: string | undefined): string {
  if (!value || !COMMIT.test(value)) throw new ContextUrlError(`${withoutCredentials(url)}: "${value ?? ""}" is not a commit id`);
  return value.toLowerCase();
}

/** What the path after the repository names: its first segment → the target (undefined: the repository). */
type Routes = Record<string, (url: URL, more: string[]) => Target | undefined>;

const ref = (url: URL, more: string[]): Target => ({ kind: "ref", segments: rest(url, more, "branch, tag or commit") });
const commitAt = (url: URL, more: string[]): Target => ({ kind: "commit", sha: commit(url, more[0]) });
const pullRequest =
  (what: string) =>
  (url: URL, more: string[]): Target => ({ kind: "pull-request", number: number(url, more[0], what) });
const issue = (url: URL, more: string[]): Target | undefined => (more.length > 0 ? { kind: "issue", number: number(url, more[0], "issue") } : undefined);
const tag = (url: URL, more: string[]): Target => ({ kind: "tag", name: rest(url, more, "tag").join("/") });

// github.com/OWNER/REPO[.git] [/tree|blob|commits/REF[/PATH]] [/commit/SHA] [/releases/tag/TAG]
//   [/pull/N[/files|commits…]] [/issues/N]; anything else under the repository is the repository.
const GITHUB: Routes = {
  tree: ref,
  blob: ref,
  commits: ref,
  commit: commitAt,
  releases: (url, more) => (more[0] === "tag" ? tag(url, more.slice(1)) : undefined),
  pull: pullRequest("pull request"),
  issues: issue,
};

// gitlab.com/GROUP[/SUBGROUP…]/REPO[.git] [/-/tree|blob|commits/REF[/PATH]] [/-/commit/SHA]
//   [/-/tags/TAG] [/-/merge_requests/N[/diffs…]] [/-/issues/N]
const GITLAB: Routes = {
  tree: ref,
  blob: ref,
  commits: ref,
  commit: commitAt,
  tags: (url, more) => (more.length > 0 ? tag(url, more) : undefined),
  merge_requests: pullRequest("merge request"),
  issues: issue,
};

// bitbucket.org/WORKSPACE/REPO[.git] [/src/REF[/PATH]] [/branch/BRANCH] [/commits/SHA]
//   [/commits/tag/TAG] [/pull-requests/N[/…]] [/issues/N[/…]]
const BITBUCKET: Routes = {
  src: (url, more) => (more.length > 0 ? ref(url, more) : undefined),
  branch: (url, more) => ({ kind: "branch", name: rest(url, more, "branch").join("/") }),
  commits: (url, more) => (more[0] === "tag" ? tag(url, more.slice(1)) : more.length > 0 ? commitAt(url, more) : undefined),
  "pull-requests": pullRequest("pull request"),
  issues: issue,
};

function route(routes: Routes, url: URL, kind: string | undefined, more: string[]): Target {
  const handler = kind !== undefined && Object.hasOwn(routes, kind) ? routes[kind] : undefined;
  return handler?.(url, more) ?? { kind: "repository" };
}

function parseGitHub(url: URL, host: string, segments: string[]): ParsedContext {
  const [owner, rawRepo, kind, ...more] = segments;
  needRepository(url, owner, rawRepo, "GitHub");
  const repo = stripGit(rawRepo);
  const webUrl = `${origin(url, host, ["github.com", "www.github.com"])}/${owner}/${repo}`;
  const target = route(GITHUB, url, kind, more);
  return { provider: "github", host: host.replace(/^www\./, ""), owner: owner!, repo, cloneUrl: `${webUrl}.git`, webUrl, target };
}

function parseGitLab(url: URL, host: string, segments: string[]): ParsedContext {
  const dash = segments.indexOf("-");
  const project = dash === -1 ? segments : segments.slice(0, dash);
  const [kind, ...more] = dash === -1 ? [] : segments.slice(dash + 1);
  const rawRepo = project[project.length - 1];
  const owner = project.slice(0, -1).join("/");
  needRepository(url, owner, rawRepo, "GitLab");
  const repo = stripGit(rawRepo);
  const webUrl = `${origin(url, host, ["gitlab.com"])}/${owner}/${repo}`;
  return { provider: "gitlab", host, owner, repo, cloneUrl: `${webUrl}.git`, webUrl, target: route(GITLAB, url, kind, more) };
}

function parseBitbucket(url: URL, host: string, segments: string[]): ParsedContext {
  const [owner, rawRepo, kind, ...more] = segments;
  needRepository(url, owner, rawRepo, "Bitbucket");
  const repo = stripGit(rawRepo);
  const webUrl = `${origin(url, host, ["bitbucket.org"])}/${owner}/${repo}`;
  return { provider: "bitbucket", host, owner: owner!, repo, cloneUrl: `${webUrl}.git`, webUrl, target: route(BITBUCKET, url, kind, more) };
}

// dev.azure.com/ORG/PROJECT/_git/REPO and ORG.visualstudio.com/PROJECT/_git/REPO, with
//   ?version=GB<branch>|GT<tag>|GC<commit>, /commit/SHA, /pullrequest/N; /_git/REPO directly
//   under ORG when the repository is named like its project; work items
//   …/PROJECT/_workitems/edit/N (an issue, which belongs to no repository).
function parseAzureDevOps(url: URL, host: string, segments: string[]): ParsedContext {
  // On dev.azure.com the organization is the first segment; on ORG.visualstudio.com the host.
  const [organization, path] = host === "dev.azure.com" ? [segments[0] ?? "", segments.slice(1)] : [host.split(".")[0]!, segments];
  const base = host === "dev.azure.com" ? `${url.protocol}//${url.host}/${encodeURIComponent(organization)}` : `${url.protocol}//${url.host}`;
  const workItems = path.indexOf("_workitems");
  if (workItems !== -1) {
    const project = path[workItems - 1];
    if (!organization || !project || path[workItems + 1] !== "edit") {
      throw new ContextUrlError(`${withoutCredentials(url)} is not an Azure DevOps work item URL (…/organization/project/_workitems/edit/N)`);
    }
    const id = number(url, path[workItems + 2], "work item");
    return { provider: "azure-devops", host, owner: `${organization}/${project}`, repo: "", cloneUrl: "", webUrl: `${base}/${path.slice(0, workItems).map(encodeURIComponent).join("/")}`, target: { kind: "issue", number: id } };
  }
  const git = path.indexOf("_git");
  const rawRepo = git === -1 ? undefined : path[git + 1];
  if (!organization || !rawRepo || git > 2) {
    throw new ContextUrlError(`${withoutCredentials(url)} names no Azure DevOps repository (expected …/organization/project/_git/repository)`);
  }
  const repo = stripGit(rawRepo);
  // ORG/_git/REPO: the project is named like the repository. "DefaultCollection" is a legacy prefix.
  const projectPath = path.slice(0, git);
  const project = projectPath[projectPath.length - 1] ?? repo;
  const webUrl = `${base}/${[...projectPath, "_git", repo].map(encodeURIComponent).join("/")}`;
  const [kind, value] = path.slice(git + 2);
  let target: Target = { kind: "repository" };
  if (kind === "commit") target = { kind: "commit", sha: commit(url, value) };
  else if (kind === "pullrequest") target = { kind: "pull-request", number: number(url, value, "pull request") };
  else {
    const version = url.searchParams.get("version") ?? "";
    if (version.startsWith("GB") && version.length > 2) target = { kind: "branch", name: version.slice(2) };
    else if (version.startsWith("GT") && version.length > 2) target = { kind: "tag", name: version.slice(2) };
    else if (version.startsWith("GC")) target = { kind: "commit", sha: commit(url, version.slice(2)) };
    else if (version !== "") throw new ContextUrlError(`${withoutCredentials(url)}: version "${version}" is not GB<branch>, GT<tag> or GC<commit>`);
  }
  return { provider: "azure-devops", host, owner: `${organization}/${project}`, repo, cloneUrl: webUrl, webUrl, target };
}

// Any other http(s) URL is a git remote as it stands (query, fragment and credentials dropped).
function parsePlainGit(url: URL, host: string, segments: string[]): ParsedContext {
  if (segments.length === 0) throw new ContextUrlError(`${withoutCredentials(url)} names no repository (its path is empty)`);
  const cloneUrl = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
  return {
    provider: "git",
    host,
    owner: segments.slice(0, -1).join("/"),
    repo: stripGit(segments[segments.length - 1]!),
    cloneUrl,
    webUrl: cloneUrl.replace(/\.git$/, ""),
    target: { kind: "repository" },
  };
}
