/**
 * Path liveness: who is reachable over UDP. Each side sends HEARTBEAT to each peer every
 * 200 ms until answered, then every second; the receiver answers HEARTBEAT_ACK. A path is
 * up once an answer arrives and down after PATH_DEAD_MS without one (docs/PROTOCOL.md
 * "Liveness"); each change is reported to the router through DatapathEvents.pathChanged.
 * Answers also give the RTT and, with sealing, tell PeerCrypto which epoch the peer opens.
 */
import { numberToIpv4 } from '../../native';
import type { Logger } from '../../log';
import type { Clock } from '../../net/clock';
import type { PeerName } from '../../net/peername';
import type { DatapathEvents } from '../../router/overlay';
import {
  DatagramKind,
  HEARTBEAT_BODY_LENGTH,
  SEALED_HEADER_LENGTH,
  SEALED_INNER_KIND_OFFSET,
  readHeartbeatEcho,
  readHeartbeatReceiver,
  readHeartbeatSeq,
  writeDatagramHeader,
  writeHeartbeatBody,
} from './codec';
import { sendErrorReason, type DropCounter } from './drops';
import type { PathState, SleevePeer } from './peer';
import type { UdpRing } from './ports';

export const HEARTBEAT_INTERVAL_MS = 1000;
/** How often the liveness tick runs; also the heartbeat interval while a path is down. */
export const HEARTBEAT_FAST_MS = 200;
/** A path with no heartbeat answer for this long is down. */
export const PATH_DEAD_MS = 4000;

export interface PathLivenessDeps {
  self: PeerName;
  socket: UdpRing;
  drops: DropCounter;
  clock: Clock;
  events: DatapathEvents;
  log: Logger;
}

export function newPathState(): PathState {
  return {
    lastAckAt: 0,
    lastAckWall: 0,
    heartbeatSeq: 0,
    heartbeatSentAt: 0,
    heartbeatsSent: 0,
    heartbeatsAnswered: 0,
    rttMs: undefined,
  };
}

export class PathLiveness {
  private readonly controlBuf = Buffer.alloc(SEALED_HEADER_LENGTH + HEARTBEAT_BODY_LENGTH);

  constructor(private readonly deps: PathLivenessDeps) {}

  /** An authenticated HEARTBEAT or HEARTBEAT_ACK body from `p` at buf[body, ...). */
  onHeartbeat(p: SleevePeer, kind: DatagramKind, buf: Buffer, body: number): void {
    if (readHeartbeatReceiver(buf, body) !== this.deps.self) {
      this.deps.drops.count('not_for_us');
      return;
    }
    if (kind === DatagramKind.Heartbeat) {
      this.send(p, DatagramKind.HeartbeatAck, readHeartbeatSeq(buf, body));
      return;
    }
    const path = p.path;
    const echo = readHeartbeatEcho(buf, body);
    const now = this.deps.clock.now();
    if (echo === path.heartbeatSeq) path.rttMs = now - path.heartbeatSentAt;
    path.heartbeatsAnswered++;
    p.crypto?.heartbeatAcked(echo);
    path.lastAckAt = now;
    path.lastAckWall = this.deps.clock.wallNow();
    if (!p.up) {
      p.up = true;
      this.deps.log.info('sleeve path up', { peer: p.name.toString(16), addr: `${numberToIpv4(p.ip)}:${p.port}` });
      this.deps.events.pathChanged(p.name, true);
    }
  }

  /** Send `p` a HEARTBEAT (echoSeq 0), or a HEARTBEAT_ACK echoing `echoSeq`. */
  send(p: SleevePeer, kind: DatagramKind.Heartbeat | DatagramKind.HeartbeatAck, echoSeq: number): void {
    const b = this.controlBuf;
    const path = p.path;
    const now = this.deps.clock.now();
    if (p.crypto === undefined) writeDatagramHeader(b, 0, kind, this.deps.self);
    else {
      writeDatagramHeader(b, 0, DatagramKind.Sealed, this.deps.self);
      b[SEALED_INNER_KIND_OFFSET] = kind;
    }
    if (kind === DatagramKind.Heartbeat) {
      path.heartbeatSeq = (path.heartbeatSeq + 1) >>> 0;
      path.heartbeatSentAt = now;
      path.heartbeatsSent++;
      writeHeartbeatBody(b, p.prefix, p.name, path.heartbeatSeq, 0);
    } else {
      writeHeartbeatBody(b, p.prefix, p.name, 0, echoSeq);
    }
    if (p.crypto !== undefined) {
      p.crypto.sealInPlace(b, SEALED_INNER_KIND_OFFSET, 1 + HEARTBEAT_BODY_LENGTH, now);
      if (kind === DatagramKind.Heartbeat) p.crypto.heartbeatSent(path.heartbeatSeq);
    }
    try {
      if (!this.deps.socket.send(b, 0, p.prefix + HEARTBEAT_BODY_LENGTH, p.ip, p.port))
        this.deps.drops.count('send_queue_full');
    } catch (err) {
      this.deps.drops.count(sendErrorReason(err));
    }
  }

  /** Every HEARTBEAT_FAST_MS: paths silent too long go down; heartbeats go out where due. */
  tick(peers: Iterable<SleevePeer>): void {
    const now = this.deps.clock.now();
    for (const p of peers) {
      const path = p.path;
      if (p.up && now - path.lastAckAt > PATH_DEAD_MS) {
        p.up = false;
        this.deps.log.warn('sleeve path down: no heartbeat answer', {
          peer: p.name.toString(16),
          silentMs: now - path.lastAckAt,
        });
        this.deps.events.pathChanged(p.name, false);
      }
      // Probe fast until the path is up, then once a second.
      if (!p.up || now - path.heartbeatSentAt >= HEARTBEAT_INTERVAL_MS) this.send(p, DatagramKind.Heartbeat, 0);
    }
  }
}
