/**
 * Block arithmetic and the IPAM key layout in the store. Pure: the allocator and the
 * unit tests share it.
 *
 * The range is cut into equal blocks of `blockPrefix` (default /26: 64 addresses). A
 * block belongs to one network at a time and lies inside that network's subnet (the
 * default network's subnet is the whole range; a created network's is its own, at least
 * one block). Only a subnet's own network and broadcast addresses are never handed out
 * (for the default network: the range's).
 *
 * Keys (under the store's prefix): blocks and addresses are keyed by address alone, not
 * by network, so one compare-and-create makes an address unique across every network.
 *   ipam/config                        {range, blockPrefix}              created once
 *   ipam/blocks/<base hex>             {owner, nickname, network}        a host's block
 *   ipam/addrs/<ip hex>                {id, ifname, host, network, retainedUntil?}
 *   ipam/handles/<id>/<ifname>         {network, ip, host}               idempotency index
 *   hosts/<peer name>                  {name, nickname, address}         leased: liveness
 * Addresses are 8 lower-case hex digits so keys sort in address order and a block's
 * addresses share a key prefix (to the nearest 4 bits). Stores written before networks
 * had subnets keyed blocks and addresses as ipam/{blocks,addrs}/<network>/<hex>:
 * `parseLegacyKey` reads those, and the allocator moves them once when it opens.
 */
import { cidrSize, formatIpv4, type Cidr } from '../net/ipv4';
import type { KeyRange } from '../store/types';

export const DEFAULT_BLOCK_PREFIX = 26;
export const CONFIG_KEY = 'ipam/config';
export const HOSTS_PREFIX = 'hosts/';
export const BLOCKS_PREFIX = 'ipam/blocks/';
export const ADDRS_PREFIX = 'ipam/addrs/';
export const HANDLES_PREFIX = 'ipam/handles/';

export interface ClusterConfig {
  range: string;
  blockPrefix: number;
}

export interface BlockRecord {
  owner: string;
  nickname: string;
  /** The network the block's addresses are for (absent in legacy records: read from the key). */
  network: string;
}

export interface AddrRecord {
  id: string;
  ifname: string;
  /** Peer name of the host that holds it (or held it, while retained). */
  host: string;
  network: string;
  /**
   * Set while the address is only reserved for (id, ifname) after a detach: wall-clock
   * milliseconds after which any host may delete it. Absent: in use.
   */
  retainedUntil?: number;
  /** Allocated through POST /ipam/allocate (no interface here): never reconciled away. */
  unattached?: true;
}

export interface HandleRecord {
  network: string;
  ip: string;
  host: string;
}

export function hex8(ip: number): string {
  return (ip >>> 0).toString(16).padStart(8, '0');
}

export function blockKey(base: number): string {
  return `${BLOCKS_PREFIX}${hex8(base)}`;
}

export function addrKey(ip: number): string {
  return `${ADDRS_PREFIX}${hex8(ip)}`;
}

export function handleKey(id: string, ifname: string): string {
  return `${HANDLES_PREFIX}${id}/${ifname}`;
}

export function hostKey(name: string): string {
  return `${HOSTS_PREFIX}${name}`;
}

/** Key prefix covering every address of a block or subnet (and, below /4 alignment, neighbours: filter). */
export function addrPrefixOfBlock(block: Cidr): string {
  return `${ADDRS_PREFIX}${hex8(block.base).slice(0, Math.floor(block.prefix / 4))}`;
}

/**
 * The keys under `prefix` (BLOCKS_PREFIX or ADDRS_PREFIX) of exactly the addresses of
 * `cidr`, as one key range: 8-digit lower-case hex sorts in address order, so
 * [prefix + hex(first), prefix + hex(last + 1)) holds those keys and no other address's.
 * (Keys of the layout before subnets, <prefix><network>/<hex>, may fall inside; they are
 * moved away when a daemon opens the store.)
 */
export function keyRangeOf(prefix: string, cidr: Cidr): KeyRange {
  const end = cidr.base + cidrSize(cidr);
  // Past 255.255.255.255: up to the first key after the whole prefix ('/' + 1 is '0').
  const to =
    end > 0xffffffff
      ? `${prefix.slice(0, -1)}${String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)}`
      : `${prefix}${hex8(end)}`;
  return { from: `${prefix}${hex8(cidr.base)}`, to };
}

/** Parse the address out of an ipam/addrs or ipam/blocks key; undefined if it is not one. */
export function parseAddrKey(key: string): { ip: number } | undefined {
  const m = /^ipam\/(?:addrs|blocks)\/([0-9a-f]{8})$/.exec(key);
  if (!m) return undefined;
  return { ip: parseInt(m[1]!, 16) };
}

/** A key of the layout before networks had subnets: ipam/{addrs,blocks}/<network>/<hex>. */
export function parseLegacyKey(key: string): { kind: 'addrs' | 'blocks'; network: string; ip: number } | undefined {
  const m = /^ipam\/(addrs|blocks)\/([^/]+)\/([0-9a-f]{8})$/.exec(key);
  if (!m) return undefined;
  return { kind: m[1] as 'addrs' | 'blocks', network: m[2]!, ip: parseInt(m[3]!, 16) };
}

/** Is `blockPrefix` usable for `range`? Returns a message when it is not. */
export function checkBlockPrefix(range: Cidr, blockPrefix: number): string | undefined {
  if (!Number.isInteger(blockPrefix) || blockPrefix < range.prefix || blockPrefix > 30) {
    return `block size /${blockPrefix} does not fit the range ${formatIpv4(range.base)}/${range.prefix}: use /${range.prefix} to /30`;
  }
  return undefined;
}

export function blockCount(range: Cidr, blockPrefix: number): number {
  return 2 ** (blockPrefix - range.prefix);
}

export function blockAt(range: Cidr, blockPrefix: number, index: number): Cidr {
  return { base: (range.base + index * 2 ** (32 - blockPrefix)) >>> 0, prefix: blockPrefix };
}

export function blockIndexOf(range: Cidr, blockPrefix: number, ip: number): number {
  return Math.floor((ip - range.base) / 2 ** (32 - blockPrefix));
}

/** The subnet's (or range's) network and broadcast addresses: never allocated. */
export function isReserved(range: Cidr, ip: number): boolean {
  return ip === range.base || ip === range.base + cidrSize(range) - 1;
}

/** Do two CIDRs share any address? */
export function overlaps(a: Cidr, b: Cidr): boolean {
  const aEnd = a.base + cidrSize(a) - 1;
  const bEnd = b.base + cidrSize(b) - 1;
  return a.base <= bEnd && b.base <= aEnd;
}

/** Addresses of the block that can be handed out. */
export function usableCount(range: Cidr, block: Cidr): number {
  let n = cidrSize(block);
  if (isReserved(range, block.base)) n--;
  if (isReserved(range, block.base + cidrSize(block) - 1)) n--;
  return n;
}

/**
 * First block index not in `taken`, searching from `start` and wrapping (default: the
 * lowest); undefined when every block is taken.
 */
export function lowestFreeBlock(
  range: Cidr,
  blockPrefix: number,
  taken: ReadonlySet<number>,
  start = 0,
): number | undefined {
  const n = blockCount(range, blockPrefix);
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n;
    if (!taken.has(i)) return i;
  }
  return undefined;
}

/**
 * A block index derived from the peer name (FNV-1a of its text). Hosts on separate
 * embedded stores cannot coordinate; starting each at its own place keeps them apart
 * (two hosts collide with probability 1/blockCount), as the pre-store allocator did.
 */
export function hashedBlockIndex(range: Cidr, blockPrefix: number, peerName: string): number {
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(peerName)) {
    h ^= ch;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % blockCount(range, blockPrefix);
}

/**
 * First address of `block`, from `hint` onwards and wrapping, that is neither reserved
 * nor in `busy`. Starting after the last one handed out spreads reuse of released
 * addresses (an address released a moment ago is the last to be given again).
 */
export function firstFreeInBlock(
  range: Cidr,
  block: Cidr,
  busy: (ip: number) => boolean,
  hint = 0,
): number | undefined {
  const size = cidrSize(block);
  for (let k = 0; k < size; k++) {
    const ip = block.base + ((hint + k) % size);
    if (!isReserved(range, ip) && !busy(ip)) return ip;
  }
  return undefined;
}
