import { describe, expect, it } from 'vitest';
import {
  decodePacketMessage,
  encodeBindGroup,
  encodeUnbindGroup,
  summarisePayload,
  NflogDecodeError,
} from '../../src/policy/nflog';
import { DropRing, dropFromPacket, parseDropPrefix, type PolicyDrop } from '../../src/policy/drops';

function attr(type: number, value: Buffer): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

/** An IPv4 TCP SYN 10.32.0.4:40000 -> 10.32.0.3:5432 (headers only). */
const TCP_SYN = Buffer.from(
  '4500003c1c4640004006000' + '00a2000040a200003' + '9c401538' + '000000000000000000a002faf000000000',
  'hex',
);

function packetMessage(prefix: string, hwProtocol: number, payload: Buffer): Buffer {
  const hdr = Buffer.alloc(4);
  hdr.writeUInt16BE(hwProtocol, 0);
  hdr.writeUInt8(2, 2);
  const ts = Buffer.alloc(16);
  ts.writeBigUInt64BE(1796075226n, 0);
  ts.writeBigUInt64BE(185000n, 8);
  const idx = Buffer.alloc(4);
  idx.writeUInt32BE(7, 0);
  return Buffer.concat([
    Buffer.from([2, 0, 0x1a, 0x7f]), // AF_INET, version 0, group 6783
    attr(1, hdr),
    attr(10, Buffer.from(prefix + '\0', 'latin1')),
    attr(3, ts),
    attr(6, idx),
    attr(9, payload),
  ]);
}

describe('NFLOG codec', () => {
  it('encodes the bind and unbind config messages: vectors', () => {
    expect(encodeBindGroup(6783, 128).toString('hex')).toBe(
      '00001a7f' + '0500010001000000' + '0a000200' + '0000008002' + '000000',
    );
    expect(encodeUnbindGroup(6783).toString('hex')).toBe('00001a7f' + '0500010002000000');
  });

  it('decodes a packet message: vector', () => {
    const p = decodePacketMessage(packetMessage('wtp E i 4b8212 db-ingress', 0x0800, TCP_SYN));
    expect(p).toMatchObject({
      family: 2,
      group: 6783,
      hwProtocol: 0x0800,
      hook: 2,
      prefix: 'wtp E i 4b8212 db-ingress',
      physindev: 7,
      timestampMs: 1796075226185,
    });
    expect(summarisePayload(p.hwProtocol, p.payload)).toEqual({
      protocol: 'tcp',
      src: '10.32.0.4',
      dst: '10.32.0.3',
      port: 5432,
    });
  });

  it('summarises ICMP and ARP, refuses what it cannot read', () => {
    const icmp = Buffer.from(TCP_SYN);
    icmp[9] = 1;
    icmp[20] = 8;
    expect(summarisePayload(0x0800, icmp)).toEqual({
      protocol: 'icmp',
      src: '10.32.0.4',
      dst: '10.32.0.3',
      icmpType: 8,
    });
    const arp = Buffer.from(
      '0001080006040001' + 'aa9472 2f2ea6'.replace(' ', '') + '0a200083' + '000000000000' + '0a200003',
      'hex',
    );
    expect(summarisePayload(0x0806, arp)).toEqual({ protocol: 'arp', src: '10.32.0.131', dst: '10.32.0.3' });
    expect(summarisePayload(0x86dd, TCP_SYN)).toBeUndefined();
    expect(summarisePayload(0x0800, TCP_SYN.subarray(0, 19))).toBeUndefined();
  });

  it('survives junk: every input decodes or throws NflogDecodeError', () => {
    let seed = 42;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    const valid = packetMessage('wts 4b8212 vwt336e4386', 0x0800, TCP_SYN);
    for (let i = 0; i < 5000; i++) {
      const b = i % 2 === 0 ? Buffer.from(valid.subarray(0, rand() % (valid.length + 1))) : Buffer.from(valid);
      for (let k = 0; k < 4; k++) b[rand() % Math.max(1, b.length)] = rand() & 255;
      try {
        const p = decodePacketMessage(b);
        summarisePayload(p.hwProtocol, p.payload);
        parseDropPrefix(p.prefix);
      } catch (err) {
        expect(err).toBeInstanceOf(NflogDecodeError);
      }
    }
  });
});

describe('drop records', () => {
  it('parses our prefixes only', () => {
    expect(parseDropPrefix('wtp E i 4b8212 db-ingress')).toEqual({
      kind: 'policy',
      mode: 'enforce',
      direction: 'ingress',
      networkId: 0x4b8212,
      policy: 'db-ingress',
    });
    expect(parseDropPrefix('wtp A e 000001 web-egress')).toMatchObject({ mode: 'audit', direction: 'egress' });
    expect(parseDropPrefix('wts 4b8212 vwt336e4386')).toMatchObject({
      kind: 'spoof',
      policy: 'anti-spoofing',
      device: 'vwt336e4386',
    });
    expect(parseDropPrefix('someone else')).toBeUndefined();
    expect(parseDropPrefix('wtp X i 4b8212 a')).toBeUndefined();
  });

  it('names both ends and their hosts', () => {
    const p = decodePacketMessage(packetMessage('wtp E i 4b8212 db-ingress', 0x0800, TCP_SYN));
    const drop = dropFromPacket(
      p,
      {
        networkName: (id) => (id === 0x4b8212 ? 'weavets' : undefined),
        endpoint: (_n, a) =>
          a === '10.32.0.4'
            ? { name: 'x', host: 'host1' }
            : a === '10.32.0.3'
              ? { name: 'db', host: 'host2' }
              : undefined,
      },
      0,
    );
    expect(drop).toEqual({
      time: '2026-11-30T21:47:06.185Z',
      network: 'weavets',
      policy: 'db-ingress',
      direction: 'ingress',
      mode: 'enforce',
      protocol: 'tcp',
      port: 5432,
      from: { address: '10.32.0.4', name: 'x', host: 'host1' },
      to: { address: '10.32.0.3', name: 'db', host: 'host2' },
    });
  });

  it('keeps the last N in a ring, oldest first', () => {
    const ring = new DropRing(3);
    const d = (n: number): PolicyDrop => ({
      time: String(n),
      network: 'w',
      policy: 'p',
      direction: 'ingress',
      mode: 'enforce',
      protocol: 'tcp',
      from: { address: '' },
      to: { address: '' },
    });
    for (let i = 1; i <= 2; i++) ring.push(d(i));
    expect(ring.list().map((x) => x.time)).toEqual(['1', '2']);
    for (let i = 3; i <= 7; i++) ring.push(d(i));
    expect(ring.list().map((x) => x.time)).toEqual(['5', '6', '7']);
  });
});
