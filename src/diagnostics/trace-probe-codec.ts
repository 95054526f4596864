/**
 * Trace probe frames (`weavets trace`): a REQUEST from the tracing host to the far host
 * and its REPLY back, each carried as one sleeve record on the reserved probe network
 * (PROBE_NETWORK_ID), so it takes the same next hops, sockets, sealing and relays as a
 * container's unicast frame. Specified in docs/PROTOCOL.md ("Trace probes").
 * Pure functions over Buffer.
 */
import { NO_PEER, writePeerName, type PeerName } from '../net/peername';
import { ByteReader } from '../net/reader';

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
  // The length is checked: the reader cannot run short here (its error would be a bug, not a bad probe).
  const r = new ByteReader(buf, offset, (reason) => new RangeError(`trace probe: ${reason}`));
  if (r.u32('magic') !== TRACE_PROBE_MAGIC) return 'probe_magic';
  const kind = r.u8('kind') as TraceProbeKind; // checked on the next line
  if (kind !== TraceProbeKind.Request && kind !== TraceProbeKind.Reply) return 'probe_kind';
  if (r.u8('flags') !== 0) return 'probe_flags';
  const seq = r.u16('seq');
  const id = r.u32('id');
  const from = r.peerName('from');
  const to = r.peerName('to');
  if (from === NO_PEER || to === NO_PEER) return 'probe_peer';
  return { kind, seq, id, from, to };
}
