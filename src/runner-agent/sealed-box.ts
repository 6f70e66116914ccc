// The runner's X25519 key pair and libsodium sealed boxes (crypto_box_seal: an ephemeral
// X25519 key + XSalsa20-Poly1305): the server seals secrets meant for the runner (metrics
// credentials, …) to the public key the runner sent with Signup; only the runner can open them.
import sodium from "libsodium-wrappers";
import type { KeyPair } from "./state.js";

export async function generateKeyPair(): Promise<KeyPair> {
  await sodium.ready;
  const { publicKey, privateKey } = sodium.crypto_box_keypair();
  return { publicKey, privateKey };
}

/** The plaintext of a sealed box, or undefined for an empty field; throws when it does not open. */
export async function openSealed(box: Uint8Array, keys: KeyPair): Promise<Uint8Array | undefined> {
  if (box.length === 0) return undefined;
  await sodium.ready;
  return sodium.crypto_box_seal_open(box, keys.publicKey, keys.privateKey);
}

/** Whether the public key belongs to the private key (a state directory put together by hand). */
export async function matches(keys: KeyPair): Promise<boolean> {
  await sodium.ready;
  return sodium.memcmp(sodium.crypto_scalarmult_base(keys.privateKey), keys.publicKey);
}
