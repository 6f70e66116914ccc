-- Keys that sign the tokens this server issues as an OIDC issuer (GetIDToken, CreateRunnerLogsToken).
-- The public half is published in the JWKS; the private half (PKCS#8 DER) is sealed with the server
-- secrets key, bound to its kid (src/domain/secrets.ts). Which key signs and which are published
-- follows from signs_from and revoked_at alone (src/domain/signing-keys.ts), so every replica agrees.
CREATE TABLE signing_keys (
  kid text PRIMARY KEY, -- RFC 7638 thumbprint of the public key
  algorithm text NOT NULL,
  public_jwk jsonb NOT NULL,
  private_key_sealed bytea NOT NULL,
  created_at timestamptz NOT NULL,
  -- The key signs from this moment until a newer key's signs_from has come.
  signs_from timestamptz NOT NULL,
  -- Set by `cli keys revoke`: out of the JWKS at once, signs nothing.
  revoked_at timestamptz
);
