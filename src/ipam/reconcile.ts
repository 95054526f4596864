/**
 * Reconciling this host's addresses against what is using them. An address can be held
 * in the store with nothing on this host using it: a store call that timed out and yet
 * committed, a daemon killed between allocating and recording the endpoint, a runtime
 * that never sent the matching release. Nothing else would ever free such an address
 * (this host is alive, so the dead-host sweep leaves it alone), so: at start and then
 * periodically, every address this host holds that no claimant on this host wants is
 * released once it has stayed unwanted, unchanged, for a grace period (an attach in
 * flight has allocated but not yet recorded its endpoint; the grace covers it).
 *
 * The decision "is this address still wanted" is `isAddressWanted`, and only there. A
 * new reason to keep an address (a retention record that keeps a detached container's
 * address for it for a while) is one more clause in that function, or one more claimant
 * passed in, never a second reconciler.
 */
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { ADDRS_PREFIX, parseAddrKey, type AddrRecord } from './blocks';
import { formatIpv4 } from '../net/ipv4';

/** An address record in the store that names this host. */
export interface HeldAddress {
  network: string;
  ip: number;
  id: string;
  ifname: string;
  /** The record's revision when seen: it is released only if still exactly this. */
  modRevision: number;
  /** Allocated through POST /ipam/allocate: its caller holds it with no interface here. */
  unattached: boolean;
  /** A detached id's reservation (`--address-retention`): the sweep frees it when it expires. */
  retained?: boolean;
}

/** An (id, ifname) something on this host uses: an endpoint, an exposure, a Docker handle. */
export interface AddressClaim {
  id: string;
  ifname: string;
}

export function claimKey(id: string, ifname: string): string {
  return `${id}\0${ifname}`;
}

/**
 * Is this address still wanted? Yes when a claimant on this host names its (id, ifname),
 * or when it was allocated for an API caller with no interface (that caller releases it,
 * with POST /ipam/release; we cannot know whether it still uses it).
 */
export function isAddressWanted(held: HeldAddress, claims: ReadonlySet<string>): boolean {
  if (held.unattached) return true;
  // Reserved for an id that was detached: wanted until its retention runs out (the
  // allocator's sweep deletes it then), whichever host the id comes back on.
  if (held.retained === true) return true;
  return claims.has(claimKey(held.id, held.ifname));
}

/** What the reconciler needs of the allocator: release an address only if its record is unchanged. */
export interface UnwantedAddressReleaser {
  readonly self: string;
  releaseIfUnchanged(held: HeldAddress): Promise<boolean>;
}

export interface AddressReconcilerOptions {
  store: Store;
  allocator: UnwantedAddressReleaser;
  /** Everything on this host that uses an address, asked on every pass (after the store listing). */
  claims(): Iterable<AddressClaim>;
  /** How long an address must stay unwanted (and unchanged) before it is released. */
  graceMs: number;
  /** Time between passes (jittered by ±25%). */
  intervalMs: number;
  log: Logger;
}

export const DEFAULT_RECLAIM_GRACE_MS = 60_000;
export const DEFAULT_RECLAIM_INTERVAL_MS = 30_000;

export class AddressReconciler {
  /** "<addr key>@<revision>" -> when first seen unwanted (ms). */
  private readonly suspects = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private passing: Promise<number> | undefined;
  private stopped = false;
  /** Addresses released because nothing on this host wanted them, since start. */
  reclaimed = 0;

  constructor(private readonly opts: AddressReconcilerOptions) {}

  /** A pass now (it marks; nothing is released before the grace period), then periodically. */
  start(): void {
    this.stopped = false;
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    this.pass()
      .catch((err: unknown) =>
        this.opts.log.debug('address reconcile failed; next pass retries', { error: (err as Error).message }),
      )
      .finally(() => {
        if (this.stopped) return;
        this.timer = setTimeout(() => this.tick(), this.opts.intervalMs * (0.75 + Math.random() * 0.5));
        this.timer.unref();
      });
  }

  /** One pass; answers how many addresses it released. Passes never overlap. */
  pass(now = Date.now()): Promise<number> {
    this.passing ??= this.doPass(now).finally(() => {
      this.passing = undefined;
    });
    return this.passing;
  }

  private async doPass(now: number): Promise<number> {
    const { store, allocator, log, graceMs } = this.opts;
    const listing = await store.list(ADDRS_PREFIX);
    // Claims after the listing: an endpoint recorded before the listing is in them, and an
    // address allocated after it is not in the listing.
    const claims = new Set<string>();
    for (const c of this.opts.claims()) claims.add(claimKey(c.id, c.ifname));
    const seen = new Set<string>();
    let released = 0;
    for (const e of listing.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseRecord(e.value);
      if (!k || !rec || rec.host !== allocator.self) continue;
      const held: HeldAddress = {
        network: rec.network,
        ip: k.ip,
        id: rec.id,
        ifname: rec.ifname,
        modRevision: e.modRevision,
        unattached: rec.unattached === true,
        ...(rec.retainedUntil !== undefined ? { retained: true } : {}),
      };
      if (isAddressWanted(held, claims)) continue;
      const suspect = `${e.key}@${e.modRevision}`;
      seen.add(suspect);
      const first = this.suspects.get(suspect);
      if (first === undefined) {
        this.suspects.set(suspect, now);
        log.debug('address held with nothing on this host using it; released after the grace period unless claimed', {
          address: formatIpv4(k.ip),
          network: rec.network,
          id: rec.id,
          ifname: rec.ifname,
        });
        continue;
      }
      if (now - first < graceMs) continue;
      this.suspects.delete(suspect);
      if (await allocator.releaseIfUnchanged(held)) {
        released++;
        log.info('released an address nothing on this host used', {
          address: formatIpv4(k.ip),
          network: rec.network,
          id: rec.id,
          ifname: rec.ifname,
          unusedForS: Math.round((now - first) / 1000),
        });
      }
    }
    for (const s of [...this.suspects.keys()]) if (!seen.has(s)) this.suspects.delete(s);
    this.reclaimed += released;
    return released;
  }
}

function parseRecord(text: string): AddrRecord | undefined {
  try {
    const v = JSON.parse(text) as AddrRecord & { unattached?: unknown; retainedUntil?: unknown };
    if (
      typeof v.id !== 'string' ||
      typeof v.ifname !== 'string' ||
      typeof v.host !== 'string' ||
      typeof v.network !== 'string'
    )
      return undefined;
    return {
      id: v.id,
      ifname: v.ifname,
      host: v.host,
      network: v.network,
      ...(v.unattached === true ? { unattached: true as const } : {}),
      ...(typeof v.retainedUntil === 'number' ? { retainedUntil: v.retainedUntil } : {}),
    };
  } catch {
    return undefined;
  }
}
