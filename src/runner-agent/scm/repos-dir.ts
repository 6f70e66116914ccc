// SearchRepositories and ListSCMOrganizations over a directory of git repositories (--repos-dir),
// served as one host at --repos-url (e.g. by `git http-backend` or `git daemon`). A repository
// is a bare repository (HEAD, objects/, refs/) or a working tree with .git; an organization is
// a first-level directory that holds repositories. The directory is read on every call, so
// repositories added or removed show at once.
import { readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { invalidArgument, unimplemented } from "../call-failure.js";

export interface Repository {
  /** Path below the directory without ".git": "acme/widgets". */
  name: string;
  url: string;
}

export interface Page<T> {
  items: T[];
  /** "NEXT_PAGE/TOTAL_PAGES/TOTAL_COUNT" ("2/40/1000"), empty on the last page. */
  nextToken: string;
  lastPage: number;
}

const MAX_DEPTH = 4;
const MAX_ENTRIES = 20_000;
export const DEFAULT_PAGE_SIZE = 25;
export const MAX_PAGE_SIZE = 100;

export class ReposDirectory {
  /** The host the repositories are served as ("127.0.0.1:8000"; "localhost" for file:// URLs). */
  readonly host: string;
  private readonly baseUrl: string;

  constructor(
    readonly dir: string,
    baseUrl: string | undefined,
  ) {
    const base = new URL(baseUrl ?? pathToFileURL(dir).href);
    this.host = base.protocol === "file:" ? "localhost" : base.host.toLowerCase();
    this.baseUrl = base.href.replace(/\/+$/, "");
  }

  /** Keyword: every whitespace-separated word occurs in the name (any case). Native: a glob (* ?) over the name. */
  async search(query: string, native: boolean, scmHost: string, pageSize: number, token: string): Promise<Page<Repository>> {
    this.checkHost(scmHost);
    const match = native ? glob(query) : keywords(query);
    const repositories = (await this.repositories()).filter((repo) => match(repo.name));
    return paginate(repositories, pageSize, token);
  }

  async organizations(query: string, scmHost: string, pageSize: number, token: string): Promise<Page<Repository>> {
    this.checkHost(scmHost, true);
    const needle = query.trim().toLowerCase();
    const names = new Set<string>();
    for (const repo of await this.repositories()) {
      const slash = repo.name.indexOf("/");
      if (slash > 0) names.add(repo.name.slice(0, slash));
    }
    const organizations = [...names]
      .filter((name) => name.toLowerCase().includes(needle))
      .sort(naturalOrder)
      .map((name) => ({ name, url: `${this.baseUrl}/${encodePath(name)}` }));
    return paginate(organizations, pageSize, token);
  }

  private checkHost(scmHost: string, required = false): void {
    const host = scmHost.trim().toLowerCase();
    if ((host === "" && !required) || host === this.host) return;
    throw unimplemented(`this development runner lists only the repositories of ${this.host} (its --repos-dir), not ${host || "(no host given)"}`);
  }

  async repositories(): Promise<Repository[]> {
    const found: Repository[] = [];
    let entries = 0;
    const walk = async (dir: string, depth: number): Promise<void> => {
      let children;
      try {
        children = await readdir(dir, { withFileTypes: true });
      } catch {
        return; // unreadable or gone: not a repository
      }
      entries += children.length;
      if (entries > MAX_ENTRIES) return;
      const names = new Set(children.map((child) => child.name));
      const isBare = names.has("HEAD") && names.has("objects") && names.has("refs");
      if (dir !== this.dir && (isBare || names.has(".git"))) {
        const path = relative(this.dir, dir).split(sep).join("/");
        found.push({ name: path.replace(/\.git$/, ""), url: `${this.baseUrl}/${encodePath(path)}` });
        return;
      }
      if (depth >= MAX_DEPTH) return;
      for (const child of children) {
        if (child.isDirectory() && !child.name.startsWith(".")) await walk(join(dir, child.name), depth + 1);
      }
    };
    await stat(this.dir); // a directory that went away is the operator's mistake: fail loudly
    await walk(this.dir, 0);
    return found.sort((a, b) => naturalOrder(a.name, b.name));
  }
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });
function naturalOrder(a: string, b: string): number {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

function keywords(query: string): (name: string) => boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return (name) => words.every((word) => name.toLowerCase().includes(word));
}

function glob(pattern: string): (name: string) => boolean {
  const source = pattern.trim() === "" ? ".*" : [...pattern.trim()].map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&"))).join("");
  const regexp = new RegExp(`^${source}$`, "i");
  return (name) => regexp.test(name);
}

/** One page of `items`; the token is the one of the previous page ("2/3/61"), empty for the first. */
export function paginate<T>(items: T[], pageSize: number, token: string): Page<T> {
  const size = pageSize === 0 ? DEFAULT_PAGE_SIZE : pageSize;
  if (size < 0 || size > MAX_PAGE_SIZE) throw invalidArgument(`page size must be 0..${MAX_PAGE_SIZE}, not ${pageSize}`);
  const totalPages = Math.max(1, Math.ceil(items.length / size));
  let page = 1;
  if (token !== "") {
    const match = /^(\d+)\/(-?\d+)\/(-?\d+)$/.exec(token);
    page = match ? Number(match[1]) : NaN;
    if (!Number.isSafeInteger(page) || page < 1) throw invalidArgument(`page token "${token}" is not NEXT_PAGE/TOTAL_PAGES/TOTAL_COUNT`);
  }
  const slice = items.slice((page - 1) * size, page * size);
  return { items: slice, nextToken: page < totalPages ? `${page + 1}/${totalPages}/${items.length}` : "", lastPage: totalPages };
}
