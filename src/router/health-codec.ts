/**
 * HEALTH control message body: one host's report of its own data-path view of every other
 * peer (up, RTT, loss, path MTU, data path, encryption, why it is down) and of the
 * containers it hosts (for names in trace, flows and the status page). Each host sends
 * its own report every second; others store the newest per owner and flood it on.
 * Byte-by-byte description in docs/PROTOCOL.md ("Health reports").
 *
 * decodeHealthReport treats its input as hostile: any malformed input ends in a
 * HealthDecodeError, never in another exception and never in a partial result.
 */
import { NO_PEER, writePeerName, type PeerName } from '../net/peername';
import { ByteReader } from '../net/reader';

export const HEALTH_FORMAT_VERSION = 1;
export const MAX_HEALTH_PEERS = 4096;
export const MAX_HEALTH_ENDPOINTS = 4096;
export const MAX_HEALTH_STRING = 255;

/** "unknown" markers on the wire. */
const RTT_UNKNOWN = 0xffffffff;
const LOSS_UNKNOWN = 0xffff;
const SILENT_NEVER = 0xffffffff;

const FLAG_UP = 0x01;
const FLAG_CONNECTED = 0x02;
const FLAG_FASTDP = 0x04;
const FLAG_ENCRYPTED = 0x08;
const KNOWN_FLAGS = FLAG_UP | FLAG_CONNECTED | FLAG_FASTDP | FLAG_ENCRYPTED;

const HEADER_FIXED = 1 + 6 + 8 + 4 + 1; // version, owner, uid, seq, nickname length
const COUNTS = 2 + 2;
const VIEW_FIXED = 6 + 1 + 2 + 4 + 2 + 4 + 1; // peer, flags, pmtu, rtt, loss, silent, reason length
const ENDPOINT_FIXED = 4 + 4 + 6 + 1 + 1 + 1; // network id, ip, mac, three string lengths

/** What one host sees of its data path towards one other peer. */
export interface HealthPeerView {
  peer: PeerName;
  /** The data path carries heartbeats both ways (sleeve, or fastdp probes). */
  up: boolean;
  /** A ready control connection exists. */
  connected: boolean;
  datapath: 'sleeve' | 'fastdp';
  encrypted: boolean;
  /** Largest UDP payload towards the peer; 0 when unknown. */
  pmtu: number;
  /** Heartbeat round trip in microseconds; undefined when never measured. */
  rttUs: number | undefined;
  /** Heartbeats unanswered over the last window, per mille; undefined without heartbeats. */
  lossPermille: number | undefined;
  /** Milliseconds since the last heartbeat answer; undefined when none ever came. */
  silentMs: number | undefined;
  /** Why the path is not up ("" when it is). */
  reason: string;
}

/** A container the reporting host carries. */
export interface HealthEndpoint {
  id: string;
  name: string;
  network: string;
  networkId: number;
  /** IPv4 as an unsigned 32-bit number. */
  ip: number;
  /** 48-bit MAC as a number (like a PeerName). */
  mac: number;
}

export interface HostReport {
  owner: PeerName;
  nickname: string;
  /** The owner's incarnation (the router's uid). */
  uid: bigint;
  /** Bumped by the owner for every report it sends. */
  seq: number;
  peers: HealthPeerView[];
  endpoints: HealthEndpoint[];
}

export class HealthDecodeError extends Error {
  readonly code = 'EWEAVETS_HEALTH_DECODE';
  constructor(readonly reason: string) {
    super(`malformed health report: ${reason}`);
    this.name = 'HealthDecodeError';
  }
}

function strLen(what: string, s: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > MAX_HEALTH_STRING) throw new RangeError(`health: ${what} is ${n} bytes, limit ${MAX_HEALTH_STRING}`);
  return n;
}

function checkUint(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`health: ${what} ${v} outside 0..${max}`);
}

/** Bytes encodeHealthReport(r) produces. Throws RangeError when a limit is exceeded. */
export function encodingLength(r: HostReport): number {
  if (r.peers.length > MAX_HEALTH_PEERS)
    throw new RangeError(`health: ${r.peers.length} peers, limit ${MAX_HEALTH_PEERS}`);
  if (r.endpoints.length > MAX_HEALTH_ENDPOINTS) {
    throw new RangeError(`health: ${r.endpoints.length} endpoints, limit ${MAX_HEALTH_ENDPOINTS}`);
  }
  let n = HEADER_FIXED + strLen('nickname', r.nickname) + COUNTS;
  for (const v of r.peers) n += VIEW_FIXED + strLen('reason', v.reason);
  for (const e of r.endpoints)
    n +=
      ENDPOINT_FIXED +
      strLen('endpoint id', e.id) +
      strLen('endpoint name', e.name) +
      strLen('network name', e.network);
  return n;
}

/** Encode into buf at offset (encodingLength bytes free), or into a new Buffer. Returns the bytes written. */
export function encodeHealthReport(r: HostReport, buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(r);
  if (r.owner === NO_PEER) throw new RangeError('health: report with the empty owner name');
  checkUint('seq', r.seq, 0xffffffff);
  if (buf === undefined) {
    buf = Buffer.allocUnsafe(len);
    offset = 0;
  } else if (offset < 0 || offset + len > buf.length) {
    throw new RangeError(`health: need ${len} bytes at offset ${offset}, buffer has ${buf.length}`);
  }
  let o = offset;
  o = buf.writeUInt8(HEALTH_FORMAT_VERSION, o);
  writePeerName(buf, o, r.owner);
  o += 6;
  o = buf.writeBigUInt64BE(BigInt.asUintN(64, r.uid), o);
  o = buf.writeUInt32BE(r.seq, o);
  o = writeString(buf, o, r.nickname);
  o = buf.writeUInt16BE(r.peers.length, o);
  o = buf.writeUInt16BE(r.endpoints.length, o);
  for (const v of r.peers) {
    if (v.peer === NO_PEER) throw new RangeError('health: view of the empty peer name');
    checkUint('pmtu', v.pmtu, 0xffff);
    if (v.rttUs !== undefined) checkUint('rtt', v.rttUs, RTT_UNKNOWN - 1);
    if (v.lossPermille !== undefined) checkUint('loss', v.lossPermille, 1000);
    if (v.silentMs !== undefined) checkUint('silent', v.silentMs, SILENT_NEVER - 1);
    writePeerName(buf, o, v.peer);
    o += 6;
    const flags =
      (v.up ? FLAG_UP : 0) |
      (v.connected ? FLAG_CONNECTED : 0) |
      (v.datapath === 'fastdp' ? FLAG_FASTDP : 0) |
      (v.encrypted ? FLAG_ENCRYPTED : 0);
    o = buf.writeUInt8(flags, o);
    o = buf.writeUInt16BE(v.pmtu, o);
    o = buf.writeUInt32BE(v.rttUs ?? RTT_UNKNOWN, o);
    o = buf.writeUInt16BE(v.lossPermille ?? LOSS_UNKNOWN, o);
    o = buf.writeUInt32BE(v.silentMs ?? SILENT_NEVER, o);
    o = writeString(buf, o, v.reason);
  }
  for (const e of r.endpoints) {
    checkUint('network id', e.networkId, 0xffffff);
    checkUint('ip', e.ip, 0xffffffff);
    checkUint('mac', e.mac, 0xffffffffffff);
    o = buf.writeUInt32BE(e.networkId, o);
    o = buf.writeUInt32BE(e.ip, o);
    buf.writeUIntBE(e.mac, o, 6);
    o += 6;
    o = writeString(buf, o, e.id);
    o = writeString(buf, o, e.name);
    o = writeString(buf, o, e.network);
  }
  return buf.subarray(offset, o);
}

function writeString(buf: Buffer, o: number, s: string): number {
  const n = buf.write(s, o + 1, 'utf8');
  buf[o] = n;
  return o + 1 + n;
}

/** Decode one whole report (every byte from offset belongs to it). */
export function decodeHealthReport(buf: Buffer, offset = 0): HostReport {
  const r = new ByteReader(buf, offset, (reason) => new HealthDecodeError(reason));
  const version = r.u8('format version');
  if (version !== HEALTH_FORMAT_VERSION) throw new HealthDecodeError(`unsupported format version ${version}`);
  const owner = r.peerName('owner');
  if (owner === NO_PEER) throw new HealthDecodeError('empty owner name');
  const uid = r.u64('uid');
  const seq = r.u32('seq');
  const nickname = r.str8('nickname', false);
  const peerCount = r.u16('peer count');
  const endpointCount = r.u16('endpoint count');
  if (peerCount > MAX_HEALTH_PEERS)
    throw new HealthDecodeError(`peer count ${peerCount} over limit ${MAX_HEALTH_PEERS}`);
  if (endpointCount > MAX_HEALTH_ENDPOINTS)
    throw new HealthDecodeError(`endpoint count ${endpointCount} over limit ${MAX_HEALTH_ENDPOINTS}`);
  if (peerCount * VIEW_FIXED + endpointCount * ENDPOINT_FIXED > r.remaining()) {
    throw new HealthDecodeError(`truncated: ${peerCount} peers and ${endpointCount} endpoints cannot fit`);
  }
  const seen = new Set<PeerName>();
  const peers: HealthPeerView[] = [];
  for (let i = 0; i < peerCount; i++) {
    const peer = r.peerName('peer');
    if (peer === NO_PEER) throw new HealthDecodeError(`view ${i}: empty peer name`);
    if (peer === owner) throw new HealthDecodeError(`view ${i}: the owner's view of itself`);
    if (seen.has(peer)) throw new HealthDecodeError(`view ${i}: duplicate peer`);
    seen.add(peer);
    const flags = r.u8('flags');
    if ((flags & ~KNOWN_FLAGS) !== 0) throw new HealthDecodeError(`view ${i}: unknown flags 0x${flags.toString(16)}`);
    const pmtu = r.u16('pmtu');
    const rtt = r.u32('rtt');
    const loss = r.u16('loss');
    if (loss !== LOSS_UNKNOWN && loss > 1000)
      throw new HealthDecodeError(`view ${i}: loss ${loss} over 1000 per mille`);
    const silent = r.u32('silent');
    const reason = r.str8('reason', false);
    peers.push({
      peer,
      up: (flags & FLAG_UP) !== 0,
      connected: (flags & FLAG_CONNECTED) !== 0,
      datapath: (flags & FLAG_FASTDP) !== 0 ? 'fastdp' : 'sleeve',
      encrypted: (flags & FLAG_ENCRYPTED) !== 0,
      pmtu,
      rttUs: rtt === RTT_UNKNOWN ? undefined : rtt,
      lossPermille: loss === LOSS_UNKNOWN ? undefined : loss,
      silentMs: silent === SILENT_NEVER ? undefined : silent,
      reason,
    });
  }
  const endpoints: HealthEndpoint[] = [];
  for (let i = 0; i < endpointCount; i++) {
    const networkId = r.u32('network id');
    if (networkId > 0xffffff) throw new HealthDecodeError(`endpoint ${i}: network id ${networkId} over 24 bits`);
    const ip = r.u32('ip');
    const mac = r.u48('mac');
    const id = r.str8('endpoint id', false);
    if (id === '') throw new HealthDecodeError(`endpoint ${i}: empty id`);
    const name = r.str8('endpoint name', false);
    const network = r.str8('network name', false);
    endpoints.push({ id, name, network, networkId, ip, mac });
  }
  if (r.remaining() !== 0) throw new HealthDecodeError(`${r.remaining()} trailing bytes`);
  return { owner, nickname, uid, seq, peers, endpoints };
}
