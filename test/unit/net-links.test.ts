import { describe, expect, it } from 'vitest';
import {
  bridgeLinkName,
  DEFAULT_BRIDGE_NAME,
  networkIdOfVxlanLink,
  PROBE_LINK_NAME,
  tapLinkName,
  vethLinkNames,
  vxlanLinkName,
} from '../../src/net/links';

describe('link names (src/net/links.ts)', () => {
  it('names each kind of link the way reset, the ledger and nftables expect', () => {
    expect(DEFAULT_BRIDGE_NAME).toBe('weavets');
    expect(bridgeLinkName(0xabcd)).toBe('wtb00abcd');
    expect(tapLinkName(0xabcd)).toBe('wtt00abcd');
    expect(vxlanLinkName(0xabcd)).toBe('wtv00abcd');
    expect(PROBE_LINK_NAME).toBe('wtvprobe');
    const veth = vethLinkNames('c1\0weavets\0eth0');
    expect(veth.host).toMatch(/^vwt[0-9a-f]{8}$/);
    expect(veth.peer).toBe(`vwc${veth.host.slice(3)}`);
    expect(vethLinkNames('c1\0weavets\0eth0')).toEqual(veth);
    expect(vethLinkNames('c1\0weavets\0eth1').host).not.toBe(veth.host);
  });

  it('fits Linux IFNAMSIZ (15 characters) for every network id', () => {
    for (const id of [0, 1, 0xabcd, 0xfffffe, 0xffffff]) {
      for (const name of [bridgeLinkName(id), tapLinkName(id), vxlanLinkName(id)])
        expect(name.length).toBeLessThanOrEqual(15);
    }
    expect(vethLinkNames('x').host.length).toBeLessThanOrEqual(15);
    expect(() => tapLinkName(0x1000000)).toThrow(RangeError);
    expect(() => bridgeLinkName(-1)).toThrow(RangeError);
  });

  it('reads the network id back from a VXLAN device name, and nothing from others', () => {
    expect(networkIdOfVxlanLink(vxlanLinkName(0x12ab))).toBe(0x12ab);
    for (const other of [PROBE_LINK_NAME, 'wtt0012ab', 'eth0', 'wtv', 'wtv12ab', 'wtv0012abx']) {
      expect(networkIdOfVxlanLink(other), other).toBeUndefined();
    }
  });
});
