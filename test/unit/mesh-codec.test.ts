import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  MAX_MESH_KEY_BYTES,
  MAX_MESH_VALUE_BYTES,
  MeshDecodeError,
  decode,
  encode,
  encodeEntriesChunked,
  encodingLength,
  type MeshEntry,
  type MeshMessage,
} from '../../src/store/mesh-codec';

const A = '02:00:00:00:00:01';
const B = '02:00:00:00:00:02';

// Written by hand from docs/PROTOCOL.md ("STORE"), not produced by the encoder.
const ENTRIES: MeshMessage = {
  kind: 'entries',
  entries: [
    { owner: A, key: 'dns/x', version: 5, state: 'held', value: '{}' },
    { owner: B, key: 'k', version: 0x0102030405, state: 'gone', value: '', over: { owner: A, version: 7 } },
  ],
};
const ENTRIES_HEX = [
  '01', // kind ENTRIES
  '0002', // count
  '020000000001',
  '0000000000000005',
  '00',
  '00', // owner, version, state held, flags
  '0005',
  Buffer.from('dns/x').toString('hex'), // key
  '00000002',
  '7b7d', // value "{}"
  '020000000002',
  '0000000102030405',
  '02',
  '01', // owner, version, state gone, flags: over
  '020000000001',
  '0000000000000007', // over: owner, version
  '0001',
  '6b', // key "k"
  '00000000', // no value
].join('');

const ACK: MeshMessage = { kind: 'ack', ack: { claimant: A, by: B, key: 'ipam/x', version: 9, ok: true } };
const ACK_HEX = [
  '02',
  '020000000001',
  '020000000002',
  '0000000000000009',
  '01',
  '0006',
  Buffer.from('ipam/x').toString('hex'),
].join('');

const FORGET: MeshMessage = { kind: 'forget', forget: { owner: B, upTo: 12, by: A } };
const FORGET_HEX = ['03', '020000000002', '000000000000000c', '020000000001'].join('');

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const peer = (rnd: () => number): string =>
  (1 + Math.floor(rnd() * 0xffff_ffff_fffe)).toString(16).padStart(12, '0').match(/../g)!.join(':');

function randomEntry(rnd: () => number): MeshEntry {
  const state = (['held', 'claim', 'gone'] as const)[Math.floor(rnd() * 3)]!;
  const owner = peer(rnd);
  const e: MeshEntry = {
    owner,
    key: `k/${Math.floor(rnd() * 1e6)}${rnd() < 0.2 ? '/é€' : ''}`,
    version: 1 + Math.floor(rnd() * (Number.MAX_SAFE_INTEGER - 1)),
    state,
    value: state === 'gone' ? '' : JSON.stringify({ v: rnd(), s: 'x'.repeat(Math.floor(rnd() * 50)) }),
  };
  if (rnd() < 0.3) e.over = { owner: owner === A ? B : A, version: 1 + Math.floor(rnd() * 1e12) };
  return e;
}

function randomMessage(rnd: () => number): MeshMessage {
  const r = rnd();
  if (r < 0.5)
    return { kind: 'entries', entries: Array.from({ length: Math.floor(rnd() * 6) }, () => randomEntry(rnd)) };
  if (r < 0.8)
    return {
      kind: 'ack',
      ack: {
        claimant: peer(rnd),
        by: peer(rnd),
        key: `ipam/${Math.floor(rnd() * 1000)}`,
        version: 1 + Math.floor(rnd() * 1e15),
        ok: rnd() < 0.5,
      },
    };
  return { kind: 'forget', forget: { owner: peer(rnd), upTo: 1 + Math.floor(rnd() * 1e15), by: peer(rnd) } };
}

describe('mesh store codec', () => {
  it('encodes the documented vectors and decodes them back', () => {
    for (const [msg, hex] of [
      [ENTRIES, ENTRIES_HEX],
      [ACK, ACK_HEX],
      [FORGET, FORGET_HEX],
    ] as const) {
      expect(encode(msg).toString('hex')).toBe(hex);
      expect(encodingLength(msg)).toBe(hex.length / 2);
      expect(decode(Buffer.from(hex, 'hex'))).toEqual(msg);
    }
  });

  it('matches the vectors in docs/PROTOCOL.md', () => {
    const doc = readFileSync(join(__dirname, '../../docs/PROTOCOL.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### STORE'));
    const hexes = [...section.matchAll(/`((?:[0-9a-f]{2,}\s?)+)`/g)].map((m) => m[1]!.replace(/\s/g, ''));
    expect(hexes).toContain(ENTRIES_HEX);
    expect(hexes).toContain(ACK_HEX);
    expect(hexes).toContain(FORGET_HEX);
  });

  it('round-trips random messages', () => {
    const rnd = prng(7);
    for (let i = 0; i < 1000; i++) {
      const msg = randomMessage(rnd);
      const buf = encode(msg);
      expect(buf.length).toBe(encodingLength(msg));
      expect(decode(buf)).toEqual(msg);
    }
  });

  it('refuses to encode what it could not decode', () => {
    const e = (over: Partial<MeshEntry>): MeshMessage => ({
      kind: 'entries',
      entries: [{ owner: A, key: 'k', version: 1, state: 'held', value: 'v', ...over }],
    });
    expect(() => encode(e({ key: '' }))).toThrow(RangeError);
    expect(() => encode(e({ key: 'a\nb' }))).toThrow(/control character/);
    expect(() => encode(e({ key: 'k'.repeat(MAX_MESH_KEY_BYTES + 1) }))).toThrow(RangeError);
    expect(() => encode(e({ value: 'v'.repeat(MAX_MESH_VALUE_BYTES + 1) }))).toThrow(RangeError);
    expect(() => encode(e({ version: 0 }))).toThrow(RangeError);
    expect(() => encode(e({ version: 1.5 }))).toThrow(RangeError);
    expect(() => encode(e({ owner: 'nobody' }))).toThrow(RangeError);
    expect(() => encode(e({ owner: '00:00:00:00:00:00' }))).toThrow(RangeError);
    expect(() => encode(e({ state: 'gone', value: 'x' }))).toThrow(RangeError);
    expect(() => encode(e({ over: { owner: A, version: 1 } }))).toThrow(/own owner/);
  });

  it('rejects malformed bodies with MeshDecodeError naming the field', () => {
    const bad = (hex: string, why: RegExp): void => {
      expect(() => decode(Buffer.from(hex, 'hex'))).toThrow(why);
    };
    bad('', /kind truncated/);
    bad('09', /unknown kind 9/);
    bad(ENTRIES_HEX + '00', /trailing/);
    bad(ENTRIES_HEX.slice(0, -2), /truncated/);
    bad(ACK_HEX.replace('020000000001', '000000000000'), /zero peer name/);
    bad(ACK_HEX.slice(0, 2 + 24 + 16) + '02' + ACK_HEX.slice(2 + 24 + 16 + 2), /neither 0 nor 1/);
    bad(FORGET_HEX.replace('000000000000000c', '0000000000000000'), /version 0 out of range/);
    bad(FORGET_HEX.replace('000000000000000c', '0020000000000000'), /out of range/);
    // An entry: state 3, unknown flags, a deleted entry with a value, a key with a NUL, bad UTF-8.
    const one = (state: string, flags: string, key: string, value: string): string =>
      '010001' + '020000000001' + '0000000000000001' + state + flags + key + value;
    bad(one('03', '00', '00016b', '00000000'), /unknown entry state 3/);
    bad(one('00', '02', '00016b', '00000000'), /unknown entry flags/);
    bad(one('02', '00', '00016b', '0000000178'), /deleted entry carries a value/);
    bad(one('00', '00', '00026b00', '00000000'), /control character/);
    bad(one('00', '00', '0000', '00000000'), /empty key/);
    bad(one('00', '00', '00016b', '00000001ff'), /not valid UTF-8/);
    bad(one('00', '00', '00016b', 'ffffffff'), /exceeds/);
    bad(one('00', '01', '020000000001000000000000000100016b', '00000000'), /replaces its own owner/);
  });

  it('splits a big sync into messages under the limit', () => {
    const entries: MeshEntry[] = Array.from({ length: 300 }, (_, i) => ({
      owner: A,
      key: `k/${i}`,
      version: i + 1,
      state: 'held',
      value: 'x'.repeat(100),
    }));
    const parts = encodeEntriesChunked(entries, 4096);
    expect(parts.length).toBeGreaterThan(5);
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(4096);
    const back = parts.flatMap((p) => {
      const m = decode(p);
      return m.kind === 'entries' ? m.entries : [];
    });
    expect(back).toEqual(entries);
  });

  it('fuzz: mutated and random bytes decode or throw MeshDecodeError, nothing else', () => {
    const rnd = prng(99);
    const seeds = [ENTRIES_HEX, ACK_HEX, FORGET_HEX].map((h) => Buffer.from(h, 'hex'));
    let rejected = 0;
    for (let i = 0; i < 20000; i++) {
      let buf: Buffer;
      if (i % 4 === 0) {
        buf = Buffer.from(Array.from({ length: Math.floor(rnd() * 80) }, () => Math.floor(rnd() * 256)));
      } else {
        buf = Buffer.from(seeds[i % 3]!);
        const flips = 1 + Math.floor(rnd() * 4);
        for (let f = 0; f < flips; f++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.2) buf = buf.subarray(0, Math.floor(rnd() * buf.length));
      }
      try {
        const msg = decode(buf);
        // Whatever decodes must encode back to the same bytes: no field is taken loosely.
        expect(encode(msg).equals(buf)).toBe(true);
      } catch (err) {
        expect(err).toBeInstanceOf(MeshDecodeError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(1000);
  });
});
