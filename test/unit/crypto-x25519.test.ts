import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { CryptoError } from '../../src/crypto/errors';
import { x25519, x25519KeyPair } from '../../src/crypto/x25519';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

describe('X25519 through node:crypto (src/crypto/x25519.ts)', () => {
  it('gives the RFC 7748 section 5.2 result', () => {
    expect(
      x25519(
        hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'),
        hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'),
      ).toString('hex'),
    ).toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
  });

  it('gives the RFC 7748 section 6.1 key pairs and shared secret', () => {
    const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bob = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    const alicePair = x25519KeyPair(() => Buffer.from(alice));
    const bobPair = x25519KeyPair(() => Buffer.from(bob));
    expect(alicePair.publicKey.toString('hex')).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    expect(bobPair.publicKey.toString('hex')).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(x25519(alice, bobPair.publicKey).toString('hex')).toBe(shared);
    expect(x25519(bob, alicePair.publicKey).toString('hex')).toBe(shared);
  });

  it('agrees with tweetnacl byte for byte, non-canonical points included', () => {
    const points = [Buffer.alloc(32, 0xff), hex('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f')];
    for (let i = 0; i < 200; i++) points.push(randomBytes(32));
    for (const u of points) {
      const scalar = randomBytes(32);
      expect(x25519(scalar, u).toString('hex')).toBe(Buffer.from(nacl.scalarMult(scalar, u)).toString('hex'));
    }
  });

  it('returns zeros for a low-order point, as the RFC computes it, so callers can refuse it', () => {
    const lowOrder = [
      Buffer.alloc(32),
      Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]),
      hex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'),
    ];
    for (const u of lowOrder) expect(x25519(randomBytes(32), u).equals(Buffer.alloc(32))).toBe(true);
  });

  it('refuses keys of the wrong size with a coded error', () => {
    expect(() => x25519(Buffer.alloc(31), Buffer.alloc(32, 9))).toThrow(CryptoError);
    expect(() => x25519(Buffer.alloc(32), Buffer.alloc(33, 9))).toThrow(/point must be 32 bytes/);
  });

  it('makes a fresh key pair each time', () => {
    const a = x25519KeyPair();
    const b = x25519KeyPair();
    expect(a.secretKey.equals(b.secretKey)).toBe(false);
    expect(a.publicKey).toHaveLength(32);
  });
});
