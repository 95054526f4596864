import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { confirmTag, deriveSessionKeys, nextDataKey, tagsEqual, transcriptHash } from '../../src/crypto/kdf';

/** RFC 5869 written out with HMAC, to check the labels and salt independently of hkdfSync. */
function hkdf(ikm: Buffer, salt: Buffer, info: string | Buffer, length: number): Buffer {
  const prk = createHmac('sha256', salt.length ? salt : Buffer.alloc(32))
    .update(ikm)
    .digest();
  const blocks: Buffer[] = [];
  let t = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    t = createHmac('sha256', prk)
      .update(Buffer.concat([t, Buffer.isBuffer(info) ? info : Buffer.from(info, 'ascii'), Buffer.from([i])]))
      .digest();
    blocks.push(t);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

const th = transcriptHash([Buffer.from('hello-i'), Buffer.from('hello-r'), Buffer.alloc(32, 1), Buffer.alloc(32, 2)]);
const ikm = Buffer.alloc(64, 0x42);

describe('the reference HKDF used by these tests', () => {
  it('matches RFC 5869 test case 1', () => {
    const okm = hkdf(
      Buffer.alloc(22, 0x0b),
      Buffer.from('000102030405060708090a0b0c', 'hex'),
      Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex'),
      42,
    );
    expect(okm.toString('hex')).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
  });
});

describe('transcriptHash', () => {
  it('is SHA-256 over u32be-length-prefixed parts', () => {
    const parts = [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('c')];
    const manual = createHash('sha256')
      .update(Buffer.from('00000002616200000000' + '0000000163', 'hex'))
      .digest();
    expect(transcriptHash(parts).equals(manual)).toBe(true);
  });

  it('keeps different splits apart', () => {
    const a = transcriptHash([Buffer.from('ab'), Buffer.from('c')]);
    expect(a.equals(transcriptHash([Buffer.from('a'), Buffer.from('bc')]))).toBe(false);
    expect(a.equals(transcriptHash([Buffer.from('abc')]))).toBe(false);
    expect(transcriptHash([]).equals(transcriptHash([Buffer.alloc(0)]))).toBe(false);
  });

  it('reproduces the fixed vector', () => {
    expect(th.toString('hex')).toBe('b08c6caac168db9779bfde6c214c25ad0e2585ffdcaddf7ca22240fe6c4e44fb');
  });
});

describe('deriveSessionKeys', () => {
  it('gives the two sides mirrored keys', () => {
    for (let i = 0; i < 20; i++) {
      const secret = randomBytes(64);
      const hash = randomBytes(32);
      const init = deriveSessionKeys(secret, hash, true);
      const resp = deriveSessionKeys(secret, hash, false);
      expect(init.controlSend.equals(resp.controlRecv)).toBe(true);
      expect(init.controlRecv.equals(resp.controlSend)).toBe(true);
      expect(init.dataSend.equals(resp.dataRecv)).toBe(true);
      expect(init.dataRecv.equals(resp.dataSend)).toBe(true);
      expect(init.confirmSend.equals(resp.confirmRecv)).toBe(true);
      expect(init.confirmRecv.equals(resp.confirmSend)).toBe(true);
      const all = Object.values(init).map((k: Buffer) => k.toString('hex'));
      expect(new Set(all).size).toBe(6);
      for (const k of Object.values(init) as Buffer[]) expect(k.length).toBe(32);
    }
  });

  it('binds the transcript and the ikm', () => {
    const base = deriveSessionKeys(ikm, th, true);
    const otherTh = Buffer.from(th);
    otherTh[0] = otherTh[0]! ^ 1;
    expect(deriveSessionKeys(ikm, otherTh, true).dataSend.equals(base.dataSend)).toBe(false);
    const otherIkm = Buffer.from(ikm);
    otherIkm[63] = otherIkm[63]! ^ 1;
    expect(deriveSessionKeys(otherIkm, th, true).dataSend.equals(base.dataSend)).toBe(false);
  });

  it('is HKDF-SHA256(ikm, salt = transcript hash, info = the documented labels)', () => {
    const k = deriveSessionKeys(ikm, th, true);
    expect(k.controlSend.equals(hkdf(ikm, th, 'weavets v1 control initiator->responder', 32))).toBe(true);
    expect(k.controlRecv.equals(hkdf(ikm, th, 'weavets v1 control responder->initiator', 32))).toBe(true);
    expect(k.dataSend.equals(hkdf(ikm, th, 'weavets v1 data initiator->responder', 32))).toBe(true);
    expect(k.dataRecv.equals(hkdf(ikm, th, 'weavets v1 data responder->initiator', 32))).toBe(true);
    expect(k.confirmSend.equals(hkdf(ikm, th, 'weavets v1 confirm initiator->responder', 32))).toBe(true);
    expect(k.confirmRecv.equals(hkdf(ikm, th, 'weavets v1 confirm responder->initiator', 32))).toBe(true);
    expect(nextDataKey(k.dataSend).equals(hkdf(k.dataSend, Buffer.alloc(0), 'weavets v1 data rekey', 32))).toBe(true);
  });

  it('reproduces the fixed vector', () => {
    const k = deriveSessionKeys(ikm, th, true);
    expect(k.controlSend.toString('hex')).toBe('f614c54a90575773dc4160af92377edaa610803c48c3843ab311915311103b58');
    expect(k.controlRecv.toString('hex')).toBe('660d4743d5eda18488c29706d4932ccc6362b65feb6f5ba8ea3a416ef8060719');
    expect(k.dataSend.toString('hex')).toBe('bafd0407f992e91eaa6bd11dee7b0269b29b86087fc297e80ffcf83eeb5d3f48');
    expect(k.dataRecv.toString('hex')).toBe('f951093c43611e3b1e823419c027cb31332c50d393b957a2fefdafb3340fcbb7');
    expect(k.confirmSend.toString('hex')).toBe('adb447afd653de46ca2437a3e24bbd5b744313368f3d3e9099422296a99539d7');
    expect(k.confirmRecv.toString('hex')).toBe('d565033c3ae69fb572a1ae31602e904b18e15e16f99361e1f6244ea9fe508cbd');
    expect(nextDataKey(k.dataSend).toString('hex')).toBe(
      'f15d0130d7d184b22c3498cb96b0d6143c0395cb444a5f88fd224be4b759ba0e',
    );
    expect(confirmTag(k.confirmSend, th).toString('hex')).toBe(
      '25479668dec83f518dc869e7467987fd6def71be4853b3919d363b418259e3d7',
    );
  });

  it('refuses a short ikm', () => {
    expect(() => deriveSessionKeys(Buffer.alloc(16), th, true)).toThrow(
      expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_LENGTH' }),
    );
  });
});

describe('nextDataKey', () => {
  it('walks a chain that does not repeat or return to the start', () => {
    const seen = new Set<string>();
    let key = deriveSessionKeys(ikm, th, true).dataSend;
    for (let i = 0; i < 256; i++) {
      seen.add(key.toString('hex'));
      key = nextDataKey(key);
    }
    expect(seen.size).toBe(256);
  });
});

describe('confirmTag and tagsEqual', () => {
  it('is HMAC-SHA256 and the peer checks it with its confirmRecv', () => {
    const init = deriveSessionKeys(ikm, th, true);
    const resp = deriveSessionKeys(ikm, th, false);
    const tag = confirmTag(init.confirmSend, th);
    expect(tag.equals(createHmac('sha256', init.confirmSend).update(th).digest())).toBe(true);
    expect(tagsEqual(tag, confirmTag(resp.confirmRecv, th))).toBe(true);
    // a side cannot reflect the peer's own tag back
    expect(tagsEqual(tag, confirmTag(resp.confirmSend, th))).toBe(false);
  });

  it('compares by content and treats a length mismatch as unequal', () => {
    const a = randomBytes(32);
    const b = Buffer.from(a);
    expect(tagsEqual(a, b)).toBe(true);
    b[31] = b[31]! ^ 0x80;
    expect(tagsEqual(a, b)).toBe(false);
    expect(tagsEqual(a, a.subarray(0, 31))).toBe(false);
    expect(tagsEqual(Buffer.alloc(0), Buffer.alloc(0))).toBe(true);
  });
});
