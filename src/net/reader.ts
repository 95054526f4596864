/**
 * The one bounds-checked field reader the wire codecs share (gossip, control, HEALTH,
 * STORE, trace probes): a cursor over a Buffer whose every read checks the bytes are
 * there first, so a short or lying message fails with the codec's own typed decode error
 * (the `fail` factory) and never with Buffer's RangeError. Big-endian throughout, as on
 * the wire (docs/PROTOCOL.md).
 */
import { readPeerName, type PeerName } from './peername';

/** Makes the codec's decode error (GossipDecodeError, ControlDecodeError, ...) from a reason. */
export type DecodeErrorFactory = (reason: string) => Error;

export class ByteReader {
  private o: number;

  constructor(
    private readonly buf: Buffer,
    offset: number,
    private readonly fail: DecodeErrorFactory,
  ) {
    if (!Number.isInteger(offset) || offset < 0 || offset > buf.length) {
      throw fail(`offset ${offset} outside buffer of ${buf.length} bytes`);
    }
    this.o = offset;
  }

  /** Where the next read starts. */
  get offset(): number {
    return this.o;
  }

  remaining(): number {
    return this.buf.length - this.o;
  }

  /** Throws the codec's error unless `n` more bytes are there; `what` names the field. */
  need(n: number, what: string): void {
    if (this.buf.length - this.o < n) throw this.fail(`${what} truncated at byte ${this.o}`);
  }

  /** A reason the codec decided on, as its own error (for checks on values read). */
  error(reason: string): Error {
    return this.fail(reason);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.o++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.o);
    this.o += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.o);
    this.o += 4;
    return v;
  }

  u48(what: string): number {
    this.need(6, what);
    const v = this.buf.readUIntBE(this.o, 6);
    this.o += 6;
    return v;
  }

  u64(what: string): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.o);
    this.o += 8;
    return v;
  }

  peerName(what: string): PeerName {
    this.need(6, what);
    const v = readPeerName(this.buf, this.o);
    this.o += 6;
    return v;
  }

  /** `n` bytes as a view into the buffer (copy it to keep it past the buffer's life). */
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.o, this.o + n);
    this.o += n;
    return v;
  }

  /**
   * `n` bytes of UTF-8 text. `exact`: only text that re-encodes to the same bytes is
   * accepted (invalid UTF-8 decodes to U+FFFD, which re-encodes longer, so text that is
   * relayed in a length-prefixed field must be exact); otherwise U+FFFD stands in.
   */
  utf8(n: number, what: string, exact: boolean): string {
    const raw = this.bytes(n, what);
    const s = raw.toString('utf8');
    if (exact && !Buffer.from(s, 'utf8').equals(raw)) throw this.fail(`${what} is not valid UTF-8`);
    return s;
  }

  /** A string after its one-byte length. */
  str8(what: string, exact: boolean): string {
    const n = this.u8(`${what} length`);
    return this.utf8(n, what, exact);
  }
}
