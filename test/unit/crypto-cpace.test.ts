import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { CPACE_DSI, cpaceGenerator, cpaceKeyPair, cpaceSharedKey, elligator2Curve25519 } from '../../src/crypto/cpace';
import { CryptoError } from '../../src/crypto/errors';

const P = (1n << 255n) - 19n;
const A = 486662n;

function le(buf: Buffer): bigint {
  return BigInt(`0x${Buffer.from(buf).reverse().toString('hex') || '0'}`);
}
function toLe(x: bigint): Buffer {
  return Buffer.from(x.toString(16).padStart(64, '0'), 'hex').reverse();
}
function pow(b: bigint, e: bigint): bigint {
  let r = 1n;
  let x = b % P;
  for (; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * x) % P;
    x = (x * x) % P;
  }
  return r;
}
/** v^2 = u^3 + A u^2 + u has a solution iff the right-hand side is a square (or 0). */
function onCurve(u: bigint): boolean {
  const rhs = (((u * u * u + A * u * u + u) % P) + P) % P;
  return rhs === 0n || pow(rhs, (P - 1n) / 2n) === 1n;
}
const fixed = (byte: number) => (n: number) => Buffer.alloc(n, byte);

describe('elligator2Curve25519', () => {
  it('matches RFC 9380 curve25519_XMD:SHA-512_ELL2_NU_ map_to_curve outputs (u -> Q.x)', () => {
    // Field elements as printed in RFC 9380 appendix J (big-endian integers).
    const vectors: Array<[string, string]> = [
      [
        '608d892b641f0328523802a6603427c26e55e6f27e71a91a478148d45b5093cd',
        '51125222da5e763d97f3c10fcc92ea6860b9ccbbd2eb1285728f566721c1e65b',
      ],
      [
        '46f5b22494bfeaa7f232cc8d054be68561af50230234d7d1d63d1d9abeca8da5',
        '7d56d1e08cb0ccb92baf069c18c49bb5a0dcd927eff8dcf75ca921ef7f3e6eeb',
      ],
      [
        '235fe40c443766ce7e18111c33862d66c3b33267efa50d50f9e8e5d252a40aaa',
        '3fbe66b9c9883d79e8407150e7c2a1c8680bee496c62fabe4619a72b3cabe90f',
      ],
      [
        '001e92a544463bda9bd04ddbe3d6eed248f82de32f522669efc5ddce95f46f5b',
        '227e0bb89de700385d19ec40e857db6e6a3e634b1c32962f370d26f84ff19683',
      ],
      [
        '1a68a1af9f663592291af987203393f707305c7bac9c8d63d6a729bdc553dc19',
        '3bcd651ee54d5f7b6013898aab251ee8ecc0688166fce6e9548d38472f6bd196',
      ],
    ];
    for (const [u, qx] of vectors) {
      const out = elligator2Curve25519(Buffer.from(u, 'hex').reverse());
      expect(Buffer.from(out).reverse().toString('hex')).toBe(qx);
    }
  });

  it('lands on the curve, canonically encoded, for 200 random inputs', () => {
    for (let i = 0; i < 200; i++) {
      const out = elligator2Curve25519(randomBytes(32));
      expect(out.length).toBe(32);
      const u = le(out);
      expect(u < P).toBe(true);
      expect(onCurve(u)).toBe(true);
    }
  });

  it('ignores the top bit and reduces mod p', () => {
    const r = randomBytes(32);
    r[31] = r[31]! & 0x7f;
    const withTop = Buffer.from(r);
    withTop[31] = withTop[31]! | 0x80;
    expect(elligator2Curve25519(withTop).equals(elligator2Curve25519(r))).toBe(true);
    // p + 5 and 5 are the same field element
    expect(elligator2Curve25519(toLe(P + 5n)).equals(elligator2Curve25519(toLe(5n)))).toBe(true);
  });

  it('refuses input that is not 32 bytes', () => {
    expect(() => elligator2Curve25519(Buffer.alloc(31))).toThrow(CryptoError);
  });
});

describe('cpaceGenerator', () => {
  const password = Buffer.from('correct horse battery staple');
  const sid = Buffer.alloc(32, 0x5a);

  it('hashes the documented encoding', () => {
    const h = createHash('sha512')
      .update(Buffer.concat([CPACE_DSI, Buffer.from([0, password.length]), password, Buffer.from([0, 32]), sid]))
      .digest();
    expect(cpaceGenerator(password, sid).equals(elligator2Curve25519(h.subarray(0, 32)))).toBe(true);
    expect(CPACE_DSI.toString()).toBe('weavets-cpace-v1');
  });

  it('depends on the password and on the sid, and the lengths keep them apart', () => {
    const g = cpaceGenerator(password, sid);
    expect(cpaceGenerator(Buffer.from('correct horse battery stapler'), sid).equals(g)).toBe(false);
    expect(cpaceGenerator(password, Buffer.alloc(32, 0x5b)).equals(g)).toBe(false);
    // same concatenation, different split
    expect(
      cpaceGenerator(Buffer.from('ab'), Buffer.from('c')).equals(cpaceGenerator(Buffer.from('a'), Buffer.from('bc'))),
    ).toBe(false);
    expect(onCurve(le(g))).toBe(true);
  });

  it('refuses a password over 64 KiB', () => {
    expect(() => cpaceGenerator(Buffer.alloc(0x10000), sid)).toThrow(
      expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_INPUT' }),
    );
  });
});

describe('CPace exchange', () => {
  it('agrees on the key with the same password and sid', () => {
    for (let i = 0; i < 10; i++) {
      const password = randomBytes(i * 3);
      const sid = randomBytes(32);
      const a = cpaceKeyPair(cpaceGenerator(password, sid));
      const b = cpaceKeyPair(cpaceGenerator(password, sid));
      const ka = cpaceSharedKey(a.secret, b.share);
      const kb = cpaceSharedKey(b.secret, a.share);
      expect(ka.length).toBe(32);
      expect(ka.equals(kb)).toBe(true);
    }
  });

  it('disagrees with a different password or a different sid', () => {
    const sid = randomBytes(32);
    const a = cpaceKeyPair(cpaceGenerator(Buffer.from('hunter2'), sid));
    const b = cpaceKeyPair(cpaceGenerator(Buffer.from('hunter3'), sid));
    expect(cpaceSharedKey(a.secret, b.share).equals(cpaceSharedKey(b.secret, a.share))).toBe(false);
    const c = cpaceKeyPair(cpaceGenerator(Buffer.from('hunter2'), randomBytes(32)));
    expect(cpaceSharedKey(a.secret, c.share).equals(cpaceSharedKey(c.secret, a.share))).toBe(false);
  });

  it('is fresh per key pair', () => {
    const g = cpaceGenerator(Buffer.from('pw'), Buffer.alloc(32));
    expect(cpaceKeyPair(g).share.equals(cpaceKeyPair(g).share)).toBe(false);
  });

  it('refuses low-order and wrongly sized peer shares', () => {
    const { secret } = cpaceKeyPair(cpaceGenerator(Buffer.from('pw'), Buffer.alloc(32)));
    const lowOrder = [
      '0000000000000000000000000000000000000000000000000000000000000000', // 0
      '0100000000000000000000000000000000000000000000000000000000000000', // 1
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1
      'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p (= 0)
      'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p + 1 (= 1)
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
    ];
    for (const hex of lowOrder) {
      expect(() => cpaceSharedKey(secret, Buffer.from(hex, 'hex'))).toThrow(
        expect.objectContaining({ code: 'EWEAVETS_CRYPTO_LOW_ORDER' }),
      );
    }
    expect(() => cpaceSharedKey(secret, Buffer.alloc(31, 9))).toThrow(
      expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
    );
    expect(() => cpaceSharedKey(secret, Buffer.alloc(33, 9))).toThrow(CryptoError);
  });

  it('reproduces the fixed vector', () => {
    const g = cpaceGenerator(Buffer.from('correct horse battery staple'), Buffer.alloc(32, 0x5a));
    expect(g.toString('hex')).toBe('079dc2e197fe3fc43e99cb4734061eaea0caaddb3bf25c9262a50bbe0bcdb04e');
    const a = cpaceKeyPair(g, fixed(0x11));
    const b = cpaceKeyPair(g, fixed(0x22));
    expect(a.secret.equals(Buffer.alloc(32, 0x11))).toBe(true);
    expect(a.share.toString('hex')).toBe('08d3263f7027e880458874dd6bc38a65f6823ea8a5f391a0caccae20fc6e5f54');
    expect(b.share.toString('hex')).toBe('6d418a42aeda487eef0fec0b43a00a4dd8ed9f0e5aedd601e17df5a61f10e57a');
    const k = '17b4081ee2766dea507b7839d20388538c7a30db53afdb564994dafec3492f0c';
    expect(cpaceSharedKey(a.secret, b.share).toString('hex')).toBe(k);
    expect(cpaceSharedKey(b.secret, a.share).toString('hex')).toBe(k);
  });
});
