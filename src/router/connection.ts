/**
 * One TCP control connection to a peer: framing, the handshake (HELLO, and with a
 * network password the CPace key exchange and sealed FINISHED proofs, see
 * docs/CRYPTO.md), heartbeats, and delivery of gossip to the router. The router decides
 * policy (duplicates, collisions) only once the peer is authenticated; this class owns
 * the socket, its timers and its keys, and nothing else.
 */
import type * as net from 'node:net';
import type { Logger } from '../log';
import { cpaceGenerator, cpaceKeyPair, cpaceSharedKey } from '../crypto/cpace';
import { confirmTag, deriveSessionKeys, tagsEqual, transcriptHash, type SessionKeys } from '../crypto/kdf';
import type { Sealer } from '../crypto/seal';
import { x25519, x25519KeyPair, type X25519KeyPair } from '../crypto/x25519';
import { SealedChannel } from './sealed-channel';
import { formatEdgeAddress } from './gossip-codec';
import {
  ControlDecodeError,
  MAX_CONTROL_MESSAGE,
  MAX_HANDSHAKE_MESSAGE,
  MessageType,
  PROTOCOL_MAX_VERSION,
  PROTOCOL_MIN_VERSION,
  decode,
  encode,
  frameLength,
  negotiateVersion,
  FINISHED_FLAG_TRUSTED,
  HELLO_FLAG_PASSWORD,
  type ControlMessage,
  type Hello,
} from './control-codec';

export const HANDSHAKE_TIMEOUT_MS = 5000;
export const PING_INTERVAL_MS = 1000;
/** A peer silent this long on its control connection is declared dead. */
export const DEAD_AFTER_MS = 4000;

export type ConnectionPhase = 'handshaking' | 'ready' | 'closed';
/** Where a handshaking connection is: waiting for HELLO, for KEYX, or for FINISHED. */
type HandshakeStep = 'hello' | 'keyx' | 'finished';

/** What a connection needs to authenticate peers; shared by all connections. */
export interface ConnectionSecurity {
  /** The network password; undefined: no encryption, no authentication. */
  password: Buffer | undefined;
  sealer: Sealer;
  /** Whether data to a peer at this IP may go unencrypted (--trusted-subnets). */
  trusts(ip: string): boolean;
}

/** Data-path keys agreed by the handshake; absent when the data path runs in clear. */
export interface DataKeys {
  send: Buffer;
  recv: Buffer;
}

/**
 * What all of one router's connections share: the public halves of their ephemeral keys
 * (so a HELLO carrying one of them is recognised as our own, reflected back to us), and
 * the bytes handshaking connections hold buffered (bounded in all).
 */
export class ConnectionShared {
  readonly ownKeys = new Set<string>();
  private preAuthBytes = 0;

  constructor(
    /** Bytes all handshaking connections together may hold buffered. */
    readonly preAuthLimit = 256 * 1024,
  ) {}

  get preAuthBuffered(): number {
    return this.preAuthBytes;
  }

  /** Change one connection's holding from `from` to `to` bytes; false (and no change) if over the limit. */
  holdPreAuth(from: number, to: number): boolean {
    const next = this.preAuthBytes - from + to;
    if (to > from && next > this.preAuthLimit) return false;
    this.preAuthBytes = next;
    return true;
  }
}

export interface ConnectionHandlers {
  /** The remote's HELLO arrived and is well-formed: return undefined to accept, or a reason to refuse. */
  onHello(conn: PeerConnection, hello: Hello): string | undefined;
  /** The connection passed its handshake and was accepted. */
  onReady(conn: PeerConnection): void;
  onGossip(conn: PeerConnection, payload: Buffer): void;
  /** A HEALTH report (undecoded body) arrived on a ready connection. */
  onHealth(conn: PeerConnection, payload: Buffer): void;
  /** A STORE message (mesh store gossip), body not yet decoded. */
  onStore(conn: PeerConnection, payload: Buffer): void;
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
  /** True once every control message is sealed (password handshake completed). */
  encrypted = false;
  /** Keys for the data path; undefined when data goes in clear (no password, or trusted). */
  dataKeys: DataKeys | undefined;

  private step: HandshakeStep = 'hello';
  /** Our HELLO as sent; undefined until sent (a listener answers the dialer's HELLO). */
  private localHelloBytes: Buffer | undefined;
  private remoteHelloBytes: Buffer | undefined;
  /** Made with our HELLO: a connection that never sends one costs no key generation. */
  private ephemeral: X25519KeyPair | undefined;
  private ownKeyHex: string | undefined;
  /** Handshake deadline, from accept (or connect): not reset by traffic. */
  private readonly handshakeDeadline = Date.now() + HANDSHAKE_TIMEOUT_MS;
  /** Bytes of `pending` counted in the shared pre-auth budget. */
  private preAuthHeld = 0;
  private cpaceSecret: Buffer | undefined;
  private localShare: Buffer | undefined;
  private keys: SessionKeys | undefined;
  private transcript: Buffer | undefined;
  private channel: SealedChannel | undefined;
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
    private readonly localHello: Hello,
    private readonly handlers: ConnectionHandlers,
    private readonly log: Logger,
    private readonly security: ConnectionSecurity,
    private readonly shared: ConnectionShared = new ConnectionShared(),
  ) {
    this.remoteIp = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.remotePort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.guarded('data', () => this.onData(chunk)));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`, false));
    socket.on('close', () => this.close('connection closed by peer', false));
    this.timer = setInterval(() => this.guarded('timer', () => this.tick()), PING_INTERVAL_MS / 2);
    // The dialer speaks first; the listener answers a well-formed HELLO. So a stranger
    // that connects and sends nothing, or junk, costs no key generation at all.
    if (outbound) this.sendHello();
  }

  private sendHello(): void {
    if (this.localHelloBytes !== undefined) return;
    this.ephemeral = x25519KeyPair();
    this.ownKeyHex = Buffer.from(this.ephemeral.publicKey).toString('hex');
    this.shared.ownKeys.add(this.ownKeyHex);
    const hello: Hello = {
      ...this.localHello,
      flags: this.security.password
        ? this.localHello.flags | HELLO_FLAG_PASSWORD
        : this.localHello.flags & ~HELLO_FLAG_PASSWORD,
      publicKey: Buffer.from(this.ephemeral.publicKey),
    };
    this.localHelloBytes = encode({ type: MessageType.Hello, hello });
    this.socket.write(this.localHelloBytes);
  }

  /** Forget what only the handshake needed: our key in the shared set, buffered bytes. */
  private releaseHandshake(): void {
    if (this.ownKeyHex !== undefined) {
      this.shared.ownKeys.delete(this.ownKeyHex);
      this.ownKeyHex = undefined;
    }
    this.shared.holdPreAuth(this.preAuthHeld, 0);
    this.preAuthHeld = 0;
  }

  /** "ip:port" of the remote end of the TCP connection. */
  get remoteAddress(): string {
    return `${this.remoteIp}:${this.remotePort}`;
  }

  /** "ip:controlPort" where the remote accepts connections (known after HELLO); IPv6 in brackets. */
  get remoteListenAddress(): string {
    return formatEdgeAddress(this.remoteIp, this.remote?.controlPort ?? this.remotePort);
  }

  send(msg: ControlMessage): void {
    if (this.phase === 'closed') return;
    const plain = encode(msg);
    this.socket.write(this.channel ? this.channel.seal(plain) : plain);
  }

  /**
   * Close the connection and tell the router. Never throws: it runs from socket event
   * handlers and timers, where an exception would end the process, and from error paths
   * that must not fail themselves. A router callback that throws is logged, not passed on.
   */
  close(reason: string, tellPeer = true): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closeReason = reason;
    clearInterval(this.timer);
    this.releaseHandshake();
    this.ephemeral = undefined;
    if (tellPeer) {
      try {
        const plain = encode({ type: MessageType.Close, reason });
        this.socket.write(this.channel ? this.channel.seal(plain) : plain);
      } catch {
        // The socket may already be unwritable; closing is what matters.
      }
    }
    try {
      this.socket.end();
      this.socket.destroy();
    } catch {
      // Already destroyed.
    }
    try {
      this.handlers.onClosed(this, reason);
    } catch (err) {
      this.log.error('internal error while closing a connection (ignored)', {
        remote: this.remoteAddress,
        error: (err as Error).stack ?? String(err),
      });
    }
  }

  /**
   * Run a socket or timer callback so that nothing it throws escapes to the event loop
   * (which would end the daemon, and with it every connection): an unexpected error ends
   * this connection only.
   */
  private guarded(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.handlers.onRejected('internal_error');
      this.log.error(`internal error in a control connection's ${what} handler; closing it`, {
        remote: this.remoteAddress,
        error: (err as Error).stack ?? String(err),
      });
      this.close('internal error');
    }
  }

  private tick(): void {
    const now = Date.now();
    // A deadline, not an idle timer: a peer dribbling a byte now and then does not extend it.
    if (this.phase === 'handshaking' && now > this.handshakeDeadline) {
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
        // Before authentication only what a handshake needs; a bigger declared length closes now.
        const n = frameLength(
          this.pending,
          offset,
          this.phase === 'handshaking' ? MAX_HANDSHAKE_MESSAGE : MAX_CONTROL_MESSAGE,
        );
        if (n === 0) break;
        let msg: ControlMessage;
        if (this.channel) {
          const plain = this.channel.open(this.pending, offset, n);
          offset += n;
          if (plain === undefined) {
            this.onForged();
            return;
          }
          msg = decode(plain);
        } else {
          msg = decode(this.pending, offset, n);
          if (msg.type === MessageType.Hello)
            this.remoteHelloBytes = Buffer.from(this.pending.subarray(offset, offset + n));
          offset += n;
        }
        this.onMessage(msg);
      }
    } catch (err) {
      // Anything else is our bug, not the peer's message: guarded() reports it as such.
      if (!(err instanceof ControlDecodeError)) throw err;
      const reason = err.reason;
      this.handlers.onRejected('malformed');
      // Before authentication anyone can send junk: counted, logged at debug only (a flood
      // would otherwise flood the log too). From an authenticated peer it is news.
      const fields = { remote: this.remoteAddress, reason };
      if (this.phase === 'ready') this.log.warn('dropping connection: malformed control message', fields);
      else this.log.debug('dropping connection: malformed control message before authentication', fields);
      this.close(`malformed message: ${reason}`);
      return;
    }
    this.pending = offset === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(offset);
    if (this.phase === 'handshaking') {
      // What stays buffered (at most one incomplete frame under MAX_HANDSHAKE_MESSAGE)
      // counts against the budget all handshaking connections share.
      if (!this.shared.holdPreAuth(this.preAuthHeld, this.pending.length)) {
        this.handlers.onRejected('pre_auth_memory');
        this.close('too much buffered by connections still handshaking');
        return;
      }
      this.preAuthHeld = this.pending.length;
      // The copy keeps the held bytes from pinning the whole chunk they arrived in.
      if (this.pending.length > 0) this.pending = Buffer.from(this.pending);
    }
  }

  private onMessage(msg: ControlMessage): void {
    if (this.phase === 'handshaking') {
      if (msg.type === MessageType.Close) {
        this.close(`refused by peer: ${msg.reason}`, false);
        return;
      }
      if (this.step === 'hello') this.onHello(msg);
      else if (this.step === 'keyx') this.onKeyExchange(msg);
      else this.onFinished(msg);
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
      case MessageType.Health:
        this.handlers.onHealth(this, msg.payload);
        return;
      case MessageType.Store:
        this.handlers.onStore(this, msg.payload);
        return;
      case MessageType.Close:
        this.close(`closed by peer: ${msg.reason}`, false);
        return;
    }
  }

  private onHello(msg: ControlMessage): void {
    if (msg.type !== MessageType.Hello) {
      this.handlers.onRejected('unexpected_before_hello');
      this.close('expected HELLO first');
      return;
    }
    const version = negotiateVersion(msg.hello, { minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION });
    if (version === undefined) {
      this.handlers.onRejected('version_mismatch');
      const reason = `protocol version mismatch: peer speaks ${msg.hello.minVersion}..${msg.hello.maxVersion}, we speak ${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}`;
      // Both ends see both ranges: the peer in the CLOSE, the operator here.
      this.log.warn('refusing peer', { remote: this.remoteAddress, reason });
      this.close(reason);
      return;
    }
    if (!this.outbound) this.sendHello();
    if (this.shared.ownKeys.has(msg.hello.publicKey.toString('hex'))) {
      // Our own HELLO came back: a relay feeds one of our connections into another (or
      // this one into itself). Refuse before any key exchange; the router is not told
      // (this says nothing about the target, which stays configured).
      this.handlers.onRejected('reflected_handshake');
      this.log.warn(
        'refusing a handshake that carries our own ephemeral key (reflected back to us by a relay, or our own address dialled)',
        {
          remote: this.remoteAddress,
          outbound: this.outbound,
          target: this.target,
        },
      );
      this.close('reflected handshake: that HELLO is our own');
      return;
    }
    this.remote = msg.hello;
    this.version = version;
    const theirs = (msg.hello.flags & HELLO_FLAG_PASSWORD) !== 0;
    const ours = this.security.password !== undefined;
    if (theirs !== ours) {
      this.handlers.onRejected(ours ? 'peer_without_password' : 'peer_with_password');
      const reason = ours
        ? 'this network requires a password: launch the peer with --password-file (or WEAVETS_PASSWORD)'
        : 'the peer requires a network password and we have none: launch with --password-file (or WEAVETS_PASSWORD)';
      this.log.error('refusing peer: password mismatch', { remote: this.remoteAddress, reason });
      this.close(reason);
      return;
    }
    if (!ours) {
      this.authenticated();
      return;
    }
    // CPace: the generator depends on the password and on both HELLOs, so a share is
    // useless outside this connection and reveals nothing testable about the password.
    const sid = transcriptHash(this.orderedHellos());
    const keyPair = cpaceKeyPair(cpaceGenerator(this.security.password!, sid));
    this.cpaceSecret = keyPair.secret;
    this.localShare = keyPair.share;
    this.step = 'keyx';
    this.send({ type: MessageType.KeyExchange, share: keyPair.share });
  }

  private onKeyExchange(msg: ControlMessage): void {
    if (msg.type !== MessageType.KeyExchange) {
      this.handlers.onRejected('unexpected_before_keyx');
      this.close('expected KEYX');
      return;
    }
    let cpaceKey: Buffer;
    try {
      cpaceKey = cpaceSharedKey(this.cpaceSecret!, msg.share);
    } catch (err) {
      this.handlers.onRejected('bad_key_exchange');
      this.close(`bad key exchange: ${(err as Error).message}`);
      return;
    }
    const dh = x25519(this.ephemeral!.secretKey, this.remote!.publicKey);
    if (dh.every((b) => b === 0)) {
      this.handlers.onRejected('bad_key_exchange');
      this.close('bad key exchange: low-order ephemeral key');
      return;
    }
    const shares = this.outbound ? [this.localShare!, msg.share] : [msg.share, this.localShare!];
    this.transcript = transcriptHash([...this.orderedHellos(), ...shares]);
    this.keys = deriveSessionKeys(Buffer.concat([cpaceKey, dh]), this.transcript, this.outbound);
    this.cpaceSecret = undefined;
    this.channel = new SealedChannel(this.security.sealer, this.keys.controlSend, this.keys.controlRecv);
    this.step = 'finished';
    const trusted = this.security.trusts(this.remoteIp);
    this.send({
      type: MessageType.Finished,
      tag: confirmTag(this.keys.confirmSend, this.transcript),
      flags: trusted ? FINISHED_FLAG_TRUSTED : 0,
    });
  }

  private onFinished(msg: ControlMessage): void {
    if (
      msg.type !== MessageType.Finished ||
      !tagsEqual(msg.tag, confirmTag(this.keys!.confirmRecv, this.transcript!))
    ) {
      this.handlers.onRejected('bad_finished');
      this.close('handshake proof invalid');
      return;
    }
    this.encrypted = true;
    const trusted = this.security.trusts(this.remoteIp) && (msg.flags & FINISHED_FLAG_TRUSTED) !== 0;
    if (!trusted) this.dataKeys = { send: this.keys!.dataSend, recv: this.keys!.dataRecv };
    this.authenticated();
  }

  /** A sealed frame did not open: wrong password on the first one, tampering after. */
  private onForged(): void {
    if (this.step === 'finished' && this.phase === 'handshaking') {
      this.handlers.onRejected('wrong_password');
      this.log.error('peer failed to prove the network password (wrong password?)', { remote: this.remoteAddress });
      this.close('authentication failed: the peer does not know the network password', false);
      return;
    }
    this.handlers.onRejected('forged');
    this.log.warn('dropping connection: a sealed control message failed to authenticate', {
      remote: this.remoteAddress,
    });
    this.close('control message failed authentication', false);
  }

  /** The peer is who it can be (authenticated, or no password in use): let the router decide. */
  private authenticated(): void {
    this.releaseHandshake();
    this.ephemeral = undefined; // the key exchange is over: e_self is not needed again
    const refusal = this.handlers.onHello(this, this.remote!);
    if (refusal !== undefined) {
      this.close(refusal);
      return;
    }
    this.phase = 'ready';
    this.handlers.onReady(this);
  }

  /** Both HELLOs as sent, the dialling side's first: the order both ends agree on. */
  private orderedHellos(): Buffer[] {
    const remote = this.remoteHelloBytes!;
    const local = this.localHelloBytes!;
    return this.outbound ? [local, remote] : [remote, local];
  }
}
