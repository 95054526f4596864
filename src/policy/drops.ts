/**
 * The drop log: NFLOG records of the policy tables turned into named drops ("from x on
 * host1 to db on host2, tcp/5432, policy db-ingress"), kept in a bounded ring for
 * `policy drops`, and the reader that gets them from the kernel.
 *
 * Log prefixes are written by the compiler (nft.ts):
 *   "wtp <E|A> <i|e> <network id hex> <policy>"   a policy refused (E) or would refuse (A)
 *   "wts <network id hex> <host veth>"            anti-spoofing refused a frame
 */
import { createNetlink, type NetlinkSocket } from 'netlink/dist/netlink';
import type { Logger } from '../log';
import {
  NETLINK_NETFILTER,
  NFULNL_MSG_CONFIG,
  NFULNL_MSG_PACKET,
  decodePacketMessage,
  encodeBindGroup,
  encodeUnbindGroup,
  summarisePayload,
  type NflogPacket,
} from './nflog';

export interface DropEnd {
  address: string;
  /** Endpoint name (or id) when the address is a known endpoint of the network. */
  name?: string;
  /** Nickname (or peer name) of the host the endpoint is on. */
  host?: string;
}

/** One entry of `policy drops --json`. */
export interface PolicyDrop {
  /** ISO time the kernel logged the packet. */
  time: string;
  network: string;
  /** Policy name; "anti-spoofing" for a frame with a borrowed source. */
  policy: string;
  direction: 'ingress' | 'egress' | 'spoof';
  /** "audit": logged only (a policy in audit mode, or --policy-dry-run); nothing was dropped. */
  mode: 'enforce' | 'audit';
  protocol: string;
  port?: number;
  from: DropEnd;
  to: DropEnd;
  /** Anti-spoofing: the container port the frame came in on. */
  device?: string;
}

export interface DropPrefix {
  kind: 'policy' | 'spoof';
  mode: 'enforce' | 'audit';
  direction: 'ingress' | 'egress' | 'spoof';
  networkId: number;
  policy: string;
  device?: string;
}

/** Parse a log prefix of ours; undefined for anything else. */
export function parseDropPrefix(prefix: string): DropPrefix | undefined {
  const p = /^wtp ([EA]) ([ie]) ([0-9a-f]{6}) ([a-z0-9-]{1,48})$/.exec(prefix);
  if (p) {
    return {
      kind: 'policy',
      mode: p[1] === 'E' ? 'enforce' : 'audit',
      direction: p[2] === 'i' ? 'ingress' : 'egress',
      networkId: parseInt(p[3]!, 16),
      policy: p[4]!,
    };
  }
  const s = /^wts ([0-9a-f]{6}) ([A-Za-z0-9_.-]{1,15})$/.exec(prefix);
  if (s)
    return {
      kind: 'spoof',
      mode: 'enforce',
      direction: 'spoof',
      networkId: parseInt(s[1]!, 16),
      policy: 'anti-spoofing',
      device: s[2]!,
    };
  return undefined;
}

export interface DropResolver {
  /** Network name of a network id; undefined when unknown here. */
  networkName(id: number): string | undefined;
  /** The endpoint holding an address on a network, anywhere in the cluster. */
  endpoint(network: string, address: string): { name: string; host: string } | undefined;
}

/** Turn a logged packet into a drop record; undefined when it is not one of ours. */
export function dropFromPacket(packet: NflogPacket, resolver: DropResolver, nowMs: number): PolicyDrop | undefined {
  const prefix = parseDropPrefix(packet.prefix);
  if (!prefix) return undefined;
  const summary = summarisePayload(packet.hwProtocol, packet.payload);
  if (!summary) return undefined;
  const network = resolver.networkName(prefix.networkId) ?? prefix.networkId.toString(16).padStart(6, '0');
  const end = (address: string): DropEnd => {
    const ep = resolver.endpoint(network, address);
    return ep ? { address, name: ep.name, host: ep.host } : { address };
  };
  const drop: PolicyDrop = {
    time: new Date(packet.timestampMs ?? nowMs).toISOString(),
    network,
    policy: prefix.policy,
    direction: prefix.direction,
    mode: prefix.mode,
    protocol: summary.protocol,
    from: end(summary.src),
    to: end(summary.dst),
  };
  if (summary.port !== undefined) drop.port = summary.port;
  if (prefix.device !== undefined) drop.device = prefix.device;
  return drop;
}

/** The last `capacity` drops, oldest first. */
export class DropRing {
  private readonly items: PolicyDrop[] = [];
  private next = 0;

  constructor(readonly capacity: number) {}

  push(drop: PolicyDrop): void {
    if (this.items.length < this.capacity) this.items.push(drop);
    else this.items[this.next] = drop;
    this.next = (this.next + 1) % this.capacity;
  }

  list(): PolicyDrop[] {
    if (this.items.length < this.capacity) return [...this.items];
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}

/**
 * Reads one NFLOG group over NETLINK_NETFILTER (the `netlink` package opens any
 * netlink protocol, so no native code is needed). Malformed messages are counted and
 * dropped; close never throws.
 */
export class NflogReader {
  malformed = 0;
  private closed = false;

  private constructor(
    private readonly socket: NetlinkSocket,
    private readonly group: number,
  ) {}

  static async open(group: number, onPacket: (p: NflogPacket) => void, log: Logger): Promise<NflogReader> {
    const socket = createNetlink(NETLINK_NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 16 });
    const reader = new NflogReader(socket, group);
    socket.on('message', (msgs) => {
      for (const m of msgs) {
        if (m.type !== NFULNL_MSG_PACKET) continue;
        try {
          onPacket(decodePacketMessage(m.data));
        } catch (err) {
          reader.malformed++;
          log.debug('dropping a malformed NFLOG message', { error: (err as Error).message });
        }
      }
    });
    socket.on('error', (err) => {
      if (!reader.closed) log.warn('NFLOG socket error', { error: err.message });
    });
    try {
      // Copy 128 bytes of each packet: enough for the IPv4 and transport headers.
      await socket.request(NFULNL_MSG_CONFIG, encodeBindGroup(group, 128), { flags: 0x1 | 0x4, timeout: 3000 });
    } catch (err) {
      socket.close();
      throw new Error(`cannot bind NFLOG group ${group}: ${(err as Error).message}`, { cause: err });
    }
    return reader;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.send(NFULNL_MSG_CONFIG, encodeUnbindGroup(this.group), { flags: 0x1 });
    } catch {
      // Closing the socket unbinds the group anyway.
    }
    try {
      this.socket.close();
    } catch {
      // never throw from a close path
    }
  }
}
