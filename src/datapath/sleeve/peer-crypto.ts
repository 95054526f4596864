/**
 * The sealing state of the data path towards one peer: per-direction keys from the
 * handshake, a nonce counter, the rekey chain (epochs), and the replay window.
 *
 * Rekeying needs no messages: both ends step the same HKDF chain. The sender moves to
 * the next epoch after REKEY_AFTER_MS or REKEY_AFTER_MESSAGES; the receiver follows when
 * a datagram of the next epoch authenticates, and keeps the previous key for
 * PREVIOUS_KEY_GRACE_MS so datagrams in flight across the switch are not lost.
 *
 * The receiver only looks one epoch ahead, so the sender never runs further ahead than
 * that: it rekeys only once the peer has proved it opens the current epoch, by answering
 * a heartbeat sealed in it (heartbeatSent / heartbeatAcked, called by the sleeve). While
 * nothing gets through (a UDP outage of any length) the sender keeps its key, and the
 * first datagram after the outage opens.
 */
import { nextDataKey } from '../../crypto/kdf';
import { MAX_NONCE_COUNTER, NONCE_LENGTH, SEAL_OVERHEAD, writeNonce, type Sealer } from '../../crypto/seal';
import { ReplayWindow } from '../../crypto/replay';
import { SEAL_PREFIX_LENGTH, readSealCounter, writeSealPrefix } from './codec';

export const REKEY_AFTER_MS = 120_000;
export const REKEY_AFTER_MESSAGES = 2 ** 28;
export const PREVIOUS_KEY_GRACE_MS = 30_000;

export type OpenResult = 'ok' | 'forged' | 'replayed' | 'bad_epoch';

/**
 * What the sleeve needs of a peer's sealing state. PeerCrypto implements it in
 * TypeScript (the reference); NativePeerCrypto (native-peer-crypto.ts) holds the same
 * state in C, where the express path can reach it.
 */
export interface DataCrypto {
  /** Seal buf[msgOff, msgOff+msgLen) in place; prefix at msgOff - 25, tag at msgOff - 16. */
  sealInPlace(buf: Buffer, msgOff: number, msgLen: number, now: number): void;
  /** Open the sealed unit at buf[off, off+len) in place; on 'ok' the plaintext is at off + 25. */
  openInPlace(buf: Buffer, off: number, len: number, now: number): OpenResult;
  /** The heartbeat `seq` was just sealed with sealInPlace (and sent). */
  heartbeatSent(seq: number): void;
  /** An authenticated heartbeat answer echoing `seq` arrived. */
  heartbeatAcked(seq: number): void;
  /** Current epochs as on the wire (mod 256). */
  readonly epoch: { send: number; recv: number };
}

export class PeerCrypto implements DataCrypto {
  private sendKey: Buffer;
  /** Epochs since the handshake (not wrapped; the wire carries it mod 256). */
  private sendEpoch = 0;
  /** Highest of our send epochs the peer proved it opens (it answered a heartbeat sealed in it). */
  private peerOpensEpoch = 0;
  /** Send epoch of the heartbeats from hbFirstSeq to hbLastSeq; -1 before the first. */
  private hbEpoch = -1;
  private hbFirstSeq = 0;
  private hbLastSeq = 0;
  private sendCounter = 0;
  private sendEpochStarted: number;
  private sendEpochMessages = 0;

  private recvKey: Buffer;
  private recvEpoch = 0;
  /** The next epoch's key, derived once, so forged "next epoch" datagrams cost no HKDF. */
  private recvNextKey: Buffer;
  private recvPrevKey: Buffer | undefined;
  private recvPrevUntil = 0;
  private readonly replay = new ReplayWindow();
  private readonly nonce = Buffer.alloc(NONCE_LENGTH);

  constructor(
    private readonly sealer: Sealer,
    keys: { send: Buffer; recv: Buffer },
    now: number,
  ) {
    this.sendKey = keys.send;
    this.recvKey = keys.recv;
    this.recvNextKey = nextDataKey(keys.recv);
    this.sendEpochStarted = now;
  }

  /**
   * Seal buf[msgOff, msgOff+msgLen) in place: the prefix goes at msgOff - 25 and the tag
   * at msgOff - 16, so the caller lays out [prefix(9) | tag(16) | message] and leaves the
   * first 25 bytes for us.
   */
  sealInPlace(buf: Buffer, msgOff: number, msgLen: number, now: number): void {
    if (
      (this.sendEpochMessages >= REKEY_AFTER_MESSAGES || now - this.sendEpochStarted >= REKEY_AFTER_MS) &&
      // Never two epochs ahead of the receiver: it would drop everything as bad_epoch.
      this.peerOpensEpoch >= this.sendEpoch
    ) {
      this.sendKey = nextDataKey(this.sendKey);
      this.sendEpoch++;
      this.sendEpochStarted = now;
      this.sendEpochMessages = 0;
    }
    const counter = this.sendCounter++;
    this.sendEpochMessages++;
    writeSealPrefix(buf, msgOff - SEAL_OVERHEAD - SEAL_PREFIX_LENGTH, this.sendEpoch & 0xff, counter);
    writeNonce(this.nonce, counter);
    this.sealer.seal(buf, msgOff - SEAL_OVERHEAD, buf, msgOff, msgLen, this.nonce, this.sendKey);
  }

  /**
   * Open the sealed unit at buf[off, off+len) (prefix, tag, ciphertext) in place: on
   * 'ok' the plaintext is at off + 25, len - 25 bytes long.
   */
  openInPlace(buf: Buffer, off: number, len: number, now: number): OpenResult {
    if (len < SEAL_PREFIX_LENGTH + SEAL_OVERHEAD) return 'forged';
    const epoch = buf[off]!;
    const counter = readSealCounter(buf, off);
    if (counter > MAX_NONCE_COUNTER) return 'forged';
    // Cheap check first: a replay costs no decryption.
    if (!this.replay.wouldAccept(counter)) return 'replayed';
    let key: Buffer;
    let advancing = false;
    if (epoch === this.recvEpoch) key = this.recvKey;
    else if (epoch === ((this.recvEpoch + 1) & 0xff)) {
      key = this.recvNextKey;
      advancing = true;
    } else if (
      epoch === ((this.recvEpoch + 0xff) & 0xff) &&
      this.recvPrevKey !== undefined &&
      now < this.recvPrevUntil
    ) {
      key = this.recvPrevKey;
    } else return 'bad_epoch';
    writeNonce(this.nonce, counter);
    const box = off + SEAL_PREFIX_LENGTH;
    const boxLen = len - SEAL_PREFIX_LENGTH;
    if (!this.sealer.open(buf, box + SEAL_OVERHEAD, buf, box, boxLen, this.nonce, key)) return 'forged';
    if (!this.replay.accept(counter)) return 'replayed';
    if (advancing) {
      this.recvPrevKey = this.recvKey;
      this.recvPrevUntil = now + PREVIOUS_KEY_GRACE_MS;
      this.recvKey = this.recvNextKey;
      this.recvEpoch = epoch;
      this.recvNextKey = nextDataKey(this.recvKey);
    }
    return 'ok';
  }

  /** The heartbeat `seq` was just sealed with sealInPlace (and sent). */
  heartbeatSent(seq: number): void {
    if (this.hbEpoch !== this.sendEpoch) {
      this.hbEpoch = this.sendEpoch;
      this.hbFirstSeq = seq;
    }
    this.hbLastSeq = seq;
  }

  /**
   * An authenticated heartbeat answer echoing `seq` arrived: if that heartbeat was sealed
   * in our current send epoch, the peer opens it, and we may move on to the next one.
   * Sequence numbers are u32 and wrap; the comparison is modulo 2^32.
   */
  heartbeatAcked(seq: number): void {
    if (this.hbEpoch < 0) return;
    if ((seq - this.hbFirstSeq) >>> 0 <= (this.hbLastSeq - this.hbFirstSeq) >>> 0) {
      this.peerOpensEpoch = Math.max(this.peerOpensEpoch, this.hbEpoch);
    }
  }

  /** Current epochs as on the wire (mod 256). */
  get epoch(): { send: number; recv: number } {
    return { send: this.sendEpoch & 0xff, recv: this.recvEpoch };
  }
}

/** Bytes a sealed unit adds in front of its message: prefix and tag. */
export const SEAL_UNIT_OVERHEAD = SEAL_PREFIX_LENGTH + SEAL_OVERHEAD;
