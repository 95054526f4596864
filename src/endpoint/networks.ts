/**
 * Overlay networks on this host: one Linux bridge per network, carried by the data path.
 * A network's id is a hash of its name, so every host derives the same id (the one that
 * travels with each frame, like a VNI) without asking anyone.
 */
import type { Netlink } from '../netlink';
import type { Datapath, OverlayNetwork } from '../datapath/types';
import type { LinkLedger } from './ledger';
import { DEFAULT_NETWORK } from '../config';

const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function validateNetworkName(name: string): string | undefined {
  return NETWORK_NAME_RE.test(name)
    ? undefined
    : `invalid network name ${JSON.stringify(name)}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`;
}

/** 24-bit FNV-1a of the name; 0 and 0xffffff (trace probes) are reserved, so they map to 1 and 0xfffffe. */
export function networkIdFor(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const id = (h ^ (h >>> 24)) & 0xffffff;
  return id === 0 ? 1 : id === 0xffffff ? 0xfffffe : id;
}

export function bridgeNameFor(name: string, id: number): string {
  return name === DEFAULT_NETWORK ? 'weavets' : `wtb${id.toString(16).padStart(6, '0')}`;
}

export class NetworkSet {
  private readonly networks = new Map<string, OverlayNetwork>();

  constructor(
    private readonly netlink: Netlink,
    private readonly datapath: Datapath,
    private readonly ledger: LinkLedger,
    /** MTU of bridges and container interfaces. */
    readonly mtu: number,
  ) {}

  get(name: string): OverlayNetwork | undefined {
    return this.networks.get(name);
  }

  list(): OverlayNetwork[] {
    return [...this.networks.values()];
  }

  /** Create the network's bridge (or adopt an existing one) and start carrying it. */
  async ensure(name: string): Promise<OverlayNetwork> {
    const have = this.networks.get(name);
    if (have) return have;
    const bad = validateNetworkName(name);
    if (bad) throw new Error(bad);
    const id = networkIdFor(name);
    for (const n of this.networks.values()) {
      if (n.id === id) throw new Error(`network ${name} hashes to the same id as ${n.name}; pick another name`);
    }
    const net: OverlayNetwork = { id, name, bridge: bridgeNameFor(name, id), mtu: this.mtu };
    await this.ledger.record(net.bridge);
    await this.netlink.createBridge(net.bridge, { mtu: net.mtu });
    await this.netlink.setMtu(net.bridge, net.mtu);
    await this.netlink.setUp(net.bridge);
    await this.ledger.record(`wtt${id.toString(16).padStart(6, '0')}`);
    await this.datapath.addNetwork(net);
    this.networks.set(name, net);
    return net;
  }

  /** Stop carrying every network; with `removeBridges`, delete the bridges too. */
  async close(removeBridges: boolean): Promise<void> {
    for (const net of this.networks.values()) {
      await this.datapath.removeNetwork(net.id);
      if (removeBridges) await this.netlink.deleteLink(net.bridge, { ignoreMissing: true });
    }
    this.networks.clear();
  }
}
