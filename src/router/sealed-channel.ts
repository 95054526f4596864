/**
 * The control channel after a password handshake: every frame's type and body sealed with
 * NaCl secretbox under a per-direction key, the nonce a per-direction counter. TCP
 * delivers in order, so the receiver knows the next nonce exactly: a reordered,
 * replayed, dropped or altered frame fails to open and the connection dies.
 *
 *   sealed frame := length u32 | secretbox(type u8 | body)     (length = 16 + 1 + body)
 */
import { FRAME_HEADER_LENGTH } from './control-codec';
import { NONCE_LENGTH, SEAL_OVERHEAD, writeNonce, type Sealer } from '../crypto/seal';

export class SealedChannel {
  private sendCounter = 0;
  private recvCounter = 0;
  private readonly nonce = Buffer.alloc(NONCE_LENGTH);

  constructor(
    private readonly sealer: Sealer,
    private readonly sendKey: Buffer,
    private readonly recvKey: Buffer,
  ) {}

  /** Seal a plain framed message (length | type | body) into a sealed frame. */
  seal(plain: Buffer): Buffer {
    const msgLen = plain.length - 4;
    const out = Buffer.allocUnsafe(4 + SEAL_OVERHEAD + msgLen);
    out.writeUInt32BE(SEAL_OVERHEAD + msgLen, 0);
    writeNonce(this.nonce, this.sendCounter++);
    this.sealer.seal(out, 4, plain, 4, msgLen, this.nonce, this.sendKey);
    return out;
  }

  /**
   * Open the sealed frame at buf[offset, offset+length) into a plain framed message, or
   * return undefined if it does not authenticate under the next expected nonce.
   */
  open(buf: Buffer, offset: number, length: number): Buffer | undefined {
    const boxLen = length - 4;
    if (boxLen < SEAL_OVERHEAD + 1) return undefined;
    const plain = Buffer.allocUnsafe(4 + boxLen - SEAL_OVERHEAD);
    plain.writeUInt32BE(boxLen - SEAL_OVERHEAD, 0);
    writeNonce(this.nonce, this.recvCounter);
    if (!this.sealer.open(plain, 4, buf, offset + 4, boxLen, this.nonce, this.recvKey)) return undefined;
    this.recvCounter++;
    return plain.length >= FRAME_HEADER_LENGTH ? plain : undefined;
  }
}
