/**
 * The two wire formats of diagnostics: HEALTH reports (control channel) and trace probe
 * frames (data channel). Vectors written by hand from docs/PROTOCOL.md, round trips, and
 * fuzzing with junk and with every truncation and single-byte corruption.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  HealthDecodeError,
  decodeHealthReport,
  encodeHealthReport,
  encodingLength,
  type HostReport,
} from '../../src/router/health-codec';
import {
  decodeTraceProbe,
  encodeTraceProbe,
  TraceProbeKind,
  TRACE_PROBE_LENGTH,
} from '../../src/diagnostics/trace-probe-codec';
import { decode as decodeControl, encode as encodeControl, MessageType } from '../../src/router/control-codec';

const A = 0x020000000001;
const B = 0x020000000002;

const REPORT: HostReport = {
  owner: A,
  nickname: 'h1',
  uid: 0x0102030405060708n,
  seq: 7,
  peers: [
    {
      peer: B,
      up: true,
      connected: true,
      datapath: 'fastdp',
      encrypted: false,
      pmtu: 1472,
      rttUs: 310,
      lossPermille: 0,
      silentMs: 120,
      reason: '',
    },
  ],
  endpoints: [{ id: 'c1', name: 'web', network: 'weavets', networkId: 0xabcdef, ip: 0x0a200005, mac: 0x0affee000001 }],
};

// Written from docs/PROTOCOL.md ("Health reports"), not by the encoder.
const REPORT_HEX = [
  '01', // format version
  '020000000001', // owner
  '0102030405060708', // uid
  '00000007', // seq
  '02',
  '6831', // nickname "h1"
  '0001', // peer views
  '0001', // endpoints
  '020000000002', // peer
  '07', // flags: up | connected | fastdp
  '05c0', // pmtu 1472
  '00000136', // rtt 310 us
  '0000', // loss 0
  '00000078', // silent 120 ms
  '00', // reason ""
  '00abcdef', // network id
  '0a200005', // 10.32.0.5
  '0affee000001', // mac
  '02',
  '6331', // id "c1"
  '03',
  '776562', // name "web"
  '07',
  Buffer.from('weavets').toString('hex'),
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

function randomReport(rnd: () => number): HostReport {
  const owner = 1 + Math.floor(rnd() * 0xffff_ffff_fffe);
  const used = new Set([owner]);
  const peers: HostReport['peers'] = [];
  for (let i = Math.floor(rnd() * 6); i > 0; i--) {
    let peer = 1 + Math.floor(rnd() * 0xffff_ffff_fffe);
    while (used.has(peer)) peer++;
    used.add(peer);
    const up = rnd() < 0.5;
    peers.push({
      peer,
      up,
      connected: rnd() < 0.5,
      datapath: rnd() < 0.5 ? 'fastdp' : 'sleeve',
      encrypted: rnd() < 0.5,
      pmtu: Math.floor(rnd() * 65536),
      rttUs: rnd() < 0.3 ? undefined : Math.floor(rnd() * 1e6),
      lossPermille: rnd() < 0.3 ? undefined : Math.floor(rnd() * 1001),
      silentMs: rnd() < 0.3 ? undefined : Math.floor(rnd() * 1e8),
      reason: up ? '' : `no heartbeat answer for ${Math.floor(rnd() * 100)} s ü`,
    });
  }
  const endpoints: HostReport['endpoints'] = [];
  for (let i = Math.floor(rnd() * 4); i > 0; i--) {
    endpoints.push({
      id: `id${Math.floor(rnd() * 1e6)}`,
      name: rnd() < 0.5 ? '' : 'näme',
      network: 'net',
      networkId: 1 + Math.floor(rnd() * 0xfffffe),
      ip: Math.floor(rnd() * 2 ** 32),
      mac: Math.floor(rnd() * 2 ** 48),
    });
  }
  return {
    owner,
    nickname: 'n'.repeat(Math.floor(rnd() * 10)),
    uid: BigInt(Math.floor(rnd() * 2 ** 32)) << 32n,
    seq: Math.floor(rnd() * 2 ** 32),
    peers,
    endpoints,
  };
}

describe('health report codec', () => {
  it('encodes a report to the documented bytes and back', () => {
    expect(encodeHealthReport(REPORT).toString('hex')).toBe(REPORT_HEX);
    expect(encodingLength(REPORT)).toBe(REPORT_HEX.length / 2);
    expect(decodeHealthReport(Buffer.from(REPORT_HEX, 'hex'))).toEqual(REPORT);
  });

  it('travels as the body of a HEALTH control message (type 8)', () => {
    const payload = encodeHealthReport(REPORT);
    const frame = encodeControl({ type: MessageType.Health, payload });
    expect(frame.subarray(0, 5).toString('hex')).toBe((payload.length + 1).toString(16).padStart(8, '0') + '08');
    const msg = decodeControl(frame);
    expect(msg.type).toBe(MessageType.Health);
    if (msg.type === MessageType.Health) expect(decodeHealthReport(msg.payload)).toEqual(REPORT);
  });

  it('keeps unknown values as undefined, not as sentinels', () => {
    const r: HostReport = {
      ...REPORT,
      peers: [
        {
          ...REPORT.peers[0]!,
          rttUs: undefined,
          lossPermille: undefined,
          silentMs: undefined,
          up: false,
          reason: 'no heartbeat answer yet',
        },
      ],
    };
    expect(decodeHealthReport(encodeHealthReport(r))).toEqual(r);
  });

  it('round-trips random reports', () => {
    const rnd = prng(16);
    for (let i = 0; i < 500; i++) {
      const r = randomReport(rnd);
      const buf = encodeHealthReport(r);
      expect(buf.length).toBe(encodingLength(r));
      expect(decodeHealthReport(buf)).toEqual(r);
    }
  });

  it('refuses to encode what it could not decode', () => {
    expect(() => encodeHealthReport({ ...REPORT, owner: 0 })).toThrow(RangeError);
    expect(() => encodeHealthReport({ ...REPORT, nickname: 'x'.repeat(256) })).toThrow(RangeError);
    expect(() => encodeHealthReport({ ...REPORT, peers: [{ ...REPORT.peers[0]!, lossPermille: 1001 }] })).toThrow(
      RangeError,
    );
    expect(() =>
      encodeHealthReport({ ...REPORT, endpoints: [{ ...REPORT.endpoints[0]!, networkId: 0x1000000 }] }),
    ).toThrow(RangeError);
  });

  it('rejects malformed reports with HealthDecodeError, naming the problem', () => {
    const good = Buffer.from(REPORT_HEX, 'hex');
    const bad = (mutate: (b: Buffer) => Buffer, reason: RegExp): void => {
      const b = mutate(Buffer.from(good));
      expect(() => decodeHealthReport(b)).toThrow(HealthDecodeError);
      expect(() => decodeHealthReport(b)).toThrow(reason);
    };
    bad((b) => ((b[0] = 2), b), /version/);
    bad((b) => (b.fill(0, 1, 7), b), /empty owner/);
    bad((b) => Buffer.concat([b, Buffer.from([0])]), /trailing/);
    bad((b) => b.subarray(0, b.length - 1), /truncated/);
    // The owner's view of itself.
    bad((b) => (b.writeUIntBE(A, 26, 6), b), /itself/);
    bad((b) => (b.writeUInt8(0x10, 32), b), /flags/);
    bad((b) => (b.writeUInt16BE(1001, 39), b), /loss/);
    bad((b) => (b.writeUInt16BE(0xffff, 22), b), /peer count|truncated/);
  });

  it('survives fuzzing: junk, every truncation, every corrupted byte', () => {
    const rnd = prng(99);
    const check = (b: Buffer): void => {
      try {
        decodeHealthReport(b);
      } catch (err) {
        expect(err).toBeInstanceOf(HealthDecodeError);
      }
    };
    for (let i = 0; i < 3000; i++) {
      const n = Math.floor(rnd() * 200);
      const b = Buffer.alloc(n);
      for (let j = 0; j < n; j++) b[j] = Math.floor(rnd() * 256);
      if (n > 0 && rnd() < 0.5) b[0] = 1;
      check(b);
    }
    const good = encodeHealthReport(randomReport(prng(5)));
    for (let cut = 0; cut < good.length; cut++) check(good.subarray(0, cut));
    for (let at = 0; at < good.length; at++) {
      for (const v of [0, 0xff, good[at]! ^ 0x01]) {
        const b = Buffer.from(good);
        b[at] = v;
        check(b);
      }
    }
  });
});

describe('docs/PROTOCOL.md', () => {
  it('documents exactly these vectors', () => {
    const doc = readFileSync(join(__dirname, '../../docs/PROTOCOL.md'), 'utf8').replace(/\s+/g, ' ');
    const health = /`(01 020000000001 0102030405060708 [^`]+)`/.exec(doc);
    expect(health?.[1]?.replace(/[ |]/g, '')).toBe(REPORT_HEX);
    const probe = /`(57545052 01 00 [^`]+)`/.exec(doc);
    expect(probe?.[1]?.replace(/ /g, '')).toBe(
      encodeTraceProbe({ kind: TraceProbeKind.Request, id: 0xdeadbeef, seq: 2, from: A, to: B }).toString('hex'),
    );
  });
});

describe('trace probe codec', () => {
  it('encodes a request to the documented 24 bytes', () => {
    const buf = encodeTraceProbe({ kind: TraceProbeKind.Request, id: 0xdeadbeef, seq: 2, from: A, to: B });
    // magic "WTPR", kind 1, flags 0, seq, id, from, to
    expect(buf.toString('hex')).toBe('57545052' + '01' + '00' + '0002' + 'deadbeef' + '020000000001' + '020000000002');
    expect(buf.length).toBe(TRACE_PROBE_LENGTH);
    expect(decodeTraceProbe(buf)).toEqual({ kind: TraceProbeKind.Request, id: 0xdeadbeef, seq: 2, from: A, to: B });
  });

  it('names what is wrong with a malformed frame', () => {
    const good = encodeTraceProbe({ kind: TraceProbeKind.Reply, id: 1, seq: 1, from: B, to: A });
    expect(decodeTraceProbe(good.subarray(0, 23))).toBe('probe_length');
    expect(decodeTraceProbe(Buffer.concat([good, Buffer.alloc(1)]))).toBe('probe_length');
    const m = Buffer.from(good);
    m[0] = 0;
    expect(decodeTraceProbe(m)).toBe('probe_magic');
    const k = Buffer.from(good);
    k[4] = 3;
    expect(decodeTraceProbe(k)).toBe('probe_kind');
    const f = Buffer.from(good);
    f[5] = 1;
    expect(decodeTraceProbe(f)).toBe('probe_flags');
    const p = Buffer.from(good);
    p.fill(0, 12, 18);
    expect(decodeTraceProbe(p)).toBe('probe_peer');
    expect(() => encodeTraceProbe({ kind: TraceProbeKind.Request, id: 1, seq: 0x10000, from: A, to: B })).toThrow(
      RangeError,
    );
  });

  it('survives fuzzing', () => {
    const rnd = prng(7);
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.alloc(rnd() < 0.7 ? TRACE_PROBE_LENGTH : Math.floor(rnd() * 40));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      if (b.length >= 4 && rnd() < 0.7) b.writeUInt32BE(0x57545052, 0);
      const r = decodeTraceProbe(b);
      expect(typeof r === 'string' || (r.from !== 0 && r.to !== 0)).toBe(true);
    }
  });
});
