/** What the sleeve keeps per peer it has a control connection to. */
import type { PeerName } from '../../net/peername';
import type { DataCrypto } from './peer-crypto';
import type { Reassembler } from './reassembler';

/** Heartbeat bookkeeping of one peer's path, owned by PathLiveness. */
export interface PathState {
  /** clock.now() of the last HEARTBEAT_ACK; 0 before the first. */
  lastAckAt: number;
  /** clock.wallNow() of the last HEARTBEAT_ACK, for status; 0 before the first. */
  lastAckWall: number;
  heartbeatSeq: number;
  /** clock.now() of the last HEARTBEAT sent: RTTs below a millisecond matter here. */
  heartbeatSentAt: number;
  heartbeatsSent: number;
  heartbeatsAnswered: number;
  rttMs: number | undefined;
}

export interface SleevePeer {
  readonly name: PeerName;
  /** Sealing state; undefined when this peer's datagrams go in clear. */
  crypto: DataCrypto | undefined;
  /** Bytes in front of the first record of a FRAMES datagram: 12 clear, 38 sealed. */
  prefix: number;
  ip: number;
  port: number;
  /** Largest UDP payload towards this peer. */
  pmtu: number;
  /** Transmit slot being filled for this peer in the current batch, or -1 (TransmitArena). */
  txSlot: number;
  /** Heartbeats answered within the dead interval (set by PathLiveness only). */
  up: boolean;
  readonly path: PathState;
  readonly reassembler: Reassembler;
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
}
