/**
 * NaCl secretbox (XSalsa20-Poly1305) over caller-owned buffers. Two interchangeable
 * implementations with byte-identical output: sodium-native (libsodium, no copies) for
 * the data path, tweetnacl (pure JS, allocates) when the native module cannot load.
 *
 * Box layout, both implementations: 16-byte Poly1305 MAC, then the ciphertext, the
 * same length as the message (libsodium's crypto_secretbox_easy layout).
 */
import type naclModule from 'tweetnacl';

import { CryptoError } from './errors';

export const SEAL_OVERHEAD = 16;
export const NONCE_LENGTH = 24;
export const SEAL_KEY_LENGTH = 32;

/** The largest counter writeNonce takes: every integer up to it is exact in a double. */
export const MAX_NONCE_COUNTER = 2 ** 53;

export interface Sealer {
  readonly name: 'sodium-native' | 'tweetnacl';
  /**
   * Writes SEAL_OVERHEAD + msgLen bytes at out[outOff..]: the MAC, then the ciphertext.
   * In place works when outOff + SEAL_OVERHEAD === msgOff in the same buffer (leave a
   * 16-byte gap in front of the message); other overlaps are not supported.
   */
  seal(out: Buffer, outOff: number, msg: Buffer, msgOff: number, msgLen: number, nonce: Buffer, key: Buffer): void;
  /**
   * Checks and decrypts box[boxOff..boxOff+boxLen] into out[outOff..] (boxLen - 16
   * bytes). False if the box is forged, altered or shorter than the MAC; out's
   * contents are then unspecified. In place works when outOff === boxOff + SEAL_OVERHEAD.
   */
  open(out: Buffer, outOff: number, box: Buffer, boxOff: number, boxLen: number, nonce: Buffer, key: Buffer): boolean;
}

/** The part of sodium-native this module uses (it ships no type declarations). */
export interface SodiumSecretbox {
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_secretbox_detached(c: Uint8Array, mac: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_detached(m: Uint8Array, c: Uint8Array, mac: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
}

function requireSodium(): SodiumSecretbox {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, so the tweetnacl path never needs the addon
  return require('sodium-native') as SodiumSecretbox;
}

function badLength(message: string): CryptoError {
  return new CryptoError('EWEAVETS_CRYPTO_BAD_LENGTH', message);
}

function checkKeyNonce(nonce: Buffer, key: Buffer): void {
  if (nonce.length !== NONCE_LENGTH) throw badLength(`nonce must be ${NONCE_LENGTH} bytes`);
  if (key.length !== SEAL_KEY_LENGTH) throw badLength(`key must be ${SEAL_KEY_LENGTH} bytes`);
}

function checkRange(what: string, buf: Buffer, off: number, len: number): void {
  if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
    throw badLength(`${what} range ${off}+${len} outside a ${buf.length}-byte buffer`);
  }
}

function checkSeal(
  out: Buffer,
  outOff: number,
  msg: Buffer,
  msgOff: number,
  msgLen: number,
  nonce: Buffer,
  key: Buffer,
): void {
  checkKeyNonce(nonce, key);
  checkRange('message', msg, msgOff, msgLen);
  checkRange('output', out, outOff, msgLen + SEAL_OVERHEAD);
}

/** Returns false for a box too short to hold a MAC (junk, not a caller bug). */
function checkOpen(
  out: Buffer,
  outOff: number,
  box: Buffer,
  boxOff: number,
  boxLen: number,
  nonce: Buffer,
  key: Buffer,
): boolean {
  checkKeyNonce(nonce, key);
  checkRange('box', box, boxOff, boxLen);
  if (boxLen < SEAL_OVERHEAD) return false;
  checkRange('output', out, outOff, boxLen - SEAL_OVERHEAD);
  return true;
}

/** Copy 16 bytes without a view object (Buffer.copy makes one on Node 20). */
function copyMac(to: Buffer, toOff: number, from: Buffer, fromOff: number): void {
  for (let i = 0; i < SEAL_OVERHEAD; i++) to[toOff + i] = from[fromOff + i]!;
}

/**
 * In place (the data path's case: tag just in front of the message, one buffer) this
 * uses libsodium's detached calls on one view of the message and a MAC scratch buffer:
 * sodium-native takes whole buffers, so every range is a new view object, and this
 * makes one per datagram instead of two.
 */
function makeSodiumSealer(sodium: SodiumSecretbox): Sealer {
  const mac = Buffer.alloc(SEAL_OVERHEAD);
  return {
    name: 'sodium-native',
    seal(out, outOff, msg, msgOff, msgLen, nonce, key) {
      checkSeal(out, outOff, msg, msgOff, msgLen, nonce, key);
      if (out === msg && outOff + SEAL_OVERHEAD === msgOff) {
        const m = msg.subarray(msgOff, msgOff + msgLen);
        sodium.crypto_secretbox_detached(m, mac, m, nonce, key);
        copyMac(out, outOff, mac, 0);
        return;
      }
      sodium.crypto_secretbox_easy(
        out.subarray(outOff, outOff + msgLen + SEAL_OVERHEAD),
        msg.subarray(msgOff, msgOff + msgLen),
        nonce,
        key,
      );
    },
    open(out, outOff, box, boxOff, boxLen, nonce, key) {
      if (!checkOpen(out, outOff, box, boxOff, boxLen, nonce, key)) return false;
      if (out === box && outOff === boxOff + SEAL_OVERHEAD) {
        copyMac(mac, 0, box, boxOff);
        const c = box.subarray(outOff, boxOff + boxLen);
        return sodium.crypto_secretbox_open_detached(c, c, mac, nonce, key);
      }
      return sodium.crypto_secretbox_open_easy(
        out.subarray(outOff, outOff + boxLen - SEAL_OVERHEAD),
        box.subarray(boxOff, boxOff + boxLen),
        nonce,
        key,
      );
    },
  };
}

/** libsodium through sodium-native. Throws EWEAVETS_CRYPTO_UNAVAILABLE if it cannot load. */
export function sodiumSealer(): Sealer {
  let sodium: SodiumSecretbox;
  try {
    sodium = requireSodium();
  } catch (err) {
    throw new CryptoError('EWEAVETS_CRYPTO_UNAVAILABLE', `sodium-native: ${(err as Error).message}`, { cause: err });
  }
  return makeSodiumSealer(sodium);
}

/**
 * tweetnacl's secretbox. nacl.secretbox returns exactly the crypto_secretbox_easy
 * layout (MAC then ciphertext), which is copied into out.
 */
export function tweetnaclSealer(): Sealer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only as the fallback, so a daemon with libsodium keeps no second NaCl resident
  const nacl = require('tweetnacl') as typeof naclModule;
  return {
    name: 'tweetnacl',
    seal(out, outOff, msg, msgOff, msgLen, nonce, key) {
      checkSeal(out, outOff, msg, msgOff, msgLen, nonce, key);
      const box = nacl.secretbox(msg.subarray(msgOff, msgOff + msgLen), nonce, key);
      out.set(box, outOff);
    },
    open(out, outOff, box, boxOff, boxLen, nonce, key) {
      if (!checkOpen(out, outOff, box, boxOff, boxLen, nonce, key)) return false;
      const msg = nacl.secretbox.open(box.subarray(boxOff, boxOff + boxLen), nonce, key);
      if (msg === null) return false;
      out.set(msg, outOff);
      return true;
    },
  };
}

/**
 * sodium-native if it loads, else tweetnacl; `sealer.name` says which (log it once at
 * start). `loadSodium` is for tests of the fallback.
 */
export function loadSealer(loadSodium: () => SodiumSecretbox = requireSodium): Sealer {
  let sodium: SodiumSecretbox;
  try {
    sodium = loadSodium();
  } catch {
    return tweetnaclSealer();
  }
  return makeSodiumSealer(sodium);
}

/**
 * A sealer that loads its implementation (loadSealer) on first use: a daemon without a
 * password never seals, and then keeps neither libsodium nor tweetnacl resident. Reading
 * `name` loads it too, so a daemon that logs which sealer it runs loads it at start.
 */
export function deferredSealer(load: () => Sealer = loadSealer): Sealer {
  let loaded: Sealer | undefined;
  const impl = (): Sealer => (loaded ??= load());
  return {
    get name() {
      return impl().name;
    },
    seal(out, outOff, msg, msgOff, msgLen, nonce, key) {
      impl().seal(out, outOff, msg, msgOff, msgLen, nonce, key);
    },
    open(out, outOff, box, boxOff, boxLen, nonce, key) {
      return impl().open(out, outOff, box, boxOff, boxLen, nonce, key);
    },
  };
}

/**
 * Nonce for a counter: u64 big-endian in bytes 0..7, bytes 8..23 zero. Counters are
 * integers in [0, 2^53].
 */
export function writeNonce(nonce: Buffer, counter: number): void {
  if (nonce.length !== NONCE_LENGTH) throw badLength(`nonce must be ${NONCE_LENGTH} bytes`);
  if (!Number.isInteger(counter) || counter < 0 || counter > MAX_NONCE_COUNTER) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_INPUT', `nonce counter ${counter} outside [0, 2^53]`);
  }
  const hi = Math.floor(counter / 0x1_0000_0000);
  nonce.writeUInt32BE(hi, 0);
  nonce.writeUInt32BE(counter - hi * 0x1_0000_0000, 4);
  nonce.fill(0, 8, NONCE_LENGTH);
}
