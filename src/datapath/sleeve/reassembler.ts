/**
 * Rebuilds one fragmented unit per sending peer: a record, or for a sealed peer the
 * sealed unit `epoch | counter | secretbox(FRAMES | record)` (docs/PROTOCOL.md
 * "Fragments"). The chunks of a series leave the sender in one GSO burst, so they must
 * arrive in order; anything else is loss or reordering on the underlay, the series is
 * dropped (`reassembly_gap`) and the sender's TCP retransmits.
 */
import { copyBytes } from '../../native';
import {
  DATAGRAM_HEADER_LENGTH,
  FRAGMENT_HEADER_LENGTH,
  MAX_REASSEMBLED,
  readFragmentId,
  readFragmentOffset,
  readFragmentTotal,
} from './codec';
import type { DropCounter } from './drops';

export class Reassembler {
  /** Allocated on the first fragment, then reused for every series from this peer. */
  private buf: Buffer | undefined;
  private id = -1;
  private got = 0;
  private total = 0;

  constructor(private readonly drops: DropCounter) {}

  /**
   * Take the FRAGMENT datagram at buf[off, off+len) (its header already checked). Returns
   * the length of the unit once complete, at unit()[0, length), valid until the next call;
   * 0 while the series is incomplete or after it was dropped.
   */
  add(buf: Buffer, off: number, len: number): number {
    const h = off + DATAGRAM_HEADER_LENGTH;
    const id = readFragmentId(buf, h);
    const at = readFragmentOffset(buf, h);
    const total = readFragmentTotal(buf, h);
    const chunkStart = h + FRAGMENT_HEADER_LENGTH;
    const chunk = off + len - chunkStart;
    if (at === 0) {
      if (this.got > 0) this.drops.count('reassembly_gap');
      this.id = id;
      this.got = 0;
      this.total = total;
    } else if (id !== this.id || at !== this.got || total !== this.total) {
      if (this.got > 0 || id !== this.id) this.drops.count('reassembly_gap');
      this.reset();
      return 0;
    }
    const r = (this.buf ??= Buffer.allocUnsafe(MAX_REASSEMBLED));
    copyBytes(r, at, buf, chunkStart, chunkStart + chunk);
    this.got += chunk;
    if (this.got < total) return 0;
    this.reset();
    return total;
  }

  /** The buffer a completed unit is in (see add). */
  unit(): Buffer {
    return this.buf!;
  }

  /** Forget a series in progress (new keys, a new connection). */
  reset(): void {
    this.got = 0;
    this.id = -1;
  }
}
