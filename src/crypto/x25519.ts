/**
 * X25519 (RFC 7748) through node:crypto, which the binary already carries (OpenSSL), so
 * the daemon keeps no second curve implementation resident for its two uses: the
 * connection's ephemeral key pair and CPace's scalar multiplications.
 *
 * node:crypto takes keys as objects, not bytes: the raw 32-byte scalar and u-coordinate
 * are wrapped in the fixed DER prefixes of RFC 8410 (PKCS#8 for the private key, SPKI
 * for the public one). Clamping and masking the u-coordinate's top bit are the RFC's, as
 * in every conforming implementation, so results are byte-identical to tweetnacl's and
 * libsodium's (test/unit/crypto-x25519.test.ts checks the RFC vectors).
 */
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';

import { CryptoError } from './errors';

export const X25519_KEY_LENGTH = 32;

/** PrivateKeyInfo { version 0, AlgorithmIdentifier { id-X25519 }, OCTET STRING { OCTET STRING (32) } }. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
/** SubjectPublicKeyInfo { AlgorithmIdentifier { id-X25519 }, BIT STRING (32 bytes, no unused bits) }. */
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
/** The base point, u = 9. */
const BASE_POINT = Buffer.concat([Buffer.from([9]), Buffer.alloc(31)]);

export interface X25519KeyPair {
  /** 32 random bytes; clamped by the scalar multiplication, never before. */
  secretKey: Buffer;
  publicKey: Buffer;
}

function need32(what: string, b: Buffer): void {
  if (b.length !== X25519_KEY_LENGTH) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_LENGTH', `${what} must be ${X25519_KEY_LENGTH} bytes, got ${b.length}`);
  }
}

function privateKeyOf(scalar: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, scalar]), format: 'der', type: 'pkcs8' });
}

function publicKeyOf(u: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, u]), format: 'der', type: 'spki' });
}

/**
 * X25519(scalar, u). A low-order `u` gives 32 zero bytes, as RFC 7748 computes it
 * (OpenSSL refuses that result with an error instead; callers check for zeros
 * themselves, because an all-zero key must never be used whoever computed it).
 */
export function x25519(scalar: Buffer, u: Buffer): Buffer {
  need32('scalar', scalar);
  need32('point', u);
  const privateKey = privateKeyOf(scalar);
  let publicKey: KeyObject;
  try {
    publicKey = publicKeyOf(u);
  } catch (err) {
    // Every 32-byte string is a u-coordinate, so OpenSSL has no reason to refuse one.
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_INPUT', `X25519 point refused: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    return diffieHellman({ privateKey, publicKey });
  } catch (err) {
    // OpenSSL fails the derivation exactly when the shared secret is all zero.
    if ((err as { code?: unknown }).code === 'ERR_OSSL_FAILED_DURING_DERIVATION')
      return Buffer.alloc(X25519_KEY_LENGTH);
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_INPUT', `X25519 failed: ${(err as Error).message}`, { cause: err });
  }
}

/** A fresh key pair: 32 bytes from the system CSPRNG and X25519(secret, 9). */
export function x25519KeyPair(random: (n: number) => Buffer = randomBytes): X25519KeyPair {
  const secretKey = random(X25519_KEY_LENGTH);
  return { secretKey, publicKey: x25519(secretKey, BASE_POINT) };
}
