// The SCM providers whose URL forms the development runner understands, what it says about
// authenticating to them, and where each keeps the refs of its pull/merge requests.

export type ProviderId = "github" | "gitlab" | "bitbucket" | "azure-devops" | "git";

export interface Provider {
  id: ProviderId;
  /** `scm_id` in answers (the ids of the runner configuration schema: "github", …); "" for plain git. */
  scmId: string;
  name: string;
  /** How a person creates a personal access token that git can use: where (on the host at `origin`), docs, scopes. */
  pat?: { createUrl: (origin: string) => string; docsUrl: string; example: string; requiredScopes: string[] };
  /** The ref that holds the head commit of pull/merge request N, where the host publishes one. */
  pullRequestRef?: (number: string) => string;
}

export const PROVIDERS: Record<ProviderId, Provider> = {
  github: {
    id: "github",
    scmId: "github",
    name: "GitHub",
    pat: {
      createUrl: (origin) => `${origin}/settings/tokens/new?scopes=repo`,
      docsUrl: "https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens",
      example: "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
      requiredScopes: ["repo"],
    },
    pullRequestRef: (n) => `refs/pull/${n}/head`,
  },
  gitlab: {
    id: "gitlab",
    scmId: "gitlab",
    name: "GitLab",
    pat: {
      createUrl: (origin) => `${origin}/-/user_settings/personal_access_tokens?scopes=read_repository`,
      docsUrl: "https://docs.gitlab.com/user/profile/personal_access_tokens/",
      example: "glpat-xxxxxxxxxxxxxxxxxxxx",
      requiredScopes: ["read_repository"],
    },
    pullRequestRef: (n) => `refs/merge-requests/${n}/head`,
  },
  bitbucket: {
    id: "bitbucket",
    scmId: "bitbucket",
    name: "Bitbucket",
    pat: {
      createUrl: (origin) => `${origin}/account/settings/app-passwords/new`,
      docsUrl: "https://support.atlassian.com/bitbucket-cloud/docs/app-passwords/",
      example: "ATBBxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
      requiredScopes: ["repository"],
    },
    // Bitbucket Cloud publishes no refs for pull requests.
  },
  "azure-devops": {
    id: "azure-devops",
    scmId: "azuredevops",
    name: "Azure DevOps",
    pat: {
      createUrl: (origin) => `${origin}/_usersSettings/tokens`,
      docsUrl: "https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate",
      example: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
      requiredScopes: ["vso.code"],
    },
    // Azure Repos publishes the merge commit of a pull request, not its head.
    pullRequestRef: (n) => `refs/pull/${n}/merge`,
  },
  git: { id: "git", scmId: "", name: "Git" },
};

/** Which provider's URL forms a host uses: the public hosts, plus what --scm-host adds. */
export class HostMap {
  private readonly hosts = new Map<string, ProviderId>([
    ["github.com", "github"],
    ["www.github.com", "github"],
    ["gitlab.com", "gitlab"],
    ["bitbucket.org", "bitbucket"],
    ["dev.azure.com", "azure-devops"],
  ]);

  /** `extra`: host (with port when not the default) → provider, e.g. git.example.com → gitlab. */
  constructor(extra: Iterable<[string, ProviderId]> = []) {
    for (const [host, provider] of extra) this.hosts.set(host.toLowerCase(), provider);
  }

  providerOf(host: string): ProviderId {
    const name = host.toLowerCase();
    const mapped = this.hosts.get(name);
    if (mapped) return mapped;
    if (name.endsWith(".visualstudio.com")) return "azure-devops";
    return "git";
  }
}

export const PROVIDER_IDS = Object.keys(PROVIDERS).filter((id) => id !== "git") as ProviderId[];
