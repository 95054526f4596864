/**
 * One network's TAP on its bridge, as the sleeve sees it: frames delivered during a
 * receive batch are queued by position in the UDP ring and written with one batched TAP
 * write at the end of the batch (flush), or at once when they sit in a buffer that is
 * reused on return (a rebuilt fragment series).
 */
import type { OverlayNetwork } from '../../router/overlay';
import { bridgeErrorReason, type DropCounter } from './drops';
import type { TapRing } from './ports';

const TAP_WRITE_CAPACITY = 1024;

export class BridgePort {
  framesFromBridge = 0;
  framesToBridge = 0;
  /** Frames to write to the TAP at the end of the current receive batch. */
  private pendingCount = 0;
  private readonly pendingOffsets = new Uint32Array(TAP_WRITE_CAPACITY);
  private readonly pendingLengths = new Uint32Array(TAP_WRITE_CAPACITY);

  constructor(
    readonly net: OverlayNetwork,
    readonly tapName: string,
    readonly tap: TapRing,
    private readonly drops: DropCounter,
  ) {}

  /** Queue buf[off, off+len) of `ring` (offload block + frame); false if the queue is full (flush first). */
  queue(off: number, len: number): boolean {
    if (this.pendingCount === TAP_WRITE_CAPACITY) return false;
    this.pendingOffsets[this.pendingCount] = off;
    this.pendingLengths[this.pendingCount] = len;
    this.pendingCount++;
    return true;
  }

  /** Write what queue() collected, all at positions in `ring`. */
  flush(ring: Buffer): void {
    const n = this.pendingCount;
    if (n === 0) return;
    this.pendingCount = 0;
    let written: number;
    try {
      written = this.tap.writeBatch(ring, this.pendingOffsets, this.pendingLengths, n);
    } catch (err) {
      this.drops.count(bridgeErrorReason(err), n);
      return;
    }
    this.framesToBridge += written;
    if (written < n) this.drops.count('bridge_queue_full', n - written);
  }

  /** Write one frame now (the caller flushed the queue first, to keep order). */
  writeNow(buf: Buffer, off: number, len: number): void {
    try {
      if (this.tap.write(buf, off, len)) this.framesToBridge++;
      else this.drops.count('bridge_queue_full');
    } catch (err) {
      this.drops.count(bridgeErrorReason(err));
    }
  }
}
