import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import {
  NONCE_LENGTH,
  SEAL_OVERHEAD,
  deferredSealer,
  loadSealer,
  sodiumSealer,
  tweetnaclSealer,
  writeNonce,
  type Sealer,
} from '../../src/crypto/seal';

const sodium = sodiumSealer();
const tweet = tweetnaclSealer();
const both: Sealer[] = [sodium, tweet];

function sealWith(s: Sealer, msg: Buffer, nonce: Buffer, key: Buffer): Buffer {
  const out = Buffer.alloc(msg.length + SEAL_OVERHEAD);
  s.seal(out, 0, msg, 0, msg.length, nonce, key);
  return out;
}
function openWith(s: Sealer, box: Buffer, nonce: Buffer, key: Buffer): Buffer | null {
  const out = Buffer.alloc(Math.max(0, box.length - SEAL_OVERHEAD));
  return s.open(out, 0, box, 0, box.length, nonce, key) ? out : null;
}

describe('loadSealer', () => {
  it('picks sodium-native when it loads', () => {
    expect(loadSealer().name).toBe('sodium-native');
  });
  it('falls back to tweetnacl when the native module does not load', () => {
    const s = loadSealer(() => {
      throw new Error('Cannot find module sodium-native');
    });
    expect(s.name).toBe('tweetnacl');
  });
});

describe('deferredSealer', () => {
  it('loads nothing until it seals, opens or is asked its name, then loads once', () => {
    let loads = 0;
    const s = deferredSealer(() => {
      loads++;
      return tweetnaclSealer();
    });
    expect(loads).toBe(0);
    const key = randomBytes(32);
    const nonce = Buffer.alloc(NONCE_LENGTH);
    const box = sealWith(s, Buffer.from('hello'), nonce, key);
    expect(loads).toBe(1);
    expect(openWith(s, box, nonce, key)?.toString()).toBe('hello');
    expect(openWith(sodium, box, nonce, key)?.toString()).toBe('hello');
    expect(s.name).toBe('tweetnacl');
    expect(loads).toBe(1);
  });
  it('names what it loaded when asked first', () => {
    expect(deferredSealer().name).toBe('sodium-native');
  });
});

describe('sodium-native and tweetnacl secretbox', () => {
  it('produce byte-identical boxes and open each other, 0..70000 bytes', () => {
    const sizes = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1400, 1472, 4096, 65535, 65536, 70000];
    for (let i = 0; i < 8; i++) sizes.push(Math.floor(Math.random() * 70001));
    for (const size of sizes) {
      const key = randomBytes(32);
      const nonce = randomBytes(NONCE_LENGTH);
      const msg = randomBytes(size);
      const a = sealWith(sodium, msg, nonce, key);
      const b = sealWith(tweet, msg, nonce, key);
      expect(a.equals(b), `size ${size}`).toBe(true);
      expect(openWith(tweet, a, nonce, key)?.equals(msg)).toBe(true);
      expect(openWith(sodium, b, nonce, key)?.equals(msg)).toBe(true);
    }
  });

  it('reproduces the fixed vector', () => {
    const nonce = Buffer.alloc(NONCE_LENGTH);
    writeNonce(nonce, 7);
    for (const s of both) {
      expect(sealWith(s, Buffer.from('weavets'), nonce, Buffer.alloc(32, 1)).toString('hex')).toBe(
        '4a94c025866465bfa8b1e4be326fb51267b1b664e518f3',
      );
    }
  });

  for (const s of both) {
    describe(s.name, () => {
      it('refuses a box with any single bit flipped (MAC or ciphertext)', () => {
        const key = randomBytes(32);
        const nonce = randomBytes(NONCE_LENGTH);
        const box = sealWith(s, randomBytes(100), nonce, key);
        for (let bit = 0; bit < box.length * 8; bit++) {
          const bad = Buffer.from(box);
          bad[bit >> 3] = bad[bit >> 3]! ^ (1 << (bit & 7));
          expect(openWith(s, bad, nonce, key)).toBeNull();
        }
      });

      it('refuses the wrong key or nonce, truncation and extension', () => {
        const key = randomBytes(32);
        const nonce = randomBytes(NONCE_LENGTH);
        const msg = randomBytes(64);
        const box = sealWith(s, msg, nonce, key);
        const otherNonce = Buffer.from(nonce);
        otherNonce[23] = otherNonce[23]! ^ 1;
        const otherKey = Buffer.from(key);
        otherKey[0] = otherKey[0]! ^ 1;
        expect(openWith(s, box, otherNonce, key)).toBeNull();
        expect(openWith(s, box, nonce, otherKey)).toBeNull();
        expect(openWith(s, box.subarray(0, box.length - 1), nonce, key)).toBeNull();
        expect(openWith(s, Buffer.concat([box, Buffer.alloc(1)]), nonce, key)).toBeNull();
        for (let len = 0; len < SEAL_OVERHEAD; len++) expect(openWith(s, box.subarray(0, len), nonce, key)).toBeNull();
        // the empty message's box is just a MAC, and opens
        const empty = sealWith(s, Buffer.alloc(0), nonce, key);
        expect(empty.length).toBe(SEAL_OVERHEAD);
        expect(openWith(s, empty, nonce, key)?.length).toBe(0);
      });

      it('seals into and opens from offsets of bigger buffers, touching nothing else', () => {
        const key = randomBytes(32);
        const nonce = randomBytes(NONCE_LENGTH);
        const src = randomBytes(1500);
        const out = Buffer.alloc(2000, 0xee);
        s.seal(out, 37, src, 100, 1000, nonce, key);
        expect(out.subarray(0, 37).every((b) => b === 0xee)).toBe(true);
        expect(out.subarray(37 + 1016).every((b) => b === 0xee)).toBe(true);
        expect(out.subarray(37, 37 + 1016).equals(sealWith(s, src.subarray(100, 1100), nonce, key))).toBe(true);

        const plain = Buffer.alloc(1200, 0xdd);
        expect(s.open(plain, 50, out, 37, 1016, nonce, key)).toBe(true);
        expect(plain.subarray(50, 1050).equals(src.subarray(100, 1100))).toBe(true);
        expect(plain.subarray(0, 50).every((b) => b === 0xdd)).toBe(true);
        expect(plain.subarray(1050).every((b) => b === 0xdd)).toBe(true);
      });

      it('works in place behind a 16-byte gap', () => {
        const key = randomBytes(32);
        const nonce = randomBytes(NONCE_LENGTH);
        const msg = randomBytes(1400);
        const buf = Buffer.alloc(8 + SEAL_OVERHEAD + msg.length);
        msg.copy(buf, 8 + SEAL_OVERHEAD);
        s.seal(buf, 8, buf, 8 + SEAL_OVERHEAD, msg.length, nonce, key);
        expect(buf.subarray(8).equals(sealWith(s, msg, nonce, key))).toBe(true);
        const sealed = Buffer.from(buf);
        expect(s.open(buf, 8 + SEAL_OVERHEAD, buf, 8, SEAL_OVERHEAD + msg.length, nonce, key)).toBe(true);
        expect(buf.subarray(8 + SEAL_OVERHEAD).equals(msg)).toBe(true);
        // In place, a flipped bit in the MAC or the ciphertext is refused too.
        for (const at of [8, 8 + SEAL_OVERHEAD + 700]) {
          const bad = Buffer.from(sealed);
          bad[at] = bad[at]! ^ 1;
          expect(s.open(bad, 8 + SEAL_OVERHEAD, bad, 8, SEAL_OVERHEAD + msg.length, nonce, key)).toBe(false);
        }
      });

      it('throws on out-of-range offsets and bad key or nonce sizes', () => {
        const key = randomBytes(32);
        const nonce = randomBytes(NONCE_LENGTH);
        const msg = Buffer.alloc(10);
        expect(() => s.seal(Buffer.alloc(25), 0, msg, 0, 10, nonce, key)).toThrow(
          expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
        );
        expect(() => s.seal(Buffer.alloc(26), 0, msg, 1, 10, nonce, key)).toThrow(
          expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
        );
        expect(() => s.seal(Buffer.alloc(26), 0, msg, 0, 10, nonce.subarray(1), key)).toThrow(
          expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
        );
        expect(() => s.seal(Buffer.alloc(26), 0, msg, 0, 10, nonce, key.subarray(1))).toThrow(
          expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
        );
        expect(() => s.open(Buffer.alloc(9), 0, Buffer.alloc(26), 0, 26, nonce, key)).toThrow(
          expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
        );
        expect(() => s.open(Buffer.alloc(10), 0, Buffer.alloc(26), 1, 26, nonce, key)).toThrow(
          expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
        );
      });
    });
  }
});

describe('writeNonce', () => {
  it('writes the counter as u64 big-endian in bytes 0..7 and zeroes the rest', () => {
    const nonce = Buffer.alloc(NONCE_LENGTH, 0xff);
    writeNonce(nonce, 0);
    expect(nonce.equals(Buffer.alloc(NONCE_LENGTH))).toBe(true);
    writeNonce(nonce, 0x0102030405);
    expect(nonce.toString('hex')).toBe('0000000102030405' + '00'.repeat(16));
    writeNonce(nonce, 2 ** 32);
    expect(nonce.readBigUInt64BE(0)).toBe(2n ** 32n);
    writeNonce(nonce, 2 ** 53 - 1);
    expect(nonce.readBigUInt64BE(0)).toBe(2n ** 53n - 1n);
    writeNonce(nonce, 2 ** 53);
    expect(nonce.toString('hex')).toBe('0020000000000000' + '00'.repeat(16));
  });

  it('refuses counters outside [0, 2^53] and wrong nonce sizes', () => {
    const nonce = Buffer.alloc(NONCE_LENGTH);
    for (const bad of [-1, 1.5, 2 ** 53 + 2, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => writeNonce(nonce, bad)).toThrow(expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_INPUT' }));
    }
    expect(() => writeNonce(Buffer.alloc(12), 1)).toThrow(
      expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
    );
  });
});
