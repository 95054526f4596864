/**
 * The idle memory trim (src/daemon/memory-trim.ts): when it trims, what it remembers, the
 * component on a manual clock with scripted readings, and the native trim itself in a
 * child node process whose heap grew in a burst.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import {
  CHECK_INTERVAL_MS,
  MIN_TRIM_GAP_MS,
  QUIET_UTILIZATION,
  TRIM_GROWTH_BYTES,
  memoryTrimComponent,
  nextState,
  shouldTrim,
  type TrimReadings,
} from '../../src/daemon/memory-trim';
import { ManualClock } from '../../src/net/clock';
import { Registry } from '../../src/metrics/registry';
import { createLogger, silentLogger } from '../../src/log';

const MB = 2 ** 20;

describe('shouldTrim', () => {
  const state = { floor: 10 * MB, lastTrimAt: -Infinity };
  it('trims a heap grown past the floor while the loop is quiet', () => {
    expect(shouldTrim(state, { heapBytes: 10 * MB + TRIM_GROWTH_BYTES, utilization: 0.01, now: 0 })).toBe(true);
  });
  it('leaves a heap that grew less than the step', () => {
    expect(shouldTrim(state, { heapBytes: 10 * MB + TRIM_GROWTH_BYTES - 1, utilization: 0, now: 0 })).toBe(false);
  });
  it('waits while the loop is busy: the collection would pause the data path', () => {
    expect(shouldTrim(state, { heapBytes: 30 * MB, utilization: QUIET_UTILIZATION, now: 0 })).toBe(false);
  });
  it('trims at most once per gap', () => {
    const after = { floor: 10 * MB, lastTrimAt: 100_000 };
    expect(shouldTrim(after, { heapBytes: 30 * MB, utilization: 0, now: 100_000 + MIN_TRIM_GAP_MS - 1 })).toBe(false);
    expect(shouldTrim(after, { heapBytes: 30 * MB, utilization: 0, now: 100_000 + MIN_TRIM_GAP_MS })).toBe(true);
  });
});

describe('nextState', () => {
  it('lets the floor follow the heap down but not up', () => {
    const s = { floor: 10 * MB, lastTrimAt: 5 };
    expect(nextState(s, { heapBytes: 8 * MB, utilization: 1, now: 9 }, false)).toEqual({
      floor: 8 * MB,
      lastTrimAt: 5,
    });
    expect(nextState(s, { heapBytes: 12 * MB, utilization: 1, now: 9 }, false)).toEqual(s);
  });
  it('restarts the floor at the heap a trim was asked at, and remembers when', () => {
    const s = { floor: 10 * MB, lastTrimAt: 5 };
    expect(nextState(s, { heapBytes: 20 * MB, utilization: 0, now: 9 }, true)).toEqual({
      floor: 20 * MB,
      lastTrimAt: 9,
    });
  });
});

describe('memoryTrimComponent', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Readings from a script: the heap and utilization each check sees; a trim sets the heap to `trimTo`. */
  function scripted(heap: number[], busy: number[], trimTo: number) {
    let h = 0;
    const trims: number[] = [];
    const readings: TrimReadings = {
      heapBytes: () => h,
      utilization: () => busy.shift() ?? 0,
      trim: () => {
        trims.push(h);
        h = trimTo;
      },
    };
    return { readings, trims, next: () => (h = heap.shift() ?? h) };
  }

  it('trims after a burst once the loop is quiet, again only after growth and the gap, and counts it', async () => {
    const clock = new ManualClock();
    const metrics = new Registry();
    // Each check's heap (a trim leaves 11 MB) and loop utilization, 10 s apart.
    const s = scripted(
      [20 * MB, 20 * MB, 11 * MB, 12.5 * MB, 13.5 * MB, 30 * MB],
      [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],
      11 * MB,
    );
    const c = memoryTrimComponent({ log: silentLogger, metrics, readings: s.readings, clock });
    await c.start();
    const tick = (): void => {
      s.next();
      clock.advance(CHECK_INTERVAL_MS);
      vi.advanceTimersByTime(CHECK_INTERVAL_MS);
    };
    tick(); // 20 MB since start, but busy
    expect(s.trims).toEqual([]);
    tick(); // quiet: the first trim
    expect(s.trims).toEqual([20 * MB]);
    tick(); // 11 MB: the floor
    tick(); // 12.5 MB: less than the step above it
    expect(s.trims).toHaveLength(1);
    tick(); // 13.5 MB, 30 s after the first: the second
    expect(s.trims).toEqual([20 * MB, 13.5 * MB]);
    expect(await metrics.metrics()).toMatch(/^weavets_memory_trims_total 2$/m);
    await c.stop('stop');
    tick();
    expect(s.trims).toHaveLength(2);
  });

  it('stops checking, with one warning, when the trim fails', async () => {
    const lines: string[] = [];
    const log = createLogger('warn', { write: (line: string) => (lines.push(line), true) });
    let calls = 0;
    const readings: TrimReadings = {
      heapBytes: () => 20 * MB,
      utilization: () => 0,
      trim: () => {
        calls++;
        throw new Error('no addon');
      },
    };
    const clock = new ManualClock();
    const c = memoryTrimComponent({ log, metrics: new Registry(), readings, clock });
    await c.start();
    for (let i = 0; i < 10; i++) {
      clock.advance(MIN_TRIM_GAP_MS);
      vi.advanceTimersByTime(CHECK_INTERVAL_MS);
    }
    expect(calls).toBe(1);
    expect(lines.filter((l) => l.includes('memory trim off'))).toHaveLength(1);
    await c.stop('stop');
  });
});

describe('trimMemory (native)', () => {
  it('gives back the heap a burst grew, within a second, in a node process of its own', () => {
    // A child, so the test runner's own heap does not blur the numbers. The collection
    // runs incrementally on later turns of the loop: poll for its result.
    const script = `
      const v8 = require('node:v8');
      const { trimMemory } = require(${JSON.stringify(path.join(__dirname, '../../src/native/index.ts'))});
      let keep = [];
      for (let i = 0; i < 300000; i++) keep.push({ i, s: 'x'.repeat(40) + i });
      keep = null;
      const before = v8.getHeapStatistics().total_heap_size;
      trimMemory();
      const t0 = Date.now();
      const poll = setInterval(() => {
        const after = v8.getHeapStatistics().total_heap_size;
        if (after < before / 2 || Date.now() - t0 > 1000) {
          clearInterval(poll);
          process.stdout.write(JSON.stringify({ before, after }));
        }
      }, 10);
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8' });
    const { before, after } = JSON.parse(out) as { before: number; after: number };
    expect(before).toBeGreaterThan(40 * MB);
    expect(after).toBeLessThan(before / 2);
  });
});
