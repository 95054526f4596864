import { describe, expect, it } from 'vitest';

import { ReplayWindow } from '../../src/crypto/replay';

/** The documented semantics, written the obvious way. */
class NaiveWindow {
  private readonly seen = new Set<number>();
  private highest = -1;
  constructor(private readonly size: number) {}
  accept(c: number): boolean {
    if (!Number.isInteger(c) || c < 0 || c > 2 ** 53) return false;
    if (this.seen.has(c)) return false;
    if (c <= this.highest && this.highest - c >= this.size) return false;
    this.seen.add(c);
    if (c > this.highest) this.highest = c;
    return true;
  }
}

/** Small seeded PRNG so a failure can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe('ReplayWindow', () => {
  it('accepts counters in order, each once', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 20000; c++) expect(w.accept(c)).toBe(true);
    for (let c = 20000 - 4096; c < 20000; c++) expect(w.accept(c)).toBe(false);
  });

  it('accepts reordering within the window once, refuses duplicates', () => {
    const w = new ReplayWindow(64);
    expect(w.accept(100)).toBe(true);
    for (const c of [99, 37, 98, 60, 101, 61]) expect(w.accept(c), `${c}`).toBe(true);
    for (const c of [99, 37, 98, 60, 101, 61, 100]) expect(w.accept(c), `${c} again`).toBe(false);
  });

  it('refuses counters that are too old, at exactly the window edge', () => {
    const w = new ReplayWindow(64);
    expect(w.accept(1000)).toBe(true);
    expect(w.wouldAccept(1000 - 63)).toBe(true); // 64 counters: 937..1000
    expect(w.wouldAccept(1000 - 64)).toBe(false);
    expect(w.accept(936)).toBe(false);
    expect(w.accept(0)).toBe(false);
    expect(w.accept(937)).toBe(true);
  });

  it('wouldAccept does not record', () => {
    const w = new ReplayWindow();
    expect(w.wouldAccept(5)).toBe(true);
    expect(w.wouldAccept(5)).toBe(true);
    expect(w.accept(5)).toBe(true);
    expect(w.wouldAccept(5)).toBe(false);
    expect(w.wouldAccept(4)).toBe(true);
  });

  it('clears the bitmap correctly on jumps of every size', () => {
    for (const jump of [1, 31, 32, 33, 64, 4095, 4096, 4097, 4128, 4160, 8192, 1e6, 2 ** 40]) {
      const w = new ReplayWindow();
      for (let c = 0; c < 5000; c++) w.accept(c);
      const top = 4999 + jump;
      expect(w.accept(top)).toBe(true);
      // everything still inside the window and not yet seen must be accepted exactly once
      for (let c = top - 4095; c < top; c++) {
        const seenBefore = c < 5000;
        expect(w.accept(c), `jump ${jump}, counter ${c}`).toBe(!seenBefore);
      }
      expect(w.accept(top - 4096)).toBe(false);
    }
  });

  it('matches the naive model on random traffic (reorder, duplicates, jumps)', () => {
    const outcomes = [0, 0];
    for (const size of [32, 64, 96, 4096]) {
      const rand = prng(size);
      const w = new ReplayWindow(size);
      const m = new NaiveWindow(size);
      let base = 0;
      for (let i = 0; i < 50000; i++) {
        const r = rand();
        let c: number;
        if (r < 0.6)
          c = base + Math.floor(rand() * 8) - 2; // mostly forward, a little reordering
        else if (r < 0.85)
          c = base - Math.floor(rand() * size * 1.5); // late, around the edge
        else if (r < 0.98)
          c = base - Math.floor(rand() * 40); // duplicates likely
        else c = base + Math.floor(rand() * size * 3); // a jump
        if (c > base) base = c;
        if (c < 0) c = 0;
        const would = w.wouldAccept(c);
        const got = w.accept(c);
        const want = m.accept(c);
        if (would !== got || got !== want) {
          expect({ size, step: i, counter: c, would, got }).toEqual({
            size,
            step: i,
            counter: c,
            would: want,
            got: want,
          });
        }
        outcomes[got ? 0 : 1] = outcomes[got ? 0 : 1]! + 1;
      }
    }
    // the traffic really exercised both answers
    expect(outcomes[0]).toBeGreaterThan(50000);
    expect(outcomes[1]).toBeGreaterThan(50000);
  });

  it('works near 2^53 and refuses what a nonce cannot carry', () => {
    const w = new ReplayWindow();
    const top = 2 ** 53;
    expect(w.accept(top - 5000)).toBe(true);
    expect(w.accept(top - 100)).toBe(true);
    expect(w.accept(top - 3)).toBe(true);
    expect(w.accept(top - 100)).toBe(false);
    expect(w.accept(top - 99)).toBe(true);
    expect(w.accept(top - 5000)).toBe(false); // now too old
    expect(w.accept(top)).toBe(true);
    expect(w.accept(top)).toBe(false);
    expect(w.accept(top - 1)).toBe(true);
    for (const bad of [top + 2, -1, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(w.accept(bad)).toBe(false);
  });

  it('reset forgets everything', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 10; c++) w.accept(c);
    w.accept(1e9);
    w.reset();
    for (let c = 0; c < 10; c++) expect(w.accept(c)).toBe(true);
  });

  it('refuses window sizes that are not positive multiples of 32', () => {
    for (const bad of [0, 16, 100, -32, 1.5]) {
      expect(() => new ReplayWindow(bad)).toThrow(expect.objectContaining({ code: 'EWEAVETS_CRYPTO_BAD_INPUT' }));
    }
    expect(new ReplayWindow(32).windowSize).toBe(32);
  });
});
