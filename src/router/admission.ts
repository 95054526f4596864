/**
 * Admission of inbound control connections, decided before any handshake work: a cap on
 * handshakes in progress (in total and per remote address), a token bucket of new
 * connections per remote address, and one for all addresses together that addresses the
 * router already knows (configured targets, peers of the topology) and quiet addresses
 * (nothing from them for a while) bypass.
 *
 * Why: a password handshake costs the daemon about 5-7 ms of CPU (bench/handshake.ts:
 * three X25519 multiplications and the Elligator map) plus a connection's buffers until
 * its deadline. Without a cap, anyone who reaches TCP 6783 can spend the daemon's CPU and
 * memory faster than the deadline frees them; with only per-address caps, ten addresses
 * get ten times as much. The global bucket bounds the CPU that addresses opening
 * connections back to back can spend in all; known peers and quiet addresses skip it, so
 * such a flood cannot lock out the mesh or a peer that dials now and then (each address
 * gets one such pass per burst/rate seconds, so an attacker with N addresses adds at most
 * N of those per 2 s). When the table of
 * handshakes in progress is full, the router evicts the oldest (see Router.accept), so
 * slow handshakes cannot hold every place either. Peers of a mesh open a connection now
 * and then (backoff after failures starts at a second), far below these limits. Pure
 * state: the caller passes the time.
 */

export interface AdmissionLimits {
  /** Handshakes in progress, all addresses together. */
  maxPending: number;
  /** Handshakes in progress from one address. */
  maxPendingPerAddress: number;
  /** New connections per second one address may open, sustained. */
  ratePerSecond: number;
  /** ... and in a burst. */
  burst: number;
  /** New connections per second from addresses we do not know, all together. */
  globalRatePerSecond: number;
  /** ... and in a burst. */
  globalBurst: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  maxPending: 64,
  maxPendingPerAddress: 8,
  ratePerSecond: 5,
  burst: 10,
  // 30 handshakes/s at ~6 ms each: strangers get at most about a fifth of one core.
  globalRatePerSecond: 30,
  globalBurst: 60,
};

/** Why a connection was turned away; also the `reason` label of weavets_control_rejected_total. */
export type AdmissionRefusal =
  'too_many_handshakes' | 'too_many_handshakes_from_address' | 'connection_rate_limited' | 'global_rate_limited';

interface Bucket {
  tokens: number;
  atMs: number;
}

/** Buckets kept at most; beyond it, full buckets (idle addresses) are dropped. */
const MAX_BUCKETS = 4096;

export class Admission {
  private readonly pendingBy = new Map<string, number>();
  private pendingTotal = 0;
  private readonly buckets = new Map<string, Bucket>();
  private readonly global: Bucket;

  constructor(private readonly limits: AdmissionLimits = DEFAULT_ADMISSION_LIMITS) {
    this.global = { tokens: limits.globalBurst, atMs: 0 };
  }

  /**
   * Admit a new connection from `address` (pending until done()), or say why not.
   * `known`: the address belongs to a peer or target we know; it skips the global bucket.
   * 'too_many_handshakes' spends no tokens: the caller may free a place and ask again.
   */
  admit(address: string, nowMs: number, known = false): AdmissionRefusal | undefined {
    const pending = this.pendingBy.get(address) ?? 0;
    if (pending >= this.limits.maxPendingPerAddress) return 'too_many_handshakes_from_address';
    if (this.pendingTotal >= this.limits.maxPending) return 'too_many_handshakes';
    const bucket = this.refill(address, nowMs);
    if (bucket.tokens < 1) return 'connection_rate_limited';
    this.refillGlobal(nowMs);
    // A quiet address (its bucket full: nothing from it for burst/rate seconds) gets in
    // even when the global bucket is empty, so addresses that hammer cannot starve a
    // newcomer retrying now and then; hammering addresses share the global bucket.
    const quiet = bucket.tokens >= this.limits.burst;
    if (!known && !quiet && this.global.tokens < 1) return 'global_rate_limited';
    if (this.global.tokens >= 1) this.global.tokens -= 1;
    bucket.tokens -= 1;
    this.pendingBy.set(address, pending + 1);
    this.pendingTotal++;
    return undefined;
  }

  /** An admitted connection finished its handshake or closed before. Call once per admit. */
  done(address: string): void {
    const pending = this.pendingBy.get(address);
    if (pending === undefined) return;
    if (pending <= 1) this.pendingBy.delete(address);
    else this.pendingBy.set(address, pending - 1);
    this.pendingTotal--;
  }

  get pending(): number {
    return this.pendingTotal;
  }

  private refillGlobal(nowMs: number): void {
    const g = this.global;
    const elapsed = Math.max(0, nowMs - g.atMs) / 1000;
    g.tokens = Math.min(this.limits.globalBurst, g.tokens + elapsed * this.limits.globalRatePerSecond);
    g.atMs = nowMs;
  }

  private refill(address: string, nowMs: number): Bucket {
    let b = this.buckets.get(address);
    if (b === undefined) {
      if (this.buckets.size >= MAX_BUCKETS) this.prune(nowMs);
      b = { tokens: this.limits.burst, atMs: nowMs };
      this.buckets.set(address, b);
      return b;
    }
    const elapsed = Math.max(0, nowMs - b.atMs) / 1000;
    b.tokens = Math.min(this.limits.burst, b.tokens + elapsed * this.limits.ratePerSecond);
    b.atMs = nowMs;
    return b;
  }

  /** Drop buckets that have refilled (they say nothing a fresh one would not); if none has, the oldest. */
  private prune(nowMs: number): void {
    for (const [address, b] of this.buckets) {
      const tokens = b.tokens + (Math.max(0, nowMs - b.atMs) / 1000) * this.limits.ratePerSecond;
      if (tokens >= this.limits.burst) this.buckets.delete(address);
    }
    if (this.buckets.size >= MAX_BUCKETS) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
  }
}
