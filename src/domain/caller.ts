// Who is calling: a user (API key) or a runner process (runner access token).
export type Caller =
  | { kind: "user"; userId: string; organizationId: string; organizationTier: string }
  | { kind: "runner"; runnerId: string; organizationId: string };
