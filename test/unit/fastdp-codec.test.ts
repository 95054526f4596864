/** Fast-path probe codec and the rtnetlink encoders of src/netlink/neigh.ts: vectors + junk. */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { decode, encode, ProbeKind, probeAddressFor, probeMacFor } from '../../src/datapath/fastdp/probe-codec';
import {
  addressMessage,
  bridgeMessage,
  bridgePortMessage,
  fdbMessage,
  neighbourMessage,
  vxlanData,
} from '../../src/netlink/neigh';
import { encode as encodeAttrs } from '../../src/netlink/linkinfo';

describe('probe codec', () => {
  const probe = { kind: ProbeKind.Probe, sender: 0x020000000001, receiver: 0x0a0b0c0d0e0f, seq: 7, echo: 0 };
  it('encodes the documented vector', () => {
    expect(encode(probe).toString('hex')).toBe('57010100' + '020000000001' + '0a0b0c0d0e0f' + '00000007' + '00000000');
    expect(encode({ ...probe, kind: ProbeKind.Ack, seq: 0, echo: 7 }).toString('hex')).toBe(
      '57010200020000000001' + '0a0b0c0d0e0f' + '0000000000000007',
    );
  });
  it('round-trips and rejects junk', () => {
    expect(decode(encode(probe))).toEqual(probe);
    const heard = { ...probe, hearYou: true };
    expect(encode(heard)[3]).toBe(1);
    expect(decode(encode(heard))).toEqual(heard);
    expect(decode(Buffer.alloc(23))).toBe('bad_length');
    const b = encode(probe);
    b[3] = 2;
    expect(decode(b)).toBe('bad_flags');
    const ack = encode({ ...probe, kind: ProbeKind.Ack, seq: 0, echo: 7 });
    ack[3] = 1; // HEAR_YOU is for PROBEs only
    expect(decode(ack)).toBe('bad_flags');
    for (let i = 0; i < 2000; i++) {
      const r = decode(randomBytes(i % 2 === 0 ? 24 : i % 40));
      expect(typeof r === 'string' || r.kind === ProbeKind.Probe || r.kind === ProbeKind.Ack).toBe(true);
    }
  });
  it('derives the probe MAC and link-local address from the peer name', () => {
    expect(probeMacFor(0x7e210ab419c2)).toBe('7e:21:0a:b4:19:c2');
    expect(probeMacFor(0x010000000001)).toBe('02:00:00:00:00:01');
    expect(probeAddressFor(0x7e210ab419c2)).toBe('fe80::7e21:ab4:19c2');
  });
});

describe('rtnetlink encoders', () => {
  it('VXLAN data: VNI host order, port big-endian, learning u8', () => {
    const hex = encodeAttrs(vxlanData({ vni: 0x4b8212, port: 6784, learning: false })).toString('hex');
    expect(hex).toBe('0800' + '0100' + '12824b00' + '0600' + '0f00' + '1a80' + '0000' + '0500' + '0700' + '00000000');
    expect(() => vxlanData({ vni: 1 << 24, port: 6784, learning: false })).toThrow(RangeError);
  });
  it('FDB entry: ndmsg AF_BRIDGE, NUD_PERMANENT|NOARP, NTF_SELF, lladdr then dst', () => {
    const m = fdbMessage({ index: 6, mac: Buffer.alloc(6), dst: Buffer.from([192, 0, 2, 12]) });
    expect(m.toString('hex')).toBe(
      '07000000' + '06000000' + 'c000' + '02' + '00' + '0a000200' + '000000000000' + '0000' + '08000100' + 'c000020c',
    );
  });
  it('neighbour entry and address with IFA_F_NODAD', () => {
    const n = neighbourMessage({ index: 3, mac: Buffer.from('020000000001', 'hex'), dst: Buffer.from([10, 0, 0, 1]) });
    expect(n.subarray(0, 12).toString('hex')).toBe('02000000' + '03000000' + '8000' + '00' + '00');
    const a = addressMessage({ index: 3, ip: Buffer.from([10, 0, 0, 1]), prefixLen: 24, flags: 0x02, scope: 0 });
    expect(a.subarray(0, 8).toString('hex')).toBe('0218' + '0200' + '03000000');
  });
  it('bridge message: ifinfomsg + LINKINFO{KIND bridge, DATA{NF_CALL_IPTABLES u8}}', () => {
    const on = bridgeMessage(7, { nfCallIptables: true });
    expect(on.readInt32LE(4)).toBe(7);
    expect(on.subarray(16).toString('hex')).toBe(
      '1c00' +
        '1200' + // IFLA_LINKINFO, 28 bytes
        '0b00' +
        '0100' +
        '62726964676500' +
        '00' + // IFLA_INFO_KIND "bridge\0", padded
        '0c00' +
        '0200' + // IFLA_INFO_DATA
        '0500' +
        '2400' +
        '01' +
        '000000', // IFLA_BR_NF_CALL_IPTABLES (36) = 1, padded
    );
    expect(bridgeMessage(7, { nfCallIptables: false }).subarray(16).toString('hex')).toMatch(/050024000{2}000000$/);
  });
  it('bridge port message: ifinfomsg + LINKINFO{SLAVE_KIND bridge, SLAVE_DATA{ISOLATED, FLUSH}}', () => {
    const m = bridgePortMessage(5, { isolated: true, flush: true });
    expect(m.readInt32LE(4)).toBe(5);
    expect(m.subarray(16).toString('hex')).toBe(
      '2000' +
        '1200' +
        '0b00' +
        '0400' +
        '62726964676500' +
        '00' +
        '1000' +
        '0500' +
        '0500' +
        '2100' +
        '01000000' +
        '0400' +
        '1800',
    );
  });
});
