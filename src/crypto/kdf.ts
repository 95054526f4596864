/**
 * The key schedule: HKDF-SHA256 (RFC 5869) from the handshake secret, salted with the
 * transcript hash, one key per purpose and direction. Labels are ASCII and listed in
 * docs/CRYPTO.md; changing one is a protocol version change.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

import { CryptoError } from './errors';

export const KEY_LENGTH = 32;
export const TAG_LENGTH = 32;

export interface SessionKeys {
  /** Seals control messages this side sends. */
  controlSend: Buffer;
  /** Opens control messages the peer sends. */
  controlRecv: Buffer;
  /** First key (epoch 0) of the chain sealing datagrams this side sends. */
  dataSend: Buffer;
  /** First key (epoch 0) of the chain opening datagrams the peer sends. */
  dataRecv: Buffer;
  /** MACs this side's FINISHED. */
  confirmSend: Buffer;
  /** Checks the peer's FINISHED. */
  confirmRecv: Buffer;
}

const I2R = 'initiator->responder';
const R2I = 'responder->initiator';
const REKEY_LABEL = Buffer.from('weavets v1 data rekey', 'ascii');
const NO_SALT = Buffer.alloc(0);

function expand(ikm: Buffer, salt: Buffer, info: string | Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, KEY_LENGTH));
}

function label(purpose: 'control' | 'data' | 'confirm', direction: string): Buffer {
  return Buffer.from(`weavets v1 ${purpose} ${direction}`, 'ascii');
}

/**
 * The six session keys for one side. `ikm` is the CPace key followed by the ephemeral
 * X25519 secret; `transcriptHash` is the salt. The initiator's send keys are the
 * responder's receive keys and the other way round.
 */
export function deriveSessionKeys(ikm: Buffer, transcriptHash: Buffer, initiator: boolean): SessionKeys {
  if (ikm.length < KEY_LENGTH) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_LENGTH', `ikm must be at least ${KEY_LENGTH} bytes`);
  }
  const send = initiator ? I2R : R2I;
  const recv = initiator ? R2I : I2R;
  return {
    controlSend: expand(ikm, transcriptHash, label('control', send)),
    controlRecv: expand(ikm, transcriptHash, label('control', recv)),
    dataSend: expand(ikm, transcriptHash, label('data', send)),
    dataRecv: expand(ikm, transcriptHash, label('data', recv)),
    confirmSend: expand(ikm, transcriptHash, label('confirm', send)),
    confirmRecv: expand(ikm, transcriptHash, label('confirm', recv)),
  };
}

/**
 * One step of a data key chain: key(epoch + 1) = nextDataKey(key(epoch)). One-way, so a
 * key that leaks later does not open traffic sealed under the earlier ones.
 */
export function nextDataKey(key: Buffer): Buffer {
  if (key.length !== KEY_LENGTH) {
    throw new CryptoError('EWEAVETS_CRYPTO_BAD_LENGTH', `key must be ${KEY_LENGTH} bytes`);
  }
  return expand(key, NO_SALT, REKEY_LABEL);
}

/**
 * SHA-256 over the parts, each preceded by its length as u32 big-endian. The
 * length prefixes make the encoding injective: no two different lists hash the same
 * bytes.
 */
export function transcriptHash(parts: readonly Buffer[]): Buffer {
  const h = createHash('sha256');
  const len = Buffer.alloc(4);
  for (const part of parts) {
    len.writeUInt32BE(part.length, 0);
    h.update(len);
    h.update(part);
  }
  return h.digest();
}

/** HMAC-SHA256(key, transcriptHash): the FINISHED proof that a side holds the keys. */
export function confirmTag(key: Buffer, transcriptHash: Buffer): Buffer {
  return createHmac('sha256', key).update(transcriptHash).digest();
}

/** Constant-time tag comparison; a length mismatch is simply unequal. */
export function tagsEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}
