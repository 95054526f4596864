/**
 * Time, injected. Components that measure intervals (heartbeats, ageing, rekeying) take a
 * `Clock` instead of calling Date.now(): the real one is monotonic, so a wall-clock step
 * (NTP, a suspended VM) never makes a path look dead or a MAC look stale, and tests drive a
 * `ManualClock` instead of waiting.
 */

export interface Clock {
  /** Milliseconds on a monotonic clock with an arbitrary origin; never goes backwards. */
  now(): number;
  /**
   * Milliseconds since the Unix epoch, for timestamps shown to people or compared with
   * other hosts' (status "last answer at"). Never use it to measure an interval.
   */
  wallNow(): number;
}

/** The process's clocks: performance.now() (monotonic) and Date.now(). */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
};

/** A clock that moves only when told to (tests). Both readings advance together. */
export class ManualClock implements Clock {
  private monotonicMs: number;
  private wallMs: number;

  constructor(startMs = 1_000, wallStartMs = Date.UTC(2026, 0, 1)) {
    this.monotonicMs = startMs;
    this.wallMs = wallStartMs;
  }

  now(): number {
    return this.monotonicMs;
  }

  wallNow(): number {
    return this.wallMs;
  }

  /** Move both readings forward by `ms` (>= 0). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`a clock only moves forward, got ${ms} ms`);
    this.monotonicMs += ms;
    this.wallMs += ms;
  }
}
