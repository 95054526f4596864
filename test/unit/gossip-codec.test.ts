import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  GossipDecodeError,
  MAX_GOSSIP_EDGES,
  MAX_GOSSIP_PEERS,
  MAX_GOSSIP_VERSION,
  decodeGossip,
  encodeGossip,
  encodingLength,
} from '../../src/router/gossip-codec';
import type { PeerEntry } from '../../src/router/topology';

const P1 = 0x020000000001;
const P2 = 0x020000000002;

const TWO_PEERS: PeerEntry[] = [
  {
    name: P1,
    nickname: 'a',
    uid: 0x0102030405060708n,
    version: 3,
    connections: [{ peer: P2, address: '192.0.2.2:6783', outbound: true, established: true }],
  },
  {
    name: P2,
    nickname: 'bé',
    uid: 0xfedcba9876543210n,
    version: 1,
    connections: [{ peer: P1, address: '192.0.2.1:40000', outbound: false, established: true }],
  },
];

// Written by hand from docs/protocol-gossip.md, not produced by the encoder.
const TWO_PEERS_HEX = [
  '01', // format version
  '0002', // peer count
  // peer 1
  '020000000001', // name
  '0102030405060708', // uid
  '0000000000000003', // version
  '01',
  '61', // nickname "a"
  '0001', // connection count
  '020000000002',
  '03', // peer, flags: outbound | established
  '0e',
  Buffer.from('192.0.2.2:6783').toString('hex'),
  // peer 2
  '020000000002',
  'fedcba9876543210',
  '0000000000000001',
  '03',
  '62c3a9', // nickname "bé" (UTF-8)
  '0001',
  '020000000001',
  '02', // flags: established, inbound
  '0f',
  Buffer.from('192.0.2.1:40000').toString('hex'),
].join('');

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

function randomEntries(rnd: () => number, maxPeers: number): PeerEntry[] {
  const n = Math.floor(rnd() * (maxPeers + 1));
  const out: PeerEntry[] = [];
  const used = new Set<number>();
  for (let i = 0; i < n; i++) {
    let name = 1 + Math.floor(rnd() * 0xffff_ffff_fffe);
    while (used.has(name)) name++;
    used.add(name);
    const edges = Math.floor(rnd() * 5);
    out.push({
      name,
      nickname: 'h'.repeat(Math.floor(rnd() * 20)) + (rnd() < 0.3 ? 'ü€' : ''),
      uid: BigInt(Math.floor(rnd() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(rnd() * 2 ** 32)),
      version: 1 + Math.floor(rnd() * MAX_GOSSIP_VERSION),
      connections: Array.from({ length: edges }, () => ({
        peer: 1 + Math.floor(rnd() * 0xffff_ffff_fffe),
        address: `198.18.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}:${1 + Math.floor(rnd() * 65535)}`,
        outbound: rnd() < 0.5,
        established: rnd() < 0.5,
      })),
    });
  }
  return out;
}

describe('gossip codec', () => {
  it('encodes two peers to the documented bytes', () => {
    const buf = encodeGossip(TWO_PEERS);
    expect(buf.toString('hex')).toBe(TWO_PEERS_HEX);
    expect(encodingLength(TWO_PEERS)).toBe(TWO_PEERS_HEX.length / 2);
    expect(decodeGossip(Buffer.from(TWO_PEERS_HEX, 'hex'))).toEqual(TWO_PEERS);
  });

  it('matches the example in docs/protocol-gossip.md', () => {
    const doc = readFileSync(join(__dirname, '../../docs/protocol-gossip.md'), 'utf8');
    const blocks = doc.split('```').filter((_, i) => i % 2 === 1);
    const example = blocks[blocks.length - 1]!;
    let hex = '';
    for (const line of example.split('\n')) {
      for (const tok of line.trim().split(/\s+/)) {
        if (!/^[0-9a-f]{2}$/.test(tok)) break;
        hex += tok;
      }
    }
    expect(hex).toBe(TWO_PEERS_HEX);
  });

  it('encodes an empty list as three bytes', () => {
    expect(encodeGossip([]).toString('hex')).toBe('010000');
    expect(decodeGossip(Buffer.from('010000', 'hex'))).toEqual([]);
  });

  it('encodes into a given buffer at an offset and decodes from an offset', () => {
    const len = encodingLength(TWO_PEERS);
    const buf = Buffer.alloc(len + 10, 0xee);
    const written = encodeGossip(TWO_PEERS, buf, 4);
    expect(written.length).toBe(len);
    expect(buf.subarray(4, 4 + len).toString('hex')).toBe(TWO_PEERS_HEX);
    expect(buf[3]).toBe(0xee);
    expect(buf[4 + len]).toBe(0xee);
    expect(decodeGossip(buf.subarray(0, 4 + len), 4)).toEqual(TWO_PEERS);
    expect(() => encodeGossip(TWO_PEERS, Buffer.alloc(len - 1))).toThrow(RangeError);
  });

  it('round-trips random entry lists', () => {
    const rnd = prng(1);
    for (let i = 0; i < 500; i++) {
      const entries = randomEntries(rnd, 8);
      const buf = encodeGossip(entries);
      expect(buf.length).toBe(encodingLength(entries));
      expect(decodeGossip(buf)).toEqual(entries);
    }
  });

  it('round-trips at the limits', () => {
    const edges = Array.from({ length: MAX_GOSSIP_EDGES }, (_, i) => ({
      peer: i + 1,
      address: `[2001:db8:ffff:ffff:ffff:ffff:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}]:65535`,
      outbound: true,
      established: false,
    }));
    const big: PeerEntry[] = [
      {
        name: MAX_GOSSIP_EDGES + 1,
        nickname: 'n'.repeat(255),
        uid: (1n << 64n) - 1n,
        version: MAX_GOSSIP_VERSION,
        connections: edges,
      },
    ];
    expect(decodeGossip(encodeGossip(big))).toEqual(big);
    const many: PeerEntry[] = Array.from({ length: MAX_GOSSIP_PEERS }, (_, i) => ({
      name: i + 1,
      nickname: '',
      uid: 0n,
      version: 1,
      connections: [],
    }));
    expect(decodeGossip(encodeGossip(many))).toHaveLength(MAX_GOSSIP_PEERS);
  });

  it('refuses to encode over the limits', () => {
    const one = (over: Partial<PeerEntry>): PeerEntry[] => [{ ...TWO_PEERS[0]!, ...over }];
    expect(() => encodeGossip(one({ nickname: 'é'.repeat(128) }))).toThrow(RangeError);
    expect(() => encodeGossip(one({ version: -1 }))).toThrow(RangeError);
    expect(() => encodeGossip(one({ name: 0 }))).toThrow(RangeError);
    expect(() => encodeGossip(one({ version: MAX_GOSSIP_VERSION + 1 }))).toThrow(RangeError);
    const edge = TWO_PEERS[0]!.connections[0]!;
    expect(() => encodeGossip(one({ connections: [{ ...edge, address: '192.0.2.2:0' }] }))).toThrow(RangeError);
    const tooMany = Array.from({ length: MAX_GOSSIP_PEERS + 1 }, (_, i) => ({ ...TWO_PEERS[0]!, name: i + 1 }));
    expect(() => encodingLength(tooMany)).toThrow(RangeError);
  });

  const bad: [string, string, RegExp][] = [
    ['empty', '', /truncated/],
    ['wrong format version', '020000', /format version 2/],
    ['truncated count', '0100', /truncated/],
    ['trailing bytes', '01000000', /1 trailing bytes/],
    ['peer count over limit', '011001', /peer count 4097/],
    ['peers cannot fit', '010002' + '00'.repeat(30), /truncated/],
    ['empty peer name', TWO_PEERS_HEX.replace('0002020000000001', '0002000000000000'), /empty peer name/],
    [
      'duplicate peer',
      TWO_PEERS_HEX.slice(0, 6) + TWO_PEERS_HEX.slice(6).replace(/020000000002fedc/, '020000000001fedc'),
      /duplicate/,
    ],
    ['version 2^53', TWO_PEERS_HEX.replace('0000000000000003', '0020000000000000'), /version 9007199254740992 outside/],
    [
      'version 2^53-1 (no headroom for the next one)',
      TWO_PEERS_HEX.replace('0000000000000003', '001fffffffffffff'),
      /version 9007199254740991 outside/,
    ],
    [
      'version 2^52+1',
      TWO_PEERS_HEX.replace('0000000000000003', '0010000000000001'),
      /version 4503599627370497 outside/,
    ],
    ['version 0', TWO_PEERS_HEX.replace('0000000000000003', '0000000000000000'), /version 0 outside/],
    [
      'address with port 0',
      TWO_PEERS_HEX.replace(
        Buffer.from('192.0.2.2:6783').toString('hex'),
        Buffer.from('192.0.2.2:0000').toString('hex'),
      ),
      /not ip:port/,
    ],
    [
      'address with port 65536',
      TWO_PEERS_HEX.replace(
        Buffer.from('192.0.2.1:40000').toString('hex'),
        Buffer.from('192.0.2.1:65536').toString('hex'),
      ),
      /not ip:port/,
    ],
    [
      'address that is a host name',
      TWO_PEERS_HEX.replace(
        Buffer.from('192.0.2.2:6783').toString('hex'),
        Buffer.from('example.co:678').toString('hex'),
      ),
      /not ip:port/,
    ],
    [
      'address without a port',
      TWO_PEERS_HEX.replace(
        '0e' + Buffer.from('192.0.2.2:6783').toString('hex'),
        '09' + Buffer.from('192.0.2.2').toString('hex'),
      ),
      /not ip:port/,
    ],
    ['connection to itself', TWO_PEERS_HEX.replace('0001020000000002', '0001020000000001'), /connection to itself/],
    ['invalid UTF-8 nickname', TWO_PEERS_HEX.replace('0161', '01ff'), /nickname is not valid UTF-8/],
    [
      'truncated UTF-8 sequence',
      TWO_PEERS_HEX.replace('03' + '62c3a9', '03' + 'f09f98'),
      /nickname is not valid UTF-8/,
    ],
    ['control character in a nickname', TWO_PEERS_HEX.replace('0161', '010a'), /control characters/],
    ['unknown flags', TWO_PEERS_HEX.replace('02000000000203', '02000000000283'), /unknown flags 0x83/],
    ['address length past end', TWO_PEERS_HEX.slice(0, -2 * 16) + '40', /truncated/],
    ['cut in the middle', TWO_PEERS_HEX.slice(0, 60), /truncated/],
    ['connection count over limit', TWO_PEERS_HEX.replace('01610001', '01610401'), /connection count 1025/],
  ];
  for (const [what, hex, reason] of bad) {
    it(`rejects ${what}`, () => {
      let err: unknown;
      try {
        decodeGossip(Buffer.from(hex, 'hex'));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GossipDecodeError);
      expect((err as GossipDecodeError).code).toBe('EWEAVETS_GOSSIP_DECODE');
      expect((err as GossipDecodeError).reason).toMatch(reason);
    });
  }

  it('accepts IPv6 edge addresses in brackets, and what it accepts re-encodes', () => {
    const v6: PeerEntry[] = [
      { ...TWO_PEERS[0]!, connections: [{ ...TWO_PEERS[0]!.connections[0]!, address: '[2001:db8::2]:6783' }] },
    ];
    expect(decodeGossip(encodeGossip(v6))).toEqual(v6);
    const unbracketed = [{ ...v6[0]!, connections: [{ ...v6[0]!.connections[0]!, address: '2001:db8::2:6783' }] }];
    expect(() => encodeGossip(unbracketed)).toThrow(/not ip:port/);
  });

  it('survives fuzzing: only results or GossipDecodeError', () => {
    const rnd = prng(0xf022);
    const valid = Array.from({ length: 20 }, () => encodeGossip(randomEntries(rnd, 4)));
    valid.push(Buffer.from(TWO_PEERS_HEX, 'hex'));
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < 20_000; i++) {
      let input: Buffer;
      const mode = i % 4;
      if (mode === 0) {
        // Pure junk, usually starting with the right format byte to get past it.
        input = Buffer.alloc(Math.floor(rnd() * 200));
        for (let k = 0; k < input.length; k++) input[k] = Math.floor(rnd() * 256);
        if (input.length > 0 && rnd() < 0.8) input[0] = 1;
      } else {
        const src = valid[Math.floor(rnd() * valid.length)]!;
        input = Buffer.from(src);
        if (mode === 1 || mode === 3) {
          const flips = 1 + Math.floor(rnd() * 4);
          for (let k = 0; k < flips && input.length > 0; k++) {
            const at = Math.floor(rnd() * input.length);
            input[at] = input[at]! ^ (1 << Math.floor(rnd() * 8));
          }
        }
        if (mode === 2 || mode === 3) input = input.subarray(0, Math.floor(rnd() * input.length));
      }
      try {
        const out = decodeGossip(input);
        decoded++;
        // Whatever decodes must re-encode to the same bytes.
        expect(encodeGossip(out).equals(input)).toBe(true);
      } catch (e) {
        if (!(e instanceof GossipDecodeError)) throw e;
        rejected++;
      }
    }
    expect(decoded + rejected).toBe(20_000);
    expect(rejected).toBeGreaterThan(0);
    expect(decoded).toBeGreaterThan(0);
  });
});
