/**
 * Topology gossip wire format: a list of PeerEntry, big-endian, length-prefixed,
 * versioned by its first byte. Byte-by-byte description in docs/protocol-gossip.md.
 *
 * decodeGossip treats its input as hostile: any malformed input ends in a
 * GossipDecodeError, never in another exception and never in a partial result.
 */
import { isIP } from 'node:net';
import { writePeerName, NO_PEER } from '../net/peername';
import { ByteReader } from '../net/reader';
import type { PeerConnectionEdge, PeerEntry } from './topology';

export const GOSSIP_FORMAT_VERSION = 1;
export const MAX_GOSSIP_PEERS = 4096;
export const MAX_GOSSIP_EDGES = 1024;
/** Nicknames and addresses carry a one-byte length. */
export const MAX_GOSSIP_STRING = 255;
/**
 * Highest version an entry may carry. Far below 2^53 (a peer bumps its version a few
 * times per connection change, so honest peers never come near), so that a peer that
 * must outrank a claim about itself can always add one and stay exactly representable
 * and encodable; see Topology.merge for what happens at the ceiling.
 */
export const MAX_GOSSIP_VERSION = 2 ** 52;

const FLAG_OUTBOUND = 0x01;
const FLAG_ESTABLISHED = 0x02;
const KNOWN_FLAGS = FLAG_OUTBOUND | FLAG_ESTABLISHED;

const HEADER_LEN = 1 + 2; // format version, peer count
const PEER_FIXED_LEN = 6 + 8 + 8 + 1 + 2; // name, uid, version, nickname len, edge count
const EDGE_FIXED_LEN = 6 + 1 + 1; // peer, flags, address len
const U64_MAX = (1n << 64n) - 1n;

export class GossipDecodeError extends Error {
  readonly code = 'EWEAVETS_GOSSIP_DECODE';
  constructor(readonly reason: string) {
    super(`malformed gossip: ${reason}`);
    this.name = 'GossipDecodeError';
  }
}

function checkString(what: string, s: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > MAX_GOSSIP_STRING) throw new RangeError(`gossip: ${what} is ${n} bytes, limit ${MAX_GOSSIP_STRING}`);
  return n;
}

/** C0 controls and DEL: never part of a name or an address, and a hazard in logs. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point of this pattern
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Why a nickname cannot go into gossip, or undefined when it can. */
export function nicknameProblem(nickname: string): string | undefined {
  if (CONTROL_CHARS.test(nickname)) return 'nickname contains control characters';
  return undefined;
}

/**
 * An edge address: "IPv4:port" or "[IPv6]:port", port 1-65535 in plain decimal. This is
 * what the router dials for discovery, so nothing else may get in.
 */
export function parseEdgeAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([1-9][0-9]{0,4})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] !== undefined) return isIP(m[1]) === 6 ? { host: m[1], port } : undefined;
  return isIP(m[2]!) === 4 ? { host: m[2]!, port } : undefined;
}

/** "ip:port" with brackets around an IPv6 address: the form parseEdgeAddress reads. */
export function formatEdgeAddress(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Every semantic rule decodeGossip enforces, for one entry; the first broken one, or undefined. */
export function entryProblem(e: PeerEntry): string | undefined {
  if (e.name === NO_PEER) return 'empty peer name';
  if (!Number.isSafeInteger(e.version) || e.version < 1 || e.version > MAX_GOSSIP_VERSION) {
    return `version ${e.version} outside 1..${MAX_GOSSIP_VERSION}`;
  }
  const nick = nicknameProblem(e.nickname);
  if (nick !== undefined) return nick;
  const peers = new Set<number>();
  for (const c of e.connections) {
    if (c.peer === NO_PEER) return 'connection with the empty peer name';
    if (c.peer === e.name) return 'connection to itself';
    if (peers.has(c.peer)) return 'two connections to the same peer';
    peers.add(c.peer);
    if (parseEdgeAddress(c.address) === undefined)
      return `connection address ${JSON.stringify(c.address)} is not ip:port (port 1-65535)`;
  }
  return undefined;
}

/** Bytes encodeGossip(entries) will produce. Throws RangeError when a limit is exceeded. */
export function encodingLength(entries: readonly PeerEntry[]): number {
  if (entries.length > MAX_GOSSIP_PEERS) {
    throw new RangeError(`gossip: ${entries.length} peers, limit ${MAX_GOSSIP_PEERS}`);
  }
  let len = HEADER_LEN;
  for (const e of entries) {
    if (e.connections.length > MAX_GOSSIP_EDGES) {
      throw new RangeError(`gossip: ${e.connections.length} connections, limit ${MAX_GOSSIP_EDGES}`);
    }
    len += PEER_FIXED_LEN + checkString('nickname', e.nickname);
    for (const c of e.connections) len += EDGE_FIXED_LEN + checkString('address', c.address);
  }
  return len;
}

/**
 * Encode entries, into buf at offset when given (it must have encodingLength bytes free),
 * else into a new Buffer. Returns the buffer written (the slice written when buf is given).
 */
export function encodeGossip(entries: readonly PeerEntry[], buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(entries);
  if (buf === undefined) {
    buf = Buffer.allocUnsafe(len);
    offset = 0;
  } else if (offset < 0 || offset + len > buf.length) {
    throw new RangeError(`gossip: need ${len} bytes at offset ${offset}, buffer has ${buf.length}`);
  }
  let o = offset;
  o = buf.writeUInt8(GOSSIP_FORMAT_VERSION, o);
  o = buf.writeUInt16BE(entries.length, o);
  for (const e of entries) {
    // Never send what a receiver would refuse: it would close the connection over it.
    const problem = entryProblem(e);
    if (problem !== undefined) throw new RangeError(`gossip: entry ${e.name.toString(16)}: ${problem}`);
    writePeerName(buf, o, e.name);
    o += 6;
    o = buf.writeBigUInt64BE(e.uid & U64_MAX, o);
    o = buf.writeBigUInt64BE(BigInt(e.version), o);
    o = writeString(buf, o, e.nickname);
    o = buf.writeUInt16BE(e.connections.length, o);
    for (const c of e.connections) {
      writePeerName(buf, o, c.peer);
      o += 6;
      o = buf.writeUInt8((c.outbound ? FLAG_OUTBOUND : 0) | (c.established ? FLAG_ESTABLISHED : 0), o);
      o = writeString(buf, o, c.address);
    }
  }
  return buf.subarray(offset, o);
}

function writeString(buf: Buffer, o: number, s: string): number {
  const n = buf.write(s, o + 1, 'utf8');
  buf[o] = n;
  return o + 1 + n;
}

/** Decode a whole gossip message (every byte of buf from offset must belong to it). */
export function decodeGossip(buf: Buffer, offset = 0): PeerEntry[] {
  const r = new ByteReader(buf, offset, (reason) => new GossipDecodeError(reason));
  const format = r.u8('format version');
  if (format !== GOSSIP_FORMAT_VERSION) throw new GossipDecodeError(`unsupported format version ${format}`);
  const count = r.u16('peer count');
  if (count > MAX_GOSSIP_PEERS) throw new GossipDecodeError(`peer count ${count} over limit ${MAX_GOSSIP_PEERS}`);
  // Cheap sanity check before allocating anything per peer.
  if (count * PEER_FIXED_LEN > r.remaining()) throw new GossipDecodeError(`truncated: ${count} peers cannot fit`);
  const seen = new Set<number>();
  const entries: PeerEntry[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.peerName('peer name');
    if (name === NO_PEER) throw new GossipDecodeError(`peer ${i}: empty peer name`);
    if (seen.has(name)) throw new GossipDecodeError(`peer ${i}: duplicate peer name`);
    seen.add(name);
    const uid = r.u64('uid');
    const v = r.u64('version');
    if (v < 1n || v > BigInt(MAX_GOSSIP_VERSION))
      throw new GossipDecodeError(`peer ${i}: version ${v} outside 1..${MAX_GOSSIP_VERSION}`);
    const nickname = r.str8('nickname', true);
    const edgeCount = r.u16('connection count');
    if (edgeCount > MAX_GOSSIP_EDGES) {
      throw new GossipDecodeError(`peer ${i}: connection count ${edgeCount} over limit ${MAX_GOSSIP_EDGES}`);
    }
    if (edgeCount * EDGE_FIXED_LEN > r.remaining()) {
      throw new GossipDecodeError(`truncated: peer ${i}: ${edgeCount} connections cannot fit`);
    }
    const connections: PeerConnectionEdge[] = [];
    for (let j = 0; j < edgeCount; j++) {
      const peer = r.peerName('connection peer');
      if (peer === NO_PEER) throw new GossipDecodeError(`peer ${i} connection ${j}: empty peer name`);
      const flags = r.u8('connection flags');
      if ((flags & ~KNOWN_FLAGS) !== 0) {
        throw new GossipDecodeError(`peer ${i} connection ${j}: unknown flags 0x${flags.toString(16)}`);
      }
      const address = r.str8('connection address', true);
      connections.push({
        peer,
        address,
        outbound: (flags & FLAG_OUTBOUND) !== 0,
        established: (flags & FLAG_ESTABLISHED) !== 0,
      });
    }
    const entry: PeerEntry = { name, nickname, uid, version: Number(v), connections };
    // Semantics as well as syntax: an entry the router could not act on (an address it
    // cannot dial, an edge to itself) refuses the whole message, before anyone relays it.
    const problem = entryProblem(entry);
    if (problem !== undefined) throw new GossipDecodeError(`peer ${i}: ${problem}`);
    entries.push(entry);
  }
  if (r.remaining() !== 0) throw new GossipDecodeError(`${r.remaining()} trailing bytes`);
  return entries;
}
