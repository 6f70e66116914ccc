// Secrets delivered to a runner are sealed to its Signup public key: libsodium's anonymous
// sealed box (crypto_box_seal: X25519 key agreement with an ephemeral key pair, then
// XSalsa20-Poly1305), the scheme the reference infers for the 32-byte public key. Only the
// runner's private key opens it (crypto_box_seal_open); the server cannot read it back.
import sodium from "libsodium-wrappers";

let ready: Promise<void> | undefined;

/** The sealed box of `plaintext` for `publicKey`; empty stays empty (nothing to hide, nothing set). */
export async function sealFor(publicKey: Uint8Array, plaintext: string): Promise<Uint8Array> {
  if (plaintext === "") return new Uint8Array(0);
  await (ready ??= sodium.ready);
  return sodium.crypto_box_seal(new TextEncoder().encode(plaintext), publicKey);
}
