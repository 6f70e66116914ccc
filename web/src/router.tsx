// Two pages, routed with the history API: / (the runners) and /runners/<id> (one runner). The
// server answers index.html for both (src/http/dashboard.ts, PAGE_ROUTES).
import { useEffect, useState, type AnchorHTMLAttributes, type MouseEvent } from "react";

export type Route = { page: "list" } | { page: "runner"; runnerId: string };

function routeOf(pathname: string): Route {
  const match = /^\/runners\/([^/]+)\/?$/.exec(pathname);
  return match ? { page: "runner", runnerId: decodeURIComponent(match[1]!) } : { page: "list" };
}

export function navigate(to: string): void {
  if (to === window.location.pathname) return;
  window.history.pushState(null, "", to);
  window.dispatchEvent(new PopStateEvent("popstate"));
  window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => routeOf(window.location.pathname));
  useEffect(() => {
    const onChange = () => setRoute(routeOf(window.location.pathname));
    window.addEventListener("popstate", onChange);
    return () => window.removeEventListener("popstate", onChange);
  }, []);
  return route;
}

/** An ordinary link (open in a new tab works) that changes the page without a reload. */
export function Link({ to, ...rest }: { to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const onClick = (event: MouseEvent<HTMLAnchorElement>) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={onClick} {...rest} />;
}
