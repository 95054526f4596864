/**
 * One TCP control connection to a peer: framing, the handshake (HELLO, and with a
 * network password the CPace key exchange and sealed FINISHED proofs, see
 * docs/CRYPTO.md), heartbeats, and delivery of gossip to the router. The router decides
 * policy (duplicates, collisions) only once the peer is authenticated; this class owns
 * the socket, its timers and its keys, and nothing else.
 */
import type * as net from 'node:net';
import nacl from 'tweetnacl';
import type { Logger } from '../log';
import { cpaceGenerator, cpaceKeyPair, cpaceSharedKey } from '../crypto/cpace';
import { confirmTag, deriveSessionKeys, tagsEqual, transcriptHash, type SessionKeys } from '../crypto/kdf';
import type { Sealer } from '../crypto/seal';
import { SealedChannel } from './sealed-channel';
import {
  ControlDecodeError,
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
  /** True once every control message is sealed (password handshake completed). */
  encrypted = false;
  /** Keys for the data path; undefined when data goes in clear (no password, or trusted). */
  dataKeys: DataKeys | undefined;

  private step: HandshakeStep = 'hello';
  private readonly localHelloBytes: Buffer;
  private remoteHelloBytes: Buffer | undefined;
  private readonly ephemeral = nacl.box.keyPair();
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
    localHello: Hello,
    private readonly handlers: ConnectionHandlers,
    private readonly log: Logger,
    private readonly security: ConnectionSecurity,
  ) {
    this.remoteIp = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.remotePort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`, false));
    socket.on('close', () => this.close('connection closed by peer', false));
    this.timer = setInterval(() => this.tick(), PING_INTERVAL_MS / 2);
    const hello: Hello = {
      ...localHello,
      flags: security.password ? localHello.flags | HELLO_FLAG_PASSWORD : localHello.flags & ~HELLO_FLAG_PASSWORD,
      publicKey: Buffer.from(this.ephemeral.publicKey),
    };
    this.localHelloBytes = encode({ type: MessageType.Hello, hello });
    this.socket.write(this.localHelloBytes);
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
    const plain = encode(msg);
    this.socket.write(this.channel ? this.channel.seal(plain) : plain);
  }

  close(reason: string, tellPeer = true): void {
    if (this.phase === 'closed') return;
    if (tellPeer) {
      try {
        const plain = encode({ type: MessageType.Close, reason });
        this.socket.write(this.channel ? this.channel.seal(plain) : plain);
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
          if (msg.type === MessageType.Hello) this.remoteHelloBytes = Buffer.from(this.pending.subarray(offset, offset + n));
          offset += n;
        }
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
    const dh = Buffer.from(nacl.scalarMult(this.ephemeral.secretKey, this.remote!.publicKey));
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
    this.send({ type: MessageType.Finished, tag: confirmTag(this.keys.confirmSend, this.transcript), flags: trusted ? FINISHED_FLAG_TRUSTED : 0 });
  }

  private onFinished(msg: ControlMessage): void {
    if (msg.type !== MessageType.Finished || !tagsEqual(msg.tag, confirmTag(this.keys!.confirmRecv, this.transcript!))) {
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
    this.log.warn('dropping connection: a sealed control message failed to authenticate', { remote: this.remoteAddress });
    this.close('control message failed authentication', false);
  }

  /** The peer is who it can be (authenticated, or no password in use): let the router decide. */
  private authenticated(): void {
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
    return this.outbound ? [this.localHelloBytes, remote] : [remote, this.localHelloBytes];
  }
}
