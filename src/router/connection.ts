/**
 * One TCP control connection to a peer: framing, the HELLO exchange, heartbeats, and
 * delivery of gossip to the router. The router decides policy (duplicates, collisions);
 * this class owns the socket and its timers and nothing else.
 */
import type * as net from 'node:net';
import type { Logger } from '../log';
import {
  ControlDecodeError,
  MessageType,
  PROTOCOL_MAX_VERSION,
  PROTOCOL_MIN_VERSION,
  decode,
  encode,
  frameLength,
  negotiateVersion,
  type ControlMessage,
  type Hello,
} from './control-codec';

export const HANDSHAKE_TIMEOUT_MS = 5000;
export const PING_INTERVAL_MS = 1000;
/** A peer silent this long on its control connection is declared dead. */
export const DEAD_AFTER_MS = 4000;

export type ConnectionPhase = 'handshaking' | 'ready' | 'closed';

export interface ConnectionHandlers {
  /** The remote's HELLO arrived and is well-formed: return undefined to accept, or a reason to refuse. */
  onHello(conn: PeerConnection, hello: Hello): string | undefined;
  /** The connection passed its handshake and was accepted. */
  onReady(conn: PeerConnection): void;
  onGossip(conn: PeerConnection, payload: Buffer): void;
  onClosed(conn: PeerConnection, reason: string): void;
  /** A control message was refused (malformed, unexpected); counted by reason. */
  onRejected(reason: string): void;
}

export class PeerConnection {
  phase: ConnectionPhase = 'handshaking';
  remote: Hello | undefined;
  version = 0;
  rttMs: number | undefined;
  closeReason: string | undefined;
  readonly remoteIp: string;
  readonly remotePort: number;

  private pending: Buffer = Buffer.alloc(0);
  private lastHeardAt = Date.now();
  private pingNonce = 0n;
  private pingSentAt = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly socket: net.Socket,
    readonly outbound: boolean,
    /** The target address we dialled ("ip:port"), for outbound connections. */
    readonly target: string | undefined,
    localHello: Hello,
    private readonly handlers: ConnectionHandlers,
    private readonly log: Logger,
  ) {
    this.remoteIp = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.remotePort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`, false));
    socket.on('close', () => this.close('connection closed by peer', false));
    this.timer = setInterval(() => this.tick(), PING_INTERVAL_MS / 2);
    this.send({ type: MessageType.Hello, hello: localHello });
  }

  /** "ip:port" of the remote end of the TCP connection. */
  get remoteAddress(): string {
    return `${this.remoteIp}:${this.remotePort}`;
  }

  /** "ip:controlPort" where the remote accepts connections (known after HELLO). */
  get remoteListenAddress(): string {
    return `${this.remoteIp}:${this.remote?.controlPort ?? this.remotePort}`;
  }

  send(msg: ControlMessage): void {
    if (this.phase === 'closed') return;
    this.socket.write(encode(msg));
  }

  close(reason: string, tellPeer = true): void {
    if (this.phase === 'closed') return;
    if (tellPeer) {
      try {
        this.socket.write(encode({ type: MessageType.Close, reason }));
      } catch {
        // The socket may already be unwritable; closing is what matters.
      }
    }
    this.phase = 'closed';
    this.closeReason = reason;
    clearInterval(this.timer);
    this.socket.end();
    this.socket.destroy();
    this.handlers.onClosed(this, reason);
  }

  private tick(): void {
    const now = Date.now();
    if (this.phase === 'handshaking' && now - this.lastHeardAt > HANDSHAKE_TIMEOUT_MS) {
      this.handlers.onRejected('handshake_timeout');
      this.close('handshake timed out');
      return;
    }
    if (this.phase !== 'ready') return;
    if (now - this.lastHeardAt > DEAD_AFTER_MS) {
      this.close(`peer silent for ${now - this.lastHeardAt} ms`);
      return;
    }
    if (now - this.pingSentAt >= PING_INTERVAL_MS) {
      this.pingNonce++;
      this.pingSentAt = now;
      this.send({ type: MessageType.Ping, nonce: this.pingNonce });
    }
  }

  private onData(chunk: Buffer): void {
    this.lastHeardAt = Date.now();
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let offset = 0;
    try {
      while (this.phase !== 'closed') {
        const n = frameLength(this.pending, offset);
        if (n === 0) break;
        const msg = decode(this.pending, offset, n);
        offset += n;
        this.onMessage(msg);
      }
    } catch (err) {
      const reason = err instanceof ControlDecodeError ? err.reason : (err as Error).message;
      this.handlers.onRejected('malformed');
      this.log.warn('dropping connection: malformed control message', { remote: this.remoteAddress, reason });
      this.close(`malformed message: ${reason}`);
      return;
    }
    this.pending = offset === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(offset);
  }

  private onMessage(msg: ControlMessage): void {
    if (this.phase === 'handshaking') {
      if (msg.type !== MessageType.Hello) {
        if (msg.type === MessageType.Close) {
          this.close(`refused by peer: ${msg.reason}`, false);
          return;
        }
        this.handlers.onRejected('unexpected_before_hello');
        this.close('expected HELLO first');
        return;
      }
      const version = negotiateVersion(msg.hello, { minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION });
      if (version === undefined) {
        this.handlers.onRejected('version_mismatch');
        this.close(
          `protocol version mismatch: peer speaks ${msg.hello.minVersion}..${msg.hello.maxVersion}, we speak ${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}`,
        );
        return;
      }
      this.remote = msg.hello;
      this.version = version;
      const refusal = this.handlers.onHello(this, msg.hello);
      if (refusal !== undefined) {
        this.close(refusal);
        return;
      }
      this.phase = 'ready';
      this.handlers.onReady(this);
      return;
    }
    switch (msg.type) {
      case MessageType.Hello:
        this.handlers.onRejected('duplicate_hello');
        this.close('HELLO sent twice');
        return;
      case MessageType.Ping:
        this.send({ type: MessageType.Pong, nonce: msg.nonce });
        return;
      case MessageType.Pong:
        if (msg.nonce === this.pingNonce) this.rttMs = Date.now() - this.pingSentAt;
        return;
      case MessageType.Gossip:
        this.handlers.onGossip(this, msg.payload);
        return;
      case MessageType.Close:
        this.close(`closed by peer: ${msg.reason}`, false);
        return;
    }
  }
}
