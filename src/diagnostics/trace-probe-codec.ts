/**
 * Trace probe frames (`weavets trace`): a REQUEST from the tracing host to the far host
 * and its REPLY back, each carried as one sleeve record on the reserved probe network
 * (PROBE_NETWORK_ID), so it takes the same next hops, sockets, sealing and relays as a
 * container's unicast frame. Specified in docs/PROTOCOL.md ("Trace probes").
 * Pure functions over Buffer.
 */
import { NO_PEER, readPeerName, writePeerName, type PeerName } from '../net/peername';

export { PROBE_NETWORK_ID } from '../router/overlay';
export const TRACE_PROBE_MAGIC = 0x57545052; // "WTPR"
export const TRACE_PROBE_LENGTH = 24;

export const enum TraceProbeKind {
  Request = 1,
  Reply = 2,
}

export interface TraceProbe {
  kind: TraceProbeKind;
  /** Per trace, random: tells this trace's answers from another's. */
  id: number;
  seq: number;
  /** The host that sends this frame, and the one it is for. */
  from: PeerName;
  to: PeerName;
}

/** Why a probe frame was refused; the data path counts drops by these names. */
export type TraceProbeError = 'probe_length' | 'probe_magic' | 'probe_kind' | 'probe_flags' | 'probe_peer';

export function encodeTraceProbe(p: TraceProbe, buf?: Buffer, offset = 0): Buffer {
  if (p.kind !== TraceProbeKind.Request && p.kind !== TraceProbeKind.Reply)
    throw new RangeError(`trace probe: kind ${String(p.kind)}`);
  if (!Number.isInteger(p.id) || p.id < 0 || p.id > 0xffffffff) throw new RangeError(`trace probe: id ${p.id}`);
  if (!Number.isInteger(p.seq) || p.seq < 0 || p.seq > 0xffff) throw new RangeError(`trace probe: seq ${p.seq}`);
  if (p.from === NO_PEER || p.to === NO_PEER) throw new RangeError('trace probe: empty peer name');
  const out = buf ?? Buffer.alloc(offset + TRACE_PROBE_LENGTH);
  if (out.length - offset < TRACE_PROBE_LENGTH) throw new RangeError('trace probe: buffer too small');
  out.writeUInt32BE(TRACE_PROBE_MAGIC, offset);
  out.writeUInt8(p.kind, offset + 4);
  out.writeUInt8(0, offset + 5);
  out.writeUInt16BE(p.seq, offset + 6);
  out.writeUInt32BE(p.id, offset + 8);
  writePeerName(out, offset + 12, p.from);
  writePeerName(out, offset + 18, p.to);
  return buf === undefined ? out : out.subarray(offset, offset + TRACE_PROBE_LENGTH);
}

/** Decode one probe frame occupying all of buf[offset..]; an error name when malformed. */
export function decodeTraceProbe(buf: Buffer, offset = 0): TraceProbe | TraceProbeError {
  if (!Number.isInteger(offset) || offset < 0 || buf.length - offset !== TRACE_PROBE_LENGTH) return 'probe_length';
  if (buf.readUInt32BE(offset) !== TRACE_PROBE_MAGIC) return 'probe_magic';
  const kind = buf.readUInt8(offset + 4);
  if (kind !== TraceProbeKind.Request && kind !== TraceProbeKind.Reply) return 'probe_kind';
  if (buf.readUInt8(offset + 5) !== 0) return 'probe_flags';
  const from = readPeerName(buf, offset + 12);
  const to = readPeerName(buf, offset + 18);
  if (from === NO_PEER || to === NO_PEER) return 'probe_peer';
  return { kind, seq: buf.readUInt16BE(offset + 6), id: buf.readUInt32BE(offset + 8), from, to };
}
