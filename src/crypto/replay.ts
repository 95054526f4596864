/**
 * Sliding replay window over datagram counters, RFC 6479 style: a ring of 32-bit
 * blocks, so advancing the window clears whole blocks instead of shifting bits. Every
 * operation is O(1) (a jump clears at most the ring once) and nothing is allocated
 * after construction.
 *
 * Semantics, with `highest` the largest counter accepted so far: a counter is accepted
 * iff it is an integer in [0, 2^53], not accepted before, and
 * `counter > highest - windowSize` (so exactly `windowSize` counters, highest
 * included, are remembered). Anything older is refused.
 */
import { CryptoError } from './errors';

const BLOCK_BITS = 32;
const MAX_COUNTER = 2 ** 53;

export class ReplayWindow {
  readonly windowSize: number;
  private readonly ring: Uint32Array;
  private readonly blocks: number;
  /** Largest accepted counter; -1 before the first. */
  private highest = -1;

  constructor(windowSize = 4096) {
    if (!Number.isInteger(windowSize) || windowSize < BLOCK_BITS || windowSize % BLOCK_BITS !== 0) {
      throw new CryptoError('EWEAVETS_CRYPTO_BAD_INPUT', `window size ${windowSize} must be a positive multiple of 32`);
    }
    this.windowSize = windowSize;
    // One block more than the window, rounded up to a power of two: counters in
    // (highest - windowSize, highest] then never share a ring slot.
    let blocks = 1;
    while (blocks < windowSize / BLOCK_BITS + 1) blocks *= 2;
    this.blocks = blocks;
    this.ring = new Uint32Array(blocks);
  }

  /** True if `counter` is new (not seen, not too old); records it. */
  accept(counter: number): boolean {
    if (!this.wouldAccept(counter)) return false;
    const block = Math.floor(counter / BLOCK_BITS);
    if (counter > this.highest) {
      const current = Math.floor(this.highest / BLOCK_BITS); // -1 before the first counter
      const advance = block - current;
      if (advance >= this.blocks) {
        this.ring.fill(0);
      } else {
        for (let i = 1; i <= advance; i++) this.ring[(current + i) % this.blocks] = 0;
      }
      this.highest = counter;
    }
    const slot = block % this.blocks;
    this.ring[slot] = this.ring[slot]! | (1 << (counter % BLOCK_BITS));
    return true;
  }

  /** What accept would answer, without recording anything. */
  wouldAccept(counter: number): boolean {
    if (!Number.isInteger(counter) || counter < 0 || counter > MAX_COUNTER) return false;
    if (counter > this.highest) return true;
    if (this.highest - counter >= this.windowSize) return false;
    const word = this.ring[Math.floor(counter / BLOCK_BITS) % this.blocks]!;
    return ((word >>> (counter % BLOCK_BITS)) & 1) === 0;
  }

  /** Forget everything: for a new session, never for a rekey within one. */
  reset(): void {
    this.ring.fill(0);
    this.highest = -1;
  }
}
