/**
 * CPace over X25519: a balanced PAKE. Both sides derive the same generator from the
 * password and a session id, exchange `secret * generator`, and agree on
 * `secret_a * secret_b * generator`. Without the password a peer sees shares that are
 * uniformly distributed whatever the password is, so a transcript gives it nothing to
 * test guesses against offline; it can test one guess per connection, online.
 *
 * The generator is Elligator 2 (RFC 9380 section 6.7.1, the curve25519 parameters:
 * A = 486662, Z = 2) applied to a hash of the password and the session id; see
 * docs/CRYPTO.md for how it fits into the handshake.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CryptoError } from './errors';
import { x25519 } from './x25519';

/** 2^255 - 19 */
const P = (1n << 255n) - 19n;
const A = 486662n;
/** The non-square RFC 9380 picks for curve25519. */
const Z = 2n;
const LEGENDRE_EXP = (P - 1n) / 2n;
const INVERSE_EXP = P - 2n;

/** Domain separation for the generator hash; bump with any change to the encoding. */
export const CPACE_DSI = Buffer.from('weavets-cpace-v1', 'ascii');
export const CPACE_KEY_LENGTH = 32;

function mod(x: bigint): bigint {
  const r = x % P;
  return r < 0n ? r + P : r;
}

function powMod(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

/** Euler's criterion; 0 counts as a square, as in RFC 9380's is_square. */
function isSquare(x: bigint): boolean {
  const l = powMod(x, LEGENDRE_EXP);
  return l === 0n || l === 1n;
}

function fromLittleEndian(buf: Buffer): bigint {
  let x = 0n;
  for (let i = buf.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(buf[i]!);
  return x;
}

function toLittleEndian(x: bigint): Buffer {
  const out = Buffer.alloc(32);
  let v = x;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * Elligator 2 onto Curve25519: a 32-byte field element (little-endian; the top bit is
 * ignored and the rest reduced mod p) to the u-coordinate of a curve point, 32 bytes
 * little-endian. Only u is returned: X25519 needs nothing else.
 *
 * Both candidates and the Legendre symbol are always computed, so the work done does
 * not depend on which branch is taken; BigInt arithmetic is still not constant-time at
 * the instruction level (see docs/CRYPTO.md, non-claims).
 */
export function elligator2Curve25519(r: Buffer): Buffer {
  if (r.length !== 32) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_LENGTH', `field element must be 32 bytes, got ${r.length}`);
  }
  const masked = Buffer.from(r);
  masked[31] = masked[31]! & 0x7f;
  const t = mod(fromLittleEndian(masked));

  // x1 = -A / (1 + Z t^2). The denominator is never 0 here (-1/2 is not a square mod p),
  // and inv0 (x^(p-2)) would give x1 = 0 for it anyway, which the next line catches.
  let x1 = mod(-A * powMod(1n + Z * t * t, INVERSE_EXP));
  if (x1 === 0n) x1 = mod(-A);
  const gx1 = mod(x1 * x1 * x1 + A * x1 * x1 + x1);
  const x2 = mod(-x1 - A);
  const x1IsSquare = isSquare(gx1);
  // Select without a branch on the secret-derived bit.
  const pick = BigInt(x1IsSquare);
  const u = pick * x1 + (1n - pick) * x2;
  return toLittleEndian(u);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

/**
 * The CPace generator for a password and a session id:
 *
 *   h = SHA-512("weavets-cpace-v1" || u16be(len(password)) || password
 *                                  || u16be(len(sid)) || sid)
 *   generator = elligator2Curve25519(h[0..32])
 *
 * The DSI has a fixed length, so the encoding is injective. Both lengths must fit in 16
 * bits.
 */
export function cpaceGenerator(password: Buffer, sid: Buffer): Buffer {
  if (password.length > 0xffff || sid.length > 0xffff) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_INPUT', 'password and sid must each be under 64 KiB');
  }
  const h = createHash('sha512')
    .update(CPACE_DSI)
    .update(u16(password.length))
    .update(password)
    .update(u16(sid.length))
    .update(sid)
    .digest();
  return elligator2Curve25519(h.subarray(0, 32));
}

/** Constant-time check for 32 zero bytes. */
function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

function need32(what: string, b: Uint8Array): void {
  if (b.length !== 32) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_LENGTH', `${what} must be 32 bytes, got ${b.length}`);
  }
}

export interface CpaceKeyPair {
  /** 32 random bytes; X25519 clamps it. Never leaves this host. */
  secret: Buffer;
  /** X25519(secret, generator): what goes in the KEYX message. */
  share: Buffer;
}

/**
 * A fresh CPace key pair for one connection. `random` is for tests; it defaults to the
 * system CSPRNG.
 */
export function cpaceKeyPair(generator: Buffer, random: (n: number) => Buffer = randomBytes): CpaceKeyPair {
  need32('generator', generator);
  const secret = random(32);
  need32('secret', secret);
  const share = x25519(secret, generator);
  // Only possible if the generator is a low-order point, i.e. the hash hit one of a
  // handful of field elements: negligible, but never send a share that fixes the key.
  if (isAllZero(share)) {
    throw new CryptoError('EWEAVETS_CRYPTO_LOW_ORDER', 'generator is a low-order point');
  }
  return { secret, share };
}

/**
 * The CPace key: X25519(secret, peerShare). Refuses a share of the wrong size, and a
 * share that makes the result all zero (a low-order point: the key would be known to
 * anyone).
 */
export function cpaceSharedKey(secret: Buffer, peerShare: Buffer): Buffer {
  need32('secret', secret);
  need32('peer share', peerShare);
  const k = x25519(secret, peerShare);
  if (isAllZero(k)) {
    throw new CryptoError('EWEAVETS_CRYPTO_LOW_ORDER', 'peer share is a low-order point');
  }
  return k;
}
