/**
 * Control protocol wire format (TCP, port 6783). Specified in docs/PROTOCOL.md.
 *
 * Every message is framed: u32 length (of what follows), u8 type, body. Both sides send
 * HELLO first; nothing else is accepted until HELLO has been received and checked.
 * Pure functions over Buffer: no I/O, no state.
 */
import { writePeerName, type PeerName } from '../net/peername';
import { ByteReader } from '../net/reader';

export const HELLO_MAGIC = 0x57565453; // "WVTS"
/**
 * Version 2 added HEALTH (8) and STORE (9), which a version-1 peer closes a connection
 * on, so version 1 is refused at HELLO with both ranges named rather than dropped later.
 */
export const PROTOCOL_MIN_VERSION = 2;
export const PROTOCOL_MAX_VERSION = 2;
/** A control message never needs more than this; bigger frames are an attack or a bug. */
export const MAX_CONTROL_MESSAGE = 4 * 1024 * 1024;
export const FRAME_HEADER_LENGTH = 5;

export const enum MessageType {
  Hello = 1,
  Ping = 2,
  Pong = 3,
  Gossip = 4,
  Close = 5,
  /** Password handshake: the sender's CPace share (32 bytes). Sent in clear, once. */
  KeyExchange = 6,
  /** First sealed message each way: proof of the session keys (and so the password). */
  Finished = 7,
  /** A host's health report (src/router/health-codec.ts), flooded to every peer. */
  Health = 8,
  /** Mesh store gossip (src/store/mesh-codec.ts): entries, claim acks, forgets. */
  Store = 9,
}

/** FINISHED flags: the sender treats the receiver as inside a trusted subnet. */
export const FINISHED_FLAG_TRUSTED = 0x01;

export const HELLO_FLAG_PASSWORD = 0x0001;

/**
 * The CLOSE reason of a daemon stopping without reset: its kernel fast path stays in
 * place (it restarts or is upgraded), so peers keep their entries for it a while.
 */
export const CLOSE_REASON_KERNEL_PATH_KEPT = 'peer stopping; its kernel path stays in place';

export interface Hello {
  minVersion: number;
  maxVersion: number;
  flags: number;
  name: PeerName;
  /** Incarnation: random per daemon start, tells a restarted peer from a stale one. */
  uid: bigint;
  /** Port this peer listens on for control connections (for reconnects and discovery). */
  controlPort: number;
  /** Port this peer receives sleeve datagrams on. */
  dataPort: number;
  /** Per-connection ephemeral X25519 public key (32 bytes). */
  publicKey: Buffer;
  nickname: string;
}

export type ControlMessage =
  | { type: MessageType.Hello; hello: Hello }
  | { type: MessageType.Ping; nonce: bigint }
  | { type: MessageType.Pong; nonce: bigint }
  | { type: MessageType.Gossip; payload: Buffer }
  | { type: MessageType.Health; payload: Buffer }
  | { type: MessageType.Close; reason: string }
  | { type: MessageType.KeyExchange; share: Buffer }
  | { type: MessageType.Finished; tag: Buffer; flags: number }
  | { type: MessageType.Store; payload: Buffer };

export class ControlDecodeError extends Error {
  constructor(readonly reason: string) {
    super(`malformed control message: ${reason}`);
    this.name = 'ControlDecodeError';
  }
}

const HELLO_FIXED = 4 + 1 + 1 + 2 + 6 + 8 + 2 + 2 + 32 + 1; // 59 bytes before the nickname
const MAX_NICKNAME = 255;
const MAX_REASON = 1024;
/** Secretbox MAC in front of a sealed frame's type and body (see sealed-channel.ts). */
const SEALED_FRAME_OVERHEAD = 16;

/**
 * The largest frame (its declared length: type and body) a peer needs before the
 * handshake completes: a CLOSE with the longest reason, sealed (HELLO is at most 315,
 * KEYX 33, FINISHED 50). Anything longer before authentication is an attack: refused
 * before a byte of it is buffered.
 */
export const MAX_HANDSHAKE_MESSAGE = 1 + Math.max(HELLO_FIXED + MAX_NICKNAME, 2 + MAX_REASON) + SEALED_FRAME_OVERHEAD;

export function encodingLength(msg: ControlMessage): number {
  switch (msg.type) {
    case MessageType.Hello:
      return FRAME_HEADER_LENGTH + HELLO_FIXED + nicknameBytes(msg.hello.nickname).length;
    case MessageType.Ping:
    case MessageType.Pong:
      return FRAME_HEADER_LENGTH + 8;
    case MessageType.Gossip:
    case MessageType.Health:
    case MessageType.Store:
      return FRAME_HEADER_LENGTH + msg.payload.length;
    case MessageType.Close:
      return FRAME_HEADER_LENGTH + 2 + reasonBytes(msg.reason).length;
    case MessageType.KeyExchange:
      return FRAME_HEADER_LENGTH + 32;
    case MessageType.Finished:
      return FRAME_HEADER_LENGTH + 33;
  }
}

function nicknameBytes(nickname: string): Buffer {
  const b = Buffer.from(nickname, 'utf8');
  return b.length > MAX_NICKNAME ? b.subarray(0, MAX_NICKNAME) : b;
}

function reasonBytes(reason: string): Buffer {
  const b = Buffer.from(reason, 'utf8');
  return b.length > MAX_REASON ? b.subarray(0, MAX_REASON) : b;
}

/** Encode one framed message (header included). */
export function encode(msg: ControlMessage, buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(msg);
  const out = buf ?? Buffer.allocUnsafe(offset + len);
  if (out.length - offset < len) throw new RangeError('control encode: buffer too small');
  out.writeUInt32BE(len - 4, offset);
  out.writeUInt8(msg.type, offset + 4);
  const o = offset + FRAME_HEADER_LENGTH;
  switch (msg.type) {
    case MessageType.Hello: {
      const h = msg.hello;
      if (h.publicKey.length !== 32) throw new RangeError('hello: public key must be 32 bytes');
      const nick = nicknameBytes(h.nickname);
      out.writeUInt32BE(HELLO_MAGIC, o);
      out.writeUInt8(h.minVersion, o + 4);
      out.writeUInt8(h.maxVersion, o + 5);
      out.writeUInt16BE(h.flags, o + 6);
      writePeerName(out, o + 8, h.name);
      out.writeBigUInt64BE(h.uid, o + 14);
      out.writeUInt16BE(h.controlPort, o + 22);
      out.writeUInt16BE(h.dataPort, o + 24);
      h.publicKey.copy(out, o + 26);
      out.writeUInt8(nick.length, o + 58);
      nick.copy(out, o + 59);
      break;
    }
    case MessageType.Ping:
    case MessageType.Pong:
      out.writeBigUInt64BE(msg.nonce, o);
      break;
    case MessageType.Gossip:
    case MessageType.Health:
    case MessageType.Store:
      msg.payload.copy(out, o);
      break;
    case MessageType.Close: {
      const r = reasonBytes(msg.reason);
      out.writeUInt16BE(r.length, o);
      r.copy(out, o + 2);
      break;
    }
    case MessageType.KeyExchange:
      if (msg.share.length !== 32) throw new RangeError('key exchange share must be 32 bytes');
      msg.share.copy(out, o);
      break;
    case MessageType.Finished:
      if (msg.tag.length !== 32) throw new RangeError('finished tag must be 32 bytes');
      msg.tag.copy(out, o);
      out.writeUInt8(msg.flags, o + 32);
      break;
  }
  return out;
}

/**
 * Length of the next complete frame at buf[offset..], or 0 if more bytes are needed.
 * Throws ControlDecodeError when the declared length is impossible or over `limit`, so a
 * stream reader can close the connection instead of buffering an attacker's 4 GiB
 * (before authentication the reader passes MAX_HANDSHAKE_MESSAGE).
 */
export function frameLength(buf: Buffer, offset = 0, limit = MAX_CONTROL_MESSAGE): number {
  if (buf.length - offset < 4) return 0;
  const declared = buf.readUInt32BE(offset);
  if (declared < 1) throw new ControlDecodeError('empty frame');
  if (declared > limit) throw new ControlDecodeError(`frame of ${declared} bytes exceeds limit of ${limit}`);
  const total = declared + 4;
  return buf.length - offset >= total ? total : 0;
}

/** Decode exactly one framed message occupying buf[offset, offset+length). */
export function decode(buf: Buffer, offset = 0, length = buf.length - offset): ControlMessage {
  if (length < FRAME_HEADER_LENGTH) throw new ControlDecodeError('frame shorter than its header');
  const frame = buf.subarray(offset, offset + length);
  const r = new ByteReader(frame, 0, (reason) => new ControlDecodeError(reason));
  if (r.u32('frame length') + 4 !== length) throw new ControlDecodeError('frame length mismatch');
  // Checked by the switch: an unknown value falls to its default.
  const type = r.u8('message type') as MessageType;
  const bodyLen = r.remaining();
  switch (type) {
    case MessageType.Hello:
      return { type, hello: decodeHello(r) };
    case MessageType.Ping:
    case MessageType.Pong:
      if (bodyLen !== 8) throw new ControlDecodeError('ping/pong must carry 8 bytes');
      return { type, nonce: r.u64('nonce') };
    case MessageType.Gossip:
    case MessageType.Health:
      return { type, payload: Buffer.from(r.bytes(bodyLen, 'payload')) };
    case MessageType.Store:
      // The body is the mesh store's (src/store/mesh-codec.ts), which validates it.
      if (bodyLen < 1) throw new ControlDecodeError('store message is empty');
      return { type, payload: Buffer.from(r.bytes(bodyLen, 'payload')) };
    case MessageType.Close: {
      if (bodyLen < 2) throw new ControlDecodeError('close truncated');
      const n = r.u16('close reason length');
      if (n > MAX_REASON || bodyLen !== 2 + n) throw new ControlDecodeError('close length mismatch');
      return { type, reason: r.utf8(n, 'close reason', false) };
    }
    case MessageType.KeyExchange:
      if (bodyLen !== 32) throw new ControlDecodeError('key exchange must carry 32 bytes');
      return { type, share: Buffer.from(r.bytes(32, 'key share')) };
    case MessageType.Finished:
      if (bodyLen !== 33) throw new ControlDecodeError('finished must carry 33 bytes');
      return { type, tag: Buffer.from(r.bytes(32, 'finished tag')), flags: r.u8('finished flags') };
    default:
      throw new ControlDecodeError(`unknown message type ${String(type)}`);
  }
}

/** A HELLO body, the reader at its first byte and the body running to the end of the frame. */
function decodeHello(r: ByteReader): Hello {
  const bodyLen = r.remaining();
  if (bodyLen < HELLO_FIXED) throw new ControlDecodeError('hello truncated');
  if (r.u32('hello magic') !== HELLO_MAGIC) throw new ControlDecodeError('bad hello magic');
  const minVersion = r.u8('min version');
  const maxVersion = r.u8('max version');
  const flags = r.u16('hello flags');
  const name = r.peerName('hello peer name');
  const uid = r.u64('hello uid');
  const controlPort = r.u16('control port');
  const dataPort = r.u16('data port');
  const publicKey = Buffer.from(r.bytes(32, 'public key'));
  const nickLen = r.u8('nickname length');
  if (bodyLen !== HELLO_FIXED + nickLen) throw new ControlDecodeError('hello length mismatch');
  if (minVersion > maxVersion) throw new ControlDecodeError('hello version range inverted');
  if (name === 0) throw new ControlDecodeError('hello peer name is zero');
  // Port 0 would go into our gossip as the peer's address and be dialled by others.
  if (controlPort === 0 || dataPort === 0) throw new ControlDecodeError('hello port is zero');
  const raw = r.bytes(nickLen, 'nickname');
  const nickname = raw.toString('utf8');
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point of this pattern
  if (!Buffer.from(nickname, 'utf8').equals(raw) || /[\u0000-\u001f\u007f]/.test(nickname)) {
    throw new ControlDecodeError('hello nickname is not printable UTF-8');
  }
  return { minVersion, maxVersion, flags, name, uid, controlPort, dataPort, publicKey, nickname };
}

/** The highest version both ranges share, or undefined. */
export function negotiateVersion(
  a: { minVersion: number; maxVersion: number },
  b: { minVersion: number; maxVersion: number },
): number | undefined {
  const hi = Math.min(a.maxVersion, b.maxVersion);
  const lo = Math.max(a.minVersion, b.minVersion);
  return hi >= lo ? hi : undefined;
}
