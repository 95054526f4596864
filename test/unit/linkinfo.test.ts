import { describe, expect, it } from 'vitest';
import {
  attr,
  decode,
  decodeLinkInfo,
  decodeVethPeer,
  encode,
  encodeLinkInfo,
  encodingLength,
  IFLA,
  str,
  vethData,
} from '../../src/netlink/linkinfo';
import { bytesToIp, ipToBytes, parseCidr } from '../../src/netlink/addr';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('linkinfo attribute codec', () => {
  it('encodes IFLA_LINKINFO for a bridge (NUL-terminated kind, padded to 4)', () => {
    const b = encodeLinkInfo({ kind: 'bridge' });
    expect(b.toString('hex')).toBe('0b000100' + '6272696467650000');
    expect(decodeLinkInfo(b)).toEqual({ kind: 'bridge' });
  });

  it('encodes a veth peer: VETH_INFO_PEER = ifinfomsg + nested IFLA_* attributes', () => {
    const b = encodeLinkInfo({ kind: 'veth', data: vethData({ name: 'p' }) });
    const expected = hex(`
      09000100 76657468 00000000
      20000200
        1c000100
          00000000 00000000 00000000 00000000
          06000300 70000000`);
    expect(b.toString('hex')).toBe(expected.toString('hex'));
    const info = decodeLinkInfo(b);
    expect(info.kind).toBe('veth');
    const peer = decodeVethPeer(info.data!);
    expect(peer?.ifinfo.length).toBe(16);
    expect(peer?.attrs.map((a) => [a.type, str(a.value)])).toEqual([[IFLA.IFNAME, 'p']]);
  });

  it('carries peer mtu, mac and netns fd in host order', () => {
    const mac = hex('020000000001');
    const info = decodeLinkInfo(
      encodeLinkInfo({ kind: 'veth', data: vethData({ name: 'eth0', mtu: 1376, mac, netnsFd: 7 }) }),
    );
    const attrs = decodeVethPeer(info.data!)!.attrs;
    const byType = new Map(attrs.map((a) => [a.type, a.value]));
    expect(str(byType.get(IFLA.IFNAME)!)).toBe('eth0');
    expect(byType.get(IFLA.MTU)!.readUInt32LE(0)).toBe(1376);
    expect(byType.get(IFLA.ADDRESS)!.equals(mac)).toBe(true);
    expect(byType.get(IFLA.NET_NS_FD)!.readUInt32LE(0)).toBe(7);
  });

  it('encodes into a caller buffer at an offset, and encodingLength matches', () => {
    const attrs = [attr.u8(1, 0xff), attr.be16(2, 4789), attr.nest(3, [attr.u32(1, 42), attr.flag(2)])];
    const n = encodingLength(attrs);
    expect(n).toBe(8 + 8 + 4 + 8 + 4);
    const buf = Buffer.alloc(n + 3, 0xaa);
    const out = encode(attrs, buf, 3);
    expect(out.length).toBe(n);
    expect(buf.subarray(0, 3).equals(hex('aaaaaa'))).toBe(true);
    expect(out.toString('hex')).toBe(
      '05000100ff000000' + '0600020012b50000' + '10000300' + '080001002a000000' + '04000200',
    );
    const [, port, nest] = decode(out);
    expect(port!.value.readUInt16BE(0)).toBe(4789);
    expect(decode(nest!.value).map((a) => a.type)).toEqual([1, 2]);
  });

  it('masks NLA_F_NESTED off the type and reports it', () => {
    const [a] = decode(hex('08000280 01000000'));
    expect(a).toMatchObject({ type: 2, nested: true });
  });

  it('rejects a length that overruns the buffer and survives junk', () => {
    expect(() => decode(hex('ff000100 00000000'))).toThrow(RangeError);
    expect(() => decode(hex('02000100'))).toThrow(RangeError);
    for (let i = 0; i < 2000; i++) {
      const junk = Buffer.from(Array.from({ length: (i % 40) + 1 }, () => Math.floor(Math.random() * 256)));
      try {
        decodeLinkInfo(junk);
      } catch (e) {
        expect(e).toBeInstanceOf(RangeError);
      }
    }
  });
});

describe('address helpers', () => {
  it('round-trips IPv4 and IPv6', () => {
    expect(ipToBytes('10.32.0.1').toString('hex')).toBe('0a200001');
    expect(bytesToIp(ipToBytes('fd00::1'))).toBe('fd00::1');
    expect(bytesToIp(ipToBytes('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(bytesToIp(ipToBytes('::ffff:192.0.2.1'))).toBe('::ffff:c000:201');
    expect(parseCidr('10.32.0.1/12')).toMatchObject({ family: 2, prefixLen: 12, ip: '10.32.0.1' });
    expect(() => parseCidr('10.0.0.1/33')).toThrow();
  });
});
