// The shell: sign-in, the transport with the API key, the query cache, the two pages.
import { useMemo, useRef, useState, type FormEvent } from "react";
import { QueryCache, QueryClient, QueryClientProvider, useQuery as useTanstackQuery } from "@tanstack/react-query";
import { TransportProvider, useQuery } from "@connectrpc/connect-query";
import { createClient } from "@connectrpc/connect";
import { IdentityService } from "../../gen/gitpod/v1/identity_pb.js";
import { Principal } from "../../gen/gitpod/v1/identity_pb.js";
import { describeError, fetchSettings, isUnauthenticated, storeApiKey, storedApiKey, transportFor, type Settings } from "./api.js";
import { useRoute } from "./router.js";
import { RunnerList } from "./runner-list.js";
import { RunnerDetail } from "./runner-detail.js";
import { LiveUpdates, type LiveState } from "./live.js";

export function App() {
  const [apiKey, setApiKey] = useState(storedApiKey);
  const [signedOutBecause, setSignedOutBecause] = useState<string>();
  const keyRef = useRef(apiKey);
  keyRef.current = apiKey;

  const signOut = (reason?: string) => {
    storeApiKey(undefined);
    setApiKey(undefined);
    setSignedOutBecause(reason);
  };
  const signOutRef = useRef(signOut);
  signOutRef.current = signOut;

  const transport = useMemo(() => transportFor(() => keyRef.current), []);
  const queryClient = useMemo(
    () =>
      new QueryClient({
        queryCache: new QueryCache({
          // A key revoked while the page is open: back to sign-in, with the reason.
          onError: (err) => {
            if (isUnauthenticated(err) && keyRef.current !== undefined) {
              signOutRef.current("The server no longer accepts this API key: it was revoked or has expired. Sign in with a valid key.");
            }
          },
        }),
        defaultOptions: {
          queries: { retry: (count, err) => !isUnauthenticated(err) && count < 2, staleTime: 1_000 },
        },
      }),
    [],
  );

  const signIn = (key: string) => {
    queryClient.clear();
    storeApiKey(key);
    setSignedOutBecause(undefined);
    setApiKey(key);
  };

  return (
    <TransportProvider transport={transport}>
      <QueryClientProvider client={queryClient}>
        {apiKey === undefined ? <SignIn onSignedIn={signIn} notice={signedOutBecause} /> : <SignedIn onSignOut={() => signOut()} />}
      </QueryClientProvider>
    </TransportProvider>
  );
}

function SignIn({ onSignedIn, notice }: { onSignedIn: (key: string) => void; notice: string | undefined }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const candidate = key.trim();
    if (candidate === "") {
      setError("Paste an API key (it starts with rcpk_).");
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      // Checked with the server before it is kept: the key goes in the Authorization header only.
      const client = createClient(IdentityService, transportFor(() => candidate));
      const identity = await client.getAuthenticatedIdentity({});
      if (identity.subject?.principal !== Principal.USER) {
        setError("This is a runner's token, not a user's API key. Sign in with a user API key (rcpk_…).");
        return;
      }
      onSignedIn(candidate);
    } catch (err) {
      setError(
        isUnauthenticated(err)
          ? "This API key was not accepted: it is unknown, revoked or mistyped. Check that you pasted all of it (rcpk_ and 49 more characters)."
          : `Could not sign in: ${describeError(err)}`,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="signin">
      <h1>Runner control plane</h1>
      <form onSubmit={submit} noValidate aria-describedby="signin-help">
        <h2>Sign in</h2>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={key}
          onChange={(e) => setKey(e.target.value)}
          aria-invalid={error !== undefined}
          aria-describedby={error ? "api-key-error" : undefined}
          autoFocus
        />
        {error && (
          <p id="api-key-error" className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p id="signin-help" className="help">
          On the first start the server writes an admin's key to <code>data/initial-api-key</code>; the CLI makes more (
          <code>npm run cli -- api-key create</code>). The key is kept in this tab only (session storage) and sent only in the
          Authorization header.
        </p>
      </form>
    </main>
  );
}

function SignedIn({ onSignOut }: { onSignOut: () => void }) {
  const route = useRoute();
  const settings = useTanstackQuery({ queryKey: ["dashboard-settings"], queryFn: fetchSettings, staleTime: Infinity });
  const identity = useQuery(IdentityService.method.getAuthenticatedIdentity, {});
  const [live, setLive] = useState<LiveState>({ mode: "connecting" });

  if (settings.error) return <p className="page-error">Could not read the server's settings: {describeError(settings.error)}</p>;
  const ready: Settings | undefined = settings.data;
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <a className="brand" href="/">
          Runner control plane
        </a>
        <LiveBadge state={live} />
        <span className="who" title={identity.data?.subject?.id}>
          {identity.data ? `organization ${identity.data.organizationId.slice(0, 8)}` : ""}
        </span>
        <button type="button" className="secondary" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <LiveUpdates onState={setLive} />
      <main id="main" tabIndex={-1}>
        {!ready ? (
          <p role="status">Loading…</p>
        ) : route.page === "runner" ? (
          <RunnerDetail runnerId={route.runnerId} settings={ready} />
        ) : (
          <RunnerList settings={ready} myId={identity.data?.subject?.id} />
        )}
      </main>
    </>
  );
}

function LiveBadge({ state }: { state: LiveState }) {
  const text =
    state.mode === "watching"
      ? "Live"
      : state.mode === "reconnecting"
          ? "Reconnecting…"
          : "Connecting…";
  return (
    <span className={`live live-${state.mode}`} role="status" aria-live="polite" title={state.mode === "reconnecting" ? state.reason : undefined}>
      {text}
    </span>
  );
}
