/**
 * Giving memory back after a burst. V8 keeps the heap it grew to while a mesh formed,
 * peers joined or a policy was compiled, long after that garbage is dead: its memory
 * reducer runs a few memory-reducing collections after start and then waits for the heap
 * to grow well past the size it last ran at. So a daemon that lived
 * through a burst sat 5-7 MB above one that did not (bench/scale.ts, 25 hosts: the first
 * and middle hosts 71-73 MB resident, the last 64 MB).
 *
 * Every CHECK_INTERVAL_MS this looks at the heap V8 holds. When it has grown by
 * TRIM_GROWTH_BYTES above the lowest it was seen at since the last trim, and the event
 * loop was busy less than QUIET_UTILIZATION of the interval, it trims (native/src/memory.cc):
 * V8 starts an incremental, memory-reducing collection and glibc returns its free pages.
 * The collection ends in one pause of the loop the data path shares (under 10 ms measured
 * on a 25-host daemon's heap), so it waits for a quiet loop and happens at most once per
 * MIN_TRIM_GAP_MS. What it released shows at the next check, which lowers the floor.
 */
import * as v8 from 'node:v8';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Logger } from '../log';
import { Counter } from '../metrics/counter';
import type { Registry } from '../metrics/registry';
import { trimMemory } from '../native';
import { systemClock, type Clock } from '../net/clock';
import { component } from './component';

export const CHECK_INTERVAL_MS = 10_000;
export const TRIM_GROWTH_BYTES = 2 * 1024 * 1024;
export const QUIET_UTILIZATION = 0.1;
export const MIN_TRIM_GAP_MS = 30_000;

/** What the trimmer remembers between checks. */
export interface TrimState {
  /** The smallest heap seen since the last trim, in bytes; 0 before the first. */
  floor: number;
  /** Monotonic ms of the last trim; -Infinity before the first. */
  lastTrimAt: number;
}

/** One check's readings. */
export interface TrimSample {
  heapBytes: number;
  /** The event loop's utilization over the interval since the last check, 0..1. */
  utilization: number;
  now: number;
}

/** Whether to trim now: the heap grew past the floor, the loop is quiet, and the last trim is far enough back. */
export function shouldTrim(state: TrimState, s: TrimSample): boolean {
  return (
    s.heapBytes - state.floor >= TRIM_GROWTH_BYTES &&
    s.utilization < QUIET_UTILIZATION &&
    s.now - state.lastTrimAt >= MIN_TRIM_GAP_MS
  );
}

/**
 * The state after a check: the floor follows the heap down, and a trim restarts it at the
 * heap it was asked at (the collection releases later; the next checks lower the floor).
 */
export function nextState(state: TrimState, s: TrimSample, trimmed: boolean): TrimState {
  if (trimmed) return { floor: s.heapBytes, lastTrimAt: s.now };
  return { floor: Math.min(state.floor, s.heapBytes), lastTrimAt: state.lastTrimAt };
}

export interface MemoryTrimDeps {
  log: Logger;
  metrics: Registry;
  /** The process's readings and trim by default; injected in tests. */
  readings?: TrimReadings;
  clock?: Clock;
}

export interface TrimReadings {
  /** Bytes V8 holds for the heap (total_heap_size). */
  heapBytes(): number;
  /** The event loop's utilization since the previous call (or since this was made), 0..1. */
  utilization(): number;
  trim(): void;
}

function processReadings(): TrimReadings {
  let since: EventLoopUtilization = performance.eventLoopUtilization();
  return {
    heapBytes: () => v8.getHeapStatistics().total_heap_size,
    utilization() {
      const now = performance.eventLoopUtilization();
      const u = performance.eventLoopUtilization(now, since).utilization;
      since = now;
      return u;
    },
    trim: trimMemory,
  };
}

export function memoryTrimComponent(d: MemoryTrimDeps) {
  const clock = d.clock ?? systemClock;
  const log = d.log.child('memory');
  const trims = new Counter({
    name: 'weavets_memory_trims_total',
    help: 'Times the daemon gave spare heap and malloc memory back to the kernel while idle.',
    registry: d.metrics,
  });
  return component(
    'memory trim',
    () => {
      const r = d.readings ?? processReadings();
      // Floor 0: what starting left behind is the first burst to give back.
      let state: TrimState = { floor: 0, lastTrimAt: -Infinity };
      const check = (): void => {
        const sample = { heapBytes: r.heapBytes(), utilization: r.utilization(), now: clock.now() };
        const trimmed = shouldTrim(state, sample);
        if (trimmed) {
          r.trim();
          trims.inc();
          log.debug('giving spare memory back', {
            heapMb: +(sample.heapBytes / 2 ** 20).toFixed(1),
            floorMb: +(state.floor / 2 ** 20).toFixed(1),
          });
        }
        state = nextState(state, sample, trimmed);
      };
      const timer = setInterval(() => {
        try {
          check();
        } catch (err) {
          // Nothing here fails by chance (a missing addon, a V8 without the call): say so once.
          clearInterval(timer);
          log.warn('memory trim off: it failed', { error: (err as Error).message });
        }
      }, CHECK_INTERVAL_MS);
      timer.unref();
      return timer;
    },
    (timer) => clearInterval(timer),
  );
}
