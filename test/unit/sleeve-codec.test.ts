import { describe, expect, it } from 'vitest';
import {
  DatagramKind,
  SleeveDecodeError,
  checkFrameRecords,
  checkHeader,
  decode,
  encode,
  encodingLength,
  readDatagramSender,
  readRecordDst,
  readRecordFrameLength,
  readRecordHops,
  readRecordKernelCopy,
  readRecordNetwork,
  readRecordSrc,
  type Datagram,
} from '../../src/datapath/sleeve/codec';

const frame = Buffer.from('ffffffffffff02000000000108060001', 'hex'); // broadcast ARP-ish, 16 bytes
const plain = Buffer.alloc(10); // offload block of a frame with no offload
// A TCP super-frame: NEEDS_CSUM, GSO_TCPV4, hdr_len 66, gso_size 1326, csum_start 34, csum_offset 16 (little-endian)
const gso = Buffer.from('01014200' + '2e05' + '2200' + '1000', 'hex');

describe('sleeve datagram codec', () => {
  it('encodes a FRAMES datagram to the documented bytes', () => {
    const d: Datagram = {
      kind: DatagramKind.Frames,
      sender: 0x020000000001,
      frames: [{ src: 0x020000000001, dst: 0, network: 0xabcdef, hops: 2, offload: gso, frame }],
    };
    expect(encode(d).toString('hex')).toBe(
      '57' +
        '01' +
        '01' +
        '00' +
        '020000000001' +
        '0000' + // header
        '020000000001' +
        '000000000000' +
        'abcdef' +
        '02' +
        '00000010' + // record header
        '0101' +
        '4200' +
        '2e05' +
        '2200' +
        '1000' + // offload block (virtio_net_hdr, little-endian)
        frame.toString('hex'),
    );
  });

  it('round-trips frames and heartbeats', () => {
    const ds: Datagram[] = [
      {
        kind: DatagramKind.Frames,
        sender: 5,
        frames: [
          { src: 5, dst: 9, network: 1, hops: 0, offload: plain, frame },
          { src: 7, dst: 0, network: 0xffffff, hops: 15, offload: gso, frame: Buffer.alloc(65000, 3) },
        ],
      },
      { kind: DatagramKind.Fragment, sender: 3, frameId: 77, offset: 1428, total: 65030, chunk: Buffer.alloc(1428, 9) },
      { kind: DatagramKind.Heartbeat, sender: 1, receiver: 2, seq: 3, echo: 0 },
      { kind: DatagramKind.HeartbeatAck, sender: 2, receiver: 1, seq: 0, echo: 3 },
    ];
    for (const d of ds) {
      const b = encode(d);
      expect(b.length).toBe(encodingLength(d));
      expect(decode(b)).toEqual(d);
    }
  });

  it('names the reason for every malformed datagram', () => {
    const good = encode({
      kind: DatagramKind.Frames,
      sender: 5,
      frames: [{ src: 5, dst: 9, network: 1, hops: 0, offload: plain, frame }],
    });
    expect(checkHeader(good, 0, 5)).toBe('short');
    const m = Buffer.from(good);
    m[0] = 0;
    expect(checkHeader(m, 0, m.length)).toBe('bad_magic');
    const v = Buffer.from(good);
    v[1] = 9;
    expect(checkHeader(v, 0, v.length)).toBe('bad_version');
    const k = Buffer.from(good);
    k[2] = 77;
    expect(checkHeader(k, 0, k.length)).toBe('bad_kind');
    expect(checkFrameRecords(good, 0, good.length - 1)).toBe('truncated');
    const tiny = Buffer.from(good);
    tiny.writeUInt32BE(4, 12 + 16);
    expect(checkFrameRecords(tiny, 0, tiny.length)).toBe('bad_length');
    expect(() => decode(good.subarray(0, good.length - 3))).toThrow(SleeveDecodeError);
    const huge = Buffer.from(good);
    huge.writeUInt32BE(70000, 12 + 16);
    expect(checkFrameRecords(huge, 0, huge.length)).toBe('bad_length');
    const frag = encode({
      kind: DatagramKind.Fragment,
      sender: 3,
      frameId: 1,
      offset: 0,
      total: 60,
      chunk: Buffer.alloc(40),
    });
    expect(checkHeader(frag, 0, frag.length)).toBe(DatagramKind.Fragment);
    const past = Buffer.from(frag);
    past.writeUInt32BE(30, 12 + 4); // chunk of 40 at offset 30 overruns total 60
    expect(checkHeader(past, 0, past.length)).toBe('bad_length');
    const empty = frag.subarray(0, 24);
    expect(checkHeader(empty, 0, empty.length)).toBe('bad_length');
  });

  it('survives fuzzing: only a datagram or a SleeveDecodeError', () => {
    let seed = 99;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed % n;
    };
    const base = encode({
      kind: DatagramKind.Frames,
      sender: 5,
      frames: [
        { src: 5, dst: 9, network: 1, hops: 0, offload: plain, frame },
        { src: 5, dst: 0, network: 1, hops: 0, offload: gso, frame },
      ],
    });
    for (let i = 0; i < 20000; i++) {
      let b: Buffer;
      if (i % 2 === 0) {
        b = Buffer.alloc(rand(200));
        for (let j = 0; j < b.length; j++) b[j] = rand(256);
        if (b.length > 2 && rand(2) === 0) {
          b[0] = 0x57;
          b[1] = 1;
          b[2] = 1 + rand(4);
        }
      } else {
        b = Buffer.from(base);
        for (let n = 0; n < 1 + rand(3); n++) b[rand(b.length)] = rand(256);
        b = b.subarray(0, rand(b.length + 1));
      }
      try {
        decode(b);
      } catch (err) {
        expect(err).toBeInstanceOf(SleeveDecodeError);
      }
    }
  });

  it('reads records through the same named accessors as decode, the kernel-copy bit apart from the hop count', () => {
    const d: Datagram = {
      kind: DatagramKind.Frames,
      sender: 0x020000000007,
      frames: [
        { src: 0x020000000007, dst: 0, network: 0xabcdef, hops: 3, kernelCopy: true, offload: gso, frame },
        { src: 0x020000000009, dst: 0x020000000007, network: 1, hops: 0x7f, offload: plain, frame },
      ],
    };
    const b = encode(d);
    expect(b[12 + 15]).toBe(0x83); // hops byte: 3 relays | kernel copy
    expect(decode(b)).toEqual(d);
    expect(readDatagramSender(b, 0)).toBe(0x020000000007);
    const second = 12 + 30 + frame.length;
    expect([readRecordSrc(b, 12), readRecordDst(b, 12), readRecordNetwork(b, 12), readRecordHops(b, 12)]).toEqual([
      0x020000000007, 0, 0xabcdef, 3,
    ]);
    expect([readRecordKernelCopy(b, 12), readRecordKernelCopy(b, second), readRecordHops(b, second)]).toEqual([
      true,
      false,
      0x7f,
    ]);
    expect(readRecordFrameLength(b, second)).toBe(frame.length);
  });
});
