/**
 * 48-bit values (MAC addresses, peer names) as two 24-bit halves, for the frame path.
 *
 * A 48-bit number does not fit V8's small integers, so every time one read from a frame
 * is used as a Map key, passed to a function that is not inlined, or returned from one,
 * the engine allocates a 16-byte heap number for it: several per frame. Halves are small
 * integers (no allocation), and a table keyed by them hands back values stored once.
 */

const HALF = 0x100_0000;

/** The 24-bit half at buf[offset, offset+3), big-endian. No allocation. */
export function readHalf(buf: Buffer, offset: number): number {
  return (buf[offset]! << 16) | (buf[offset + 1]! << 8) | buf[offset + 2]!;
}

/** Write a 24-bit half at buf[offset, offset+3), big-endian. */
export function writeHalf(buf: Buffer, offset: number, half: number): void {
  buf[offset] = half >>> 16;
  buf[offset + 1] = (half >>> 8) & 0xff;
  buf[offset + 2] = half & 0xff;
}

/**
 * The top 24 bits of a 48-bit value. `>>> 0` (not Math.floor) so the engine knows the
 * result is a small integer and never boxes it.
 */
export function highHalf(value: number): number {
  return (value / HALF) >>> 0;
}

/** The low 24 bits of a 48-bit value (a small integer, as highHalf). */
export function lowHalf(value: number): number {
  return (value % HALF) >>> 0;
}

/** The 48-bit value of two halves. */
export function fromHalves(high: number, low: number): number {
  return high * HALF + low;
}

/** A map keyed by a 48-bit number, looked up by its halves without allocating. */
export class HalvesMap<V> {
  private readonly byHigh = new Map<number, Map<number, V>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(high: number, low: number): V | undefined {
    const lows = this.byHigh.get(high);
    return lows === undefined ? undefined : lows.get(low);
  }

  set(key: number, value: V): void {
    const high = highHalf(key);
    let lows = this.byHigh.get(high);
    if (lows === undefined) {
      lows = new Map();
      this.byHigh.set(high, lows);
    }
    const before = lows.size;
    lows.set(lowHalf(key), value);
    this.count += lows.size - before;
  }

  delete(key: number): boolean {
    const high = highHalf(key);
    const lows = this.byHigh.get(high);
    if (lows === undefined || !lows.delete(lowHalf(key))) return false;
    if (lows.size === 0) this.byHigh.delete(high);
    this.count--;
    return true;
  }

  clear(): void {
    this.byHigh.clear();
    this.count = 0;
  }
}
