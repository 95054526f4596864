/**
 * PeerCrypto's state and rules held in C (native/src/peer_crypto.c), so the sleeve's
 * express path, which seals and opens datagrams without entering JS, shares one nonce
 * counter, one replay window and one rekey chain per peer with the JS slow path. The C
 * express path is given `handle`. PeerCrypto (peer-crypto.ts) stays the reference:
 * test/unit/native-peer-crypto.test.ts drives both through the same sequences and
 * expects byte-identical output.
 *
 * Differences, all on arguments PeerCrypto never sees from the sleeve: a range outside
 * the buffer (or msgOff < 25) throws a RangeError, a time that is not a finite number
 * and a heartbeat sequence number that is not a u32 throw too.
 */
import {
  OPEN_BAD_EPOCH,
  OPEN_FORGED,
  OPEN_OK,
  OPEN_REPLAYED,
  peerCryptoBinding,
  type NativePeerCryptoHandle,
  type PeerCryptoBinding,
} from '../../native/peer-crypto';
import type { DataCrypto, OpenResult } from './peer-crypto';

const RESULTS: Record<number, OpenResult> = {
  [OPEN_OK]: 'ok',
  [OPEN_FORGED]: 'forged',
  [OPEN_REPLAYED]: 'replayed',
  [OPEN_BAD_EPOCH]: 'bad_epoch',
};

export class NativePeerCrypto implements DataCrypto {
  /** The C state's JS handle: pass it to the express path; the state lives as long as it does. */
  readonly handle: NativePeerCryptoHandle;
  private readonly native: PeerCryptoBinding;

  /** The keys are copied into C memory (wiped when the handle is collected). */
  constructor(keys: { send: Buffer; recv: Buffer }, now: number) {
    this.native = peerCryptoBinding();
    this.handle = this.native.peerCryptoCreate(keys.send, keys.recv, now);
  }

  /** As PeerCrypto.sealInPlace: prefix at msgOff - 25, tag at msgOff - 16. */
  sealInPlace(buf: Buffer, msgOff: number, msgLen: number, now: number): void {
    this.native.peerCryptoSeal(this.handle, buf, msgOff, msgLen, now);
  }

  /** As PeerCrypto.openInPlace: on 'ok' the plaintext is at off + 25. */
  openInPlace(buf: Buffer, off: number, len: number, now: number): OpenResult {
    return RESULTS[this.native.peerCryptoOpen(this.handle, buf, off, len, now)]!;
  }

  heartbeatSent(seq: number): void {
    this.native.peerCryptoHeartbeatSent(this.handle, seq);
  }

  heartbeatAcked(seq: number): void {
    this.native.peerCryptoHeartbeatAcked(this.handle, seq);
  }

  /** Current epochs as on the wire (mod 256). */
  get epoch(): { send: number; recv: number } {
    const [send, recv] = this.native.peerCryptoEpoch(this.handle);
    return { send, recv };
  }
}
