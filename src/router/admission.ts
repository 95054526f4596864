/**
 * Admission of inbound control connections, decided before any handshake work: a cap on
 * handshakes in progress (in total and per remote address) and a token bucket of new
 * connections per remote address.
 *
 * Why: each handshake costs the daemon a CPace exchange and an X25519 agreement plus a
 * connection's buffers for up to HANDSHAKE_TIMEOUT_MS. Without a cap, anyone who reaches
 * TCP 6783 can spend the daemon's CPU and memory faster than the timeout frees them. Peers
 * of a mesh open a connection now and then (backoff after failures starts at a second),
 * far below these limits. Pure state: the caller passes the time.
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
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = { maxPending: 64, maxPendingPerAddress: 16, ratePerSecond: 20, burst: 40 };

/** Why a connection was turned away; also the `reason` label of weavets_control_rejected_total. */
export type AdmissionRefusal = 'too_many_handshakes' | 'too_many_handshakes_from_address' | 'connection_rate_limited';

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

  constructor(private readonly limits: AdmissionLimits = DEFAULT_ADMISSION_LIMITS) {}

  /** Admit a new connection from `address` (pending until done()), or say why not. */
  admit(address: string, nowMs: number): AdmissionRefusal | undefined {
    if (this.pendingTotal >= this.limits.maxPending) return 'too_many_handshakes';
    const pending = this.pendingBy.get(address) ?? 0;
    if (pending >= this.limits.maxPendingPerAddress) return 'too_many_handshakes_from_address';
    const bucket = this.refill(address, nowMs);
    if (bucket.tokens < 1) return 'connection_rate_limited';
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
