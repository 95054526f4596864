/**
 * Block arithmetic and the IPAM key layout in the store. Pure: the allocator and the
 * unit tests share it.
 *
 * The range is cut into equal blocks of `blockPrefix` (default /26: 64 addresses). All
 * blocks lie in one L2 subnet (the range), so a block's first and last addresses are
 * ordinary host addresses; only the range's own network and broadcast addresses are
 * never handed out.
 *
 * Keys (under the store's prefix):
 *   ipam/config                        {range, blockPrefix}              created once
 *   ipam/blocks/<network>/<base hex>   {owner, nickname}                 a host's block
 *   ipam/addrs/<network>/<ip hex>      {id, ifname, host}                one allocation
 *   ipam/handles/<id>/<ifname>         {network, ip, host}               idempotency index
 *   hosts/<peer name>                  {name, nickname, address}         leased: liveness
 * Addresses are 8 lower-case hex digits so keys sort in address order and a block's
 * addresses share a key prefix (to the nearest 4 bits).
 */
import { cidrSize, formatIpv4, type Cidr } from './cidr';

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
}

export interface AddrRecord {
  id: string;
  ifname: string;
  /** Peer name of the host that holds it. */
  host: string;
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

export function blockKey(network: string, base: number): string {
  return `${BLOCKS_PREFIX}${network}/${hex8(base)}`;
}

export function addrKey(network: string, ip: number): string {
  return `${ADDRS_PREFIX}${network}/${hex8(ip)}`;
}

export function handleKey(id: string, ifname: string): string {
  return `${HANDLES_PREFIX}${id}/${ifname}`;
}

export function hostKey(name: string): string {
  return `${HOSTS_PREFIX}${name}`;
}

/** Key prefix covering every address of the block (and, below /4 alignment, neighbours: filter). */
export function addrPrefixOfBlock(network: string, block: Cidr): string {
  return `${ADDRS_PREFIX}${network}/${hex8(block.base).slice(0, Math.floor(block.prefix / 4))}`;
}

/** Parse the address out of an ipam/addrs or ipam/blocks key; undefined if it is not one. */
export function parseAddrKey(key: string): { network: string; ip: number } | undefined {
  const m = /^ipam\/(?:addrs|blocks)\/([^/]+)\/([0-9a-f]{8})$/.exec(key);
  if (!m) return undefined;
  return { network: m[1]!, ip: parseInt(m[2]!, 16) };
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

/** The range's network and broadcast addresses: never allocated. */
export function isReserved(range: Cidr, ip: number): boolean {
  return ip === range.base || ip === range.base + cidrSize(range) - 1;
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
export function lowestFreeBlock(range: Cidr, blockPrefix: number, taken: ReadonlySet<number>, start = 0): number | undefined {
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
export function firstFreeInBlock(range: Cidr, block: Cidr, busy: (ip: number) => boolean, hint = 0): number | undefined {
  const size = cidrSize(block);
  for (let k = 0; k < size; k++) {
    const ip = block.base + ((hint + k) % size);
    if (!isReserved(range, ip) && !busy(ip)) return ip;
  }
  return undefined;
}
