/**
 * Every name of a link weavets creates, built here and nowhere else, so `weavets reset`,
 * the ledger and the flow counter's nftables set agree with the code that creates them.
 * Linux allows 15 characters (IFNAMSIZ - 1): a three-letter kind and six hex digits of the
 * network id, or "vw" + one letter + eight hex digits of a hash for a veth pair.
 */
import { createHash } from 'node:crypto';

/** The bridge of the default network (other networks: bridgeLinkName). */
export const DEFAULT_BRIDGE_NAME = 'weavets';

/** Prefix of every per-network VXLAN device (fastdp), matched by nftables as "wtv*". */
export const VXLAN_LINK_PREFIX = 'wtv';

/** The VXLAN device fastdp's path probes use (one per host, not per network). */
export const PROBE_LINK_NAME = 'wtvprobe';

function networkSuffix(networkId: number): string {
  if (!Number.isInteger(networkId) || networkId < 0 || networkId > 0xffffff)
    throw new RangeError(`network id ${networkId} is not 24 bits`);
  return networkId.toString(16).padStart(6, '0');
}

/** The bridge of a network other than the default one: "wtb00abcd". */
export function bridgeLinkName(networkId: number): string {
  return `wtb${networkSuffix(networkId)}`;
}

/** The sleeve's TAP device on a network's bridge: "wtt00abcd". */
export function tapLinkName(networkId: number): string {
  return `wtt${networkSuffix(networkId)}`;
}

/** fastdp's VXLAN device of a network: "wtv00abcd". */
export function vxlanLinkName(networkId: number): string {
  return `${VXLAN_LINK_PREFIX}${networkSuffix(networkId)}`;
}

/** The network id a VXLAN device name carries, or undefined when it is not one of ours. */
export function networkIdOfVxlanLink(name: string): number | undefined {
  if (!name.startsWith(VXLAN_LINK_PREFIX) || name === PROBE_LINK_NAME) return undefined;
  const hex = name.slice(VXLAN_LINK_PREFIX.length);
  return /^[0-9a-f]{6}$/.test(hex) ? parseInt(hex, 16) : undefined;
}

/**
 * The veth pair of an endpoint, named from a hash of what identifies it (`key`: id,
 * network and interface), so a retried attach finds the same names: the host end
 * "vwt<8 hex>" stays on the bridge, the peer "vwc<8 hex>" moves into the container.
 */
export function vethLinkNames(key: string): { host: string; peer: string } {
  const tag = createHash('sha256').update(key).digest('hex').slice(0, 8);
  return { host: `vwt${tag}`, peer: `vwc${tag}` };
}
