/**
 * The simple per-host address block: each host takes one /24 of the range, chosen from
 * a hash of its peer name, and hands out addresses from it. It needs no coordination,
 * which is also its weakness: two hosts can hash to the same block (about 1 in 4096 per
 * pair on a /12). The etcd IPAM replaces this; until then collisions are detected when
 * peers connect and logged loudly by the daemon.
 *
 * Pure: the owner of persistence (the endpoint registry) saves and restores allocations.
 */
import { contains, formatIpv4, maskOf, type Cidr } from './cidr';
import { WeavetsError } from '../errors';

export const HOST_BLOCK_PREFIX = 24;

/** FNV-1a over the 6 bytes of a peer name: stable across versions and hosts. */
export function hostBlockFor(range: Cidr, peerName: number): Cidr {
  if (range.prefix > HOST_BLOCK_PREFIX) return { base: range.base, prefix: range.prefix };
  const blocks = 2 ** (HOST_BLOCK_PREFIX - range.prefix);
  let h = 0x811c9dc5;
  for (let i = 5; i >= 0; i--) {
    h ^= Math.floor(peerName / 2 ** (8 * i)) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const index = h % blocks;
  return { base: (range.base + index * 2 ** (32 - HOST_BLOCK_PREFIX)) >>> 0, prefix: HOST_BLOCK_PREFIX };
}

export class HostBlockAllocator {
  /** address -> owner */
  private readonly used = new Map<number, string>();
  /** owner -> address */
  private readonly byOwner = new Map<string, number>();

  constructor(
    readonly range: Cidr,
    readonly block: Cidr,
  ) {}

  /** Addresses that must never be handed out: the range's network and broadcast addresses, and the block's. */
  private reserved(ip: number): boolean {
    const rangeLast = (this.range.base + 2 ** (32 - this.range.prefix) - 1) >>> 0;
    const blockLast = (this.block.base + 2 ** (32 - this.block.prefix) - 1) >>> 0;
    return ip === this.range.base || ip === rangeLast || ip === this.block.base || ip === blockLast;
  }

  /**
   * Allocate for `owner` (idempotent: the same owner gets the same address). With
   * `requested`, that exact address, anywhere in the range, if nobody here holds it.
   */
  allocate(owner: string, requested?: number): number {
    const have = this.byOwner.get(owner);
    if (have !== undefined) {
      if (requested === undefined || requested === have) return have;
      throw new WeavetsError('EWEAVETS_CONFLICT', `${owner} already holds ${formatIpv4(have)}; detach it first`);
    }
    if (requested !== undefined) {
      if (!contains(this.range, requested)) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${formatIpv4(requested)} is outside the range ${formatIpv4(this.range.base)}/${this.range.prefix}`);
      }
      if (this.reserved(requested)) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${formatIpv4(requested)} is a network or broadcast address`);
      }
      const holder = this.used.get(requested);
      if (holder !== undefined) throw new WeavetsError('EWEAVETS_CONFLICT', `${formatIpv4(requested)} is already in use by ${holder}`);
      this.claim(owner, requested);
      return requested;
    }
    const size = 2 ** (32 - this.block.prefix);
    for (let i = 1; i < size - 1; i++) {
      const ip = (this.block.base + i) >>> 0;
      if (!this.used.has(ip) && !this.reserved(ip)) {
        this.claim(owner, ip);
        return ip;
      }
    }
    throw new WeavetsError(
      'EWEAVETS_RANGE_EXHAUSTED',
      `no free address left in this host's block ${formatIpv4(this.block.base)}/${this.block.prefix}`,
    );
  }

  /** Record an existing allocation (restore after restart). */
  claim(owner: string, ip: number): void {
    this.used.set(ip, owner);
    this.byOwner.set(owner, ip);
  }

  release(owner: string): number | undefined {
    const ip = this.byOwner.get(owner);
    if (ip === undefined) return undefined;
    this.byOwner.delete(owner);
    this.used.delete(ip);
    return ip;
  }

  usage(): { used: number; free: number } {
    const size = 2 ** (32 - this.block.prefix) - 2;
    let inBlock = 0;
    for (const ip of this.used.keys()) if (((ip & maskOf(this.block.prefix)) >>> 0) === this.block.base) inBlock++;
    return { used: this.used.size, free: size - inBlock };
  }
}
