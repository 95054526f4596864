/**
 * Wire format of the mesh store's gossip: the body of a STORE control message (type 9,
 * docs/PROTOCOL.md "STORE"). Pure functions over Buffer, no state; every field is
 * validated on decode, so a malformed message throws MeshDecodeError and is dropped.
 *
 * Three kinds:
 *   ENTRIES (1): versioned key/value entries, each owned by the peer that wrote it;
 *   ACK     (2): a peer's answer to a claim (compare-and-create) of another peer;
 *   FORGET  (3): drop a peer's entries up to a version (rmpeer).
 */
import { formatPeerName, isPeerNameText, parsePeerName, writePeerName } from '../net/peername';
import { ByteReader } from '../net/reader';

export const MESH_FORMAT_ENTRIES = 1;
export const MESH_FORMAT_ACK = 2;
export const MESH_FORMAT_FORGET = 3;

/** Keys are short paths; values are small JSON documents. Anything bigger is refused. */
export const MAX_MESH_KEY_BYTES = 1024;
export const MAX_MESH_VALUE_BYTES = 64 * 1024;
export const MAX_MESH_ENTRIES = 65535;
/** Versions are milliseconds-based counters: they must stay exact as JS numbers. */
export const MAX_MESH_VERSION = Number.MAX_SAFE_INTEGER;

export type MeshEntryState = 'held' | 'claim' | 'gone';
const STATE_CODES: Record<MeshEntryState, number> = { held: 0, claim: 1, gone: 2 };
const STATES: MeshEntryState[] = ['held', 'claim', 'gone'];
const FLAG_OVER = 0x01;

/** An entry about one key, written by `owner`. Only the owner ever changes it. */
export interface MeshEntry {
  /** Peer name text of the writer, "7e:21:0a:b4:19:c2". */
  owner: string;
  key: string;
  /** Bumped by the owner on every change of this entry; the greater version wins a merge. */
  version: number;
  /** held: in force; claim: a compare-and-create waiting for confirmation; gone: deleted. */
  state: MeshEntryState;
  /** "" when gone. */
  value: string;
  /** This entry replaces another owner's entry for the key, up to that owner's version. */
  over?: { owner: string; version: number };
}

export interface MeshAck {
  /** Peer whose claim this answers. */
  claimant: string;
  /** Peer answering. */
  by: string;
  key: string;
  version: number;
  ok: boolean;
}

export interface MeshForget {
  owner: string;
  upTo: number;
  by: string;
}

export type MeshMessage =
  { kind: 'entries'; entries: MeshEntry[] } | { kind: 'ack'; ack: MeshAck } | { kind: 'forget'; forget: MeshForget };

export class MeshDecodeError extends Error {
  readonly code = 'EWEAVETS_MESH_DECODE';
  constructor(readonly reason: string) {
    super(`malformed store gossip: ${reason}`);
    this.name = 'MeshDecodeError';
  }
}

const PEER = 6;
const VERSION = 8;

function keyBytes(key: string): Buffer {
  const b = Buffer.from(key, 'utf8');
  const bad = keyProblem(key, b);
  if (bad) throw new RangeError(`store gossip: ${bad}`);
  return b;
}

function keyProblem(key: string, bytes: Buffer): string | undefined {
  if (bytes.length === 0) return 'empty key';
  if (bytes.length > MAX_MESH_KEY_BYTES) return `key of ${bytes.length} bytes exceeds ${MAX_MESH_KEY_BYTES}`;
  // eslint-disable-next-line no-control-regex -- refusing control characters in keys is the point of this pattern
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'key holds a control character';
  return undefined;
}

function valueBytes(value: string): Buffer {
  const b = Buffer.from(value, 'utf8');
  if (b.length > MAX_MESH_VALUE_BYTES)
    throw new RangeError(`store gossip: value of ${b.length} bytes exceeds ${MAX_MESH_VALUE_BYTES}`);
  return b;
}

function checkVersion(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 1)
    throw new RangeError(`store gossip: ${what} ${v} is not a version (1..2^53-1)`);
}

function checkPeer(name: string, what: string): void {
  if (!isPeerNameText(name) || parsePeerName(name) === 0)
    throw new RangeError(`store gossip: ${what} ${JSON.stringify(name)} is not a peer name`);
}

function entryLength(e: MeshEntry): number {
  return (
    PEER + VERSION + 1 + 1 + (e.over ? PEER + VERSION : 0) + 2 + keyBytes(e.key).length + 4 + valueBytes(e.value).length
  );
}

export function encodingLength(msg: MeshMessage): number {
  switch (msg.kind) {
    case 'entries':
      return 1 + 2 + msg.entries.reduce((n, e) => n + entryLength(e), 0);
    case 'ack':
      return 1 + PEER + PEER + VERSION + 1 + 2 + keyBytes(msg.ack.key).length;
    case 'forget':
      return 1 + PEER + VERSION + PEER;
  }
}

/** Encode one STORE body. Throws RangeError for a message that could not be decoded back. */
export function encode(msg: MeshMessage): Buffer {
  const out = Buffer.alloc(encodingLength(msg));
  let o = 0;
  switch (msg.kind) {
    case 'entries': {
      if (msg.entries.length > MAX_MESH_ENTRIES) throw new RangeError('store gossip: too many entries for one message');
      out.writeUInt8(MESH_FORMAT_ENTRIES, o++);
      out.writeUInt16BE(msg.entries.length, o);
      o += 2;
      for (const e of msg.entries) o = writeEntry(out, o, e);
      break;
    }
    case 'ack': {
      const a = msg.ack;
      checkPeer(a.claimant, 'claimant');
      checkPeer(a.by, 'acknowledger');
      checkVersion(a.version, 'version');
      const k = keyBytes(a.key);
      out.writeUInt8(MESH_FORMAT_ACK, o++);
      writePeerName(out, o, parsePeerName(a.claimant));
      writePeerName(out, o + PEER, parsePeerName(a.by));
      out.writeBigUInt64BE(BigInt(a.version), o + 2 * PEER);
      o += 2 * PEER + VERSION;
      out.writeUInt8(a.ok ? 1 : 0, o++);
      out.writeUInt16BE(k.length, o);
      k.copy(out, o + 2);
      break;
    }
    case 'forget': {
      const f = msg.forget;
      checkPeer(f.owner, 'owner');
      checkPeer(f.by, 'forgetter');
      checkVersion(f.upTo, 'version');
      out.writeUInt8(MESH_FORMAT_FORGET, o++);
      writePeerName(out, o, parsePeerName(f.owner));
      out.writeBigUInt64BE(BigInt(f.upTo), o + PEER);
      writePeerName(out, o + PEER + VERSION, parsePeerName(f.by));
      break;
    }
  }
  return out;
}

function writeEntry(out: Buffer, o: number, e: MeshEntry): number {
  checkPeer(e.owner, 'owner');
  checkVersion(e.version, 'version');
  if (e.state === 'gone' && e.value !== '') throw new RangeError('store gossip: a deleted entry carries no value');
  const k = keyBytes(e.key);
  const v = valueBytes(e.value);
  writePeerName(out, o, parsePeerName(e.owner));
  out.writeBigUInt64BE(BigInt(e.version), o + PEER);
  o += PEER + VERSION;
  out.writeUInt8(STATE_CODES[e.state], o++);
  out.writeUInt8(e.over ? FLAG_OVER : 0, o++);
  if (e.over) {
    checkPeer(e.over.owner, 'replaced owner');
    checkVersion(e.over.version, 'replaced version');
    if (e.over.owner === e.owner) throw new RangeError('store gossip: an entry cannot replace its own owner');
    writePeerName(out, o, parsePeerName(e.over.owner));
    out.writeBigUInt64BE(BigInt(e.over.version), o + PEER);
    o += PEER + VERSION;
  }
  out.writeUInt16BE(k.length, o);
  k.copy(out, o + 2);
  o += 2 + k.length;
  out.writeUInt32BE(v.length, o);
  v.copy(out, o + 4);
  return o + 4 + v.length;
}

/**
 * Entries as few ENTRIES messages as fit under `maxBytes` each (a full sync may be
 * bigger than one control frame).
 */
export function encodeEntriesChunked(entries: readonly MeshEntry[], maxBytes: number): Buffer[] {
  const out: Buffer[] = [];
  let batch: MeshEntry[] = [];
  let size = 3;
  for (const e of entries) {
    const n = entryLength(e);
    if (batch.length > 0 && (size + n > maxBytes || batch.length === MAX_MESH_ENTRIES)) {
      out.push(encode({ kind: 'entries', entries: batch }));
      batch = [];
      size = 3;
    }
    batch.push(e);
    size += n;
  }
  if (batch.length > 0) out.push(encode({ kind: 'entries', entries: batch }));
  return out;
}

function newReader(buf: Buffer): ByteReader {
  return new ByteReader(buf, 0, (reason) => new MeshDecodeError(reason));
}

/** A peer name, refused when zero, as text. */
function readPeer(r: ByteReader, what: string): string {
  const n = r.peerName(what);
  if (n === 0) throw new MeshDecodeError(`${what} is the zero peer name`);
  return formatPeerName(n);
}

function readVersion(r: ByteReader, what: string): number {
  const v = r.u64(what);
  if (v < 1n || v > BigInt(MAX_MESH_VERSION)) throw new MeshDecodeError(`${what} ${v} out of range`);
  return Number(v);
}

function readKey(r: ByteReader, len: number): string {
  const s = r.utf8(len, 'key', true);
  const bad = keyProblem(s, Buffer.from(s, 'utf8'));
  if (bad) throw new MeshDecodeError(bad);
  return s;
}

/** Decode one STORE body; throws MeshDecodeError for anything malformed. */
export function decode(buf: Buffer): MeshMessage {
  const r = newReader(buf);
  const kind = r.u8('kind');
  let msg: MeshMessage;
  switch (kind) {
    case MESH_FORMAT_ENTRIES: {
      const count = r.u16('entry count');
      const entries: MeshEntry[] = [];
      for (let i = 0; i < count; i++) entries.push(readEntry(r));
      msg = { kind: 'entries', entries };
      break;
    }
    case MESH_FORMAT_ACK: {
      const claimant = readPeer(r, 'claimant');
      const by = readPeer(r, 'acknowledger');
      const version = readVersion(r, 'version');
      const okByte = r.u8('ok');
      if (okByte > 1) throw new MeshDecodeError(`ack flag ${okByte} is neither 0 nor 1`);
      const klen = r.u16('key length');
      if (klen > MAX_MESH_KEY_BYTES) throw new MeshDecodeError(`key of ${klen} bytes exceeds ${MAX_MESH_KEY_BYTES}`);
      msg = { kind: 'ack', ack: { claimant, by, version, ok: okByte === 1, key: readKey(r, klen) } };
      break;
    }
    case MESH_FORMAT_FORGET: {
      const owner = readPeer(r, 'owner');
      const upTo = readVersion(r, 'version');
      msg = { kind: 'forget', forget: { owner, upTo, by: readPeer(r, 'forgetter') } };
      break;
    }
    default:
      throw new MeshDecodeError(`unknown kind ${kind}`);
  }
  if (r.remaining() !== 0) throw new MeshDecodeError(`${r.remaining()} trailing bytes`);
  return msg;
}

function readEntry(r: ByteReader): MeshEntry {
  const owner = readPeer(r, 'owner');
  const version = readVersion(r, 'version');
  const stateCode = r.u8('state');
  const state = STATES[stateCode];
  if (state === undefined) throw new MeshDecodeError(`unknown entry state ${stateCode}`);
  const flags = r.u8('flags');
  if ((flags & ~FLAG_OVER) !== 0) throw new MeshDecodeError(`unknown entry flags 0x${flags.toString(16)}`);
  let over: MeshEntry['over'];
  if (flags & FLAG_OVER) {
    const o = readPeer(r, 'replaced owner');
    if (o === owner) throw new MeshDecodeError('an entry replaces its own owner');
    over = { owner: o, version: readVersion(r, 'replaced version') };
  }
  const klen = r.u16('key length');
  if (klen > MAX_MESH_KEY_BYTES) throw new MeshDecodeError(`key of ${klen} bytes exceeds ${MAX_MESH_KEY_BYTES}`);
  const key = readKey(r, klen);
  const vlen = r.u32('value length');
  if (vlen > MAX_MESH_VALUE_BYTES) throw new MeshDecodeError(`value of ${vlen} bytes exceeds ${MAX_MESH_VALUE_BYTES}`);
  if (state === 'gone' && vlen !== 0) throw new MeshDecodeError('a deleted entry carries a value');
  const value = r.utf8(vlen, 'value', true);
  return over ? { owner, key, version, state, value, over } : { owner, key, version, state, value };
}
