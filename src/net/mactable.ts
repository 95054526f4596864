/**
 * MAC -> owning peer, per network id, learned from the source MAC of traffic and aged out.
 *
 * On the frame path, MACs come as two 24-bit halves (src/net/halves.ts): refresh() of a
 * known MAC and entryOf() allocate nothing, where a 48-bit number would be boxed. Entries
 * sit on one intrusive list ordered by last sighting (oldest first), so expiry and
 * eviction of the oldest are O(1) per entry and refresh is O(1).
 *
 * Times are the caller's monotonic clock in milliseconds (e.g. performance.now()); they
 * must never go backwards, which is what keeps the list ordered.
 *
 * Change events (setListener): a MAC learned, moved to another peer, or gone (expired,
 * evicted, forgotten) marks its entry and queues it once; the queue is drained later
 * (setImmediate, never inside learn()), reporting each queued MAC's state at drain time.
 * So a refresh of a known MAC costs nothing more, a burst of changes is one batch, and a
 * MAC that changed twice before the drain is reported once, as it is now.
 */
import { HalvesMap, fromHalves, highHalf, lowHalf } from './halves';
import { isMulticastMac } from './mac';
import type { PeerName } from './peername';

/** What entryOf() hands the frame path: the owner of a MAC. */
export interface MacOwner {
  readonly peer: PeerName;
  /** The owner's name as 24-bit halves (src/net/halves.ts), for lookups that must not box it. */
  readonly peerHigh: number;
  readonly peerLow: number;
}

interface MacEntry extends MacOwner {
  readonly networkId: number;
  readonly mac: number;
  peer: PeerName;
  peerHigh: number;
  peerLow: number;
  seenMs: number;
  prev: MacEntry | undefined; // older
  next: MacEntry | undefined; // newer
  /** In the change queue, not drained yet. */
  queued: boolean;
  /** Removed from the table (the queue may still hold it, to report it gone). */
  gone: boolean;
}

/** Receives the table's changes, batched and off the frame path. */
export interface MacTableListener {
  /** `peer` owns `mac` on `networkId` now (learned or moved), or nobody does (undefined). */
  macChanged(networkId: number, mac: number, peer: PeerName | undefined): void;
  /** The end of one drained batch. */
  macBatchEnd?(): void;
}

export interface MacTableStats {
  /** MACs learned for the first time. */
  learned: number;
  /** Known MACs seen behind another peer. */
  moved: number;
  /** Oldest entries evicted because the table was full. */
  evicted: number;
  /** Entries removed by expire(). */
  expired: number;
}

export class MacTable {
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  private readonly byNetwork = new Map<number, HalvesMap<MacEntry>>();
  private oldest: MacEntry | undefined;
  private newest: MacEntry | undefined;
  private count = 0;
  private latestMs = 0;
  private listener: MacTableListener | undefined;
  private changes: MacEntry[] = [];
  private drainScheduled = false;
  private readonly drain = (): void => this.flushChanges();
  readonly stats: MacTableStats = { learned: 0, moved: 0, evicted: 0, expired: 0 };

  constructor(opts: { maxAgeMs: number; maxEntries?: number }) {
    if (!(opts.maxAgeMs > 0)) throw new RangeError(`maxAgeMs must be positive, got ${opts.maxAgeMs}`);
    const max = opts.maxEntries ?? 65536;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxEntries must be a positive integer, got ${max}`);
    this.maxAgeMs = opts.maxAgeMs;
    this.maxEntries = max;
  }

  /**
   * Learn or refresh. Returns true if the MAC was new or moved to another peer. Multicast
   * MACs are never valid sources and are ignored (false). When the table is full the
   * oldest entry is evicted (counted in stats.evicted): fresh traffic matters more.
   */
  learn(networkId: number, mac: number, peer: PeerName, nowMs: number): boolean {
    if (nowMs > this.latestMs) this.latestMs = nowMs;
    if (isMulticastMac(mac)) return false;
    let net = this.byNetwork.get(networkId);
    const e = net?.get(highHalf(mac), lowHalf(mac));
    if (e !== undefined) {
      e.seenMs = nowMs;
      this.moveToNewest(e);
      if (e.peer === peer) return false;
      e.peer = peer;
      e.peerHigh = highHalf(peer);
      e.peerLow = lowHalf(peer);
      this.stats.moved++;
      this.changed(e);
      return true;
    }
    if (this.count >= this.maxEntries) {
      this.remove(this.oldest!);
      this.stats.evicted++;
      // The eviction may have emptied and dropped this network's map.
      net = this.byNetwork.get(networkId);
    }
    if (net === undefined) {
      net = new HalvesMap();
      this.byNetwork.set(networkId, net);
    }
    const fresh: MacEntry = {
      networkId,
      mac,
      peer,
      peerHigh: highHalf(peer),
      peerLow: lowHalf(peer),
      seenMs: nowMs,
      prev: this.newest,
      next: undefined,
      queued: false,
      gone: false,
    };
    if (this.newest !== undefined) this.newest.next = fresh;
    else this.oldest = fresh;
    this.newest = fresh;
    net.set(mac, fresh);
    this.count++;
    this.stats.learned++;
    this.changed(fresh);
    return true;
  }

  /**
   * Report changes to `listener` from now on (undefined: stop). Every entry the table
   * holds already is queued as learned, so the listener starts from the whole table.
   */
  setListener(listener: MacTableListener | undefined): void {
    this.listener = listener;
    if (listener === undefined) {
      for (const e of this.changes) e.queued = false;
      this.changes = [];
      return;
    }
    for (let e = this.oldest; e !== undefined; e = e.next) this.changed(e);
  }

  /** Deliver queued changes now (also what the scheduled drain does). */
  flushChanges(): void {
    this.drainScheduled = false;
    const l = this.listener;
    if (l === undefined || this.changes.length === 0) return;
    const batch = this.changes;
    this.changes = [];
    for (const e of batch) {
      e.queued = false;
      l.macChanged(e.networkId, e.mac, e.gone ? undefined : e.peer);
    }
    l.macBatchEnd?.();
  }

  /** Changes waiting for the drain. */
  pendingChanges(): number {
    return this.changes.length;
  }

  private changed(e: MacEntry): void {
    if (this.listener === undefined || e.queued) return;
    e.queued = true;
    this.changes.push(e);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(this.drain);
    }
  }

  /** Owning peer, or undefined when unknown or expired. */
  lookup(networkId: number, mac: number, nowMs: number): PeerName | undefined {
    return this.entryOf(networkId, highHalf(mac), lowHalf(mac), nowMs)?.peer;
  }

  /**
   * The frame path's lookup, by the MAC's halves: its entry (read `peer`), or undefined
   * when unknown or expired. Returns the entry rather than the name so that no 48-bit
   * number is boxed on the way out.
   */
  entryOf(networkId: number, high: number, low: number, nowMs: number): MacOwner | undefined {
    const net = this.byNetwork.get(networkId);
    const e = net === undefined ? undefined : net.get(high, low);
    if (e === undefined || nowMs - e.seenMs > this.maxAgeMs) return undefined;
    return e;
  }

  /**
   * The frame path's learn(), by the MAC's halves: refreshing a known MAC behind the same
   * peer allocates nothing; anything else is learn(). Same result as learn().
   */
  refresh(networkId: number, high: number, low: number, peer: PeerName, nowMs: number): boolean {
    const net = this.byNetwork.get(networkId);
    const e = net === undefined ? undefined : net.get(high, low);
    if (e === undefined || e.peer !== peer) return this.learn(networkId, fromHalves(high, low), peer, nowMs);
    if (nowMs > this.latestMs) this.latestMs = nowMs;
    e.seenMs = nowMs;
    this.moveToNewest(e);
    return false;
  }

  /** Remove expired entries; returns how many. */
  expire(nowMs: number): number {
    if (nowMs > this.latestMs) this.latestMs = nowMs;
    let n = 0;
    while (this.oldest !== undefined && nowMs - this.oldest.seenMs > this.maxAgeMs) {
      this.remove(this.oldest);
      n++;
    }
    this.stats.expired += n;
    return n;
  }

  /** Forget every MAC of a peer (peer gone); returns how many. */
  forgetPeer(peer: PeerName): number {
    let n = 0;
    for (let e = this.oldest; e !== undefined;) {
      const next = e.next;
      if (e.peer === peer) {
        this.remove(e);
        n++;
      }
      e = next;
    }
    return n;
  }

  size(): number {
    return this.count;
  }

  /** Every entry, oldest first; ages relative to nowMs (default: the latest time seen). */
  entries(nowMs: number = this.latestMs): { networkId: number; mac: number; peer: PeerName; ageMs: number }[] {
    const out: { networkId: number; mac: number; peer: PeerName; ageMs: number }[] = [];
    for (let e = this.oldest; e !== undefined; e = e.next) {
      out.push({ networkId: e.networkId, mac: e.mac, peer: e.peer, ageMs: Math.max(0, nowMs - e.seenMs) });
    }
    return out;
  }

  private moveToNewest(e: MacEntry): void {
    if (e === this.newest) return;
    this.unlink(e);
    e.prev = this.newest;
    e.next = undefined;
    this.newest!.next = e; // non-empty: e was in the list and was not the newest
    this.newest = e;
  }

  private unlink(e: MacEntry): void {
    if (e.prev !== undefined) e.prev.next = e.next;
    else this.oldest = e.next;
    if (e.next !== undefined) e.next.prev = e.prev;
    else this.newest = e.prev;
    e.prev = undefined;
    e.next = undefined;
  }

  private remove(e: MacEntry): void {
    this.unlink(e);
    const net = this.byNetwork.get(e.networkId)!;
    net.delete(e.mac);
    if (net.size === 0) this.byNetwork.delete(e.networkId);
    this.count--;
    e.gone = true;
    this.changed(e);
  }
}
