/**
 * The peer registry in the store: each daemon registers hosts/<peer name> = {name,
 * nickname, address} on its lease, and watches hosts/ to learn the others. The
 * registration is also the host's liveness for IPAM: while it exists, nobody reclaims
 * the host's blocks and addresses.
 *
 * The lease is granted once and kept alive by the store client (no re-grant while it
 * lives). If the store declares it lost (we could not reach etcd for longer than the
 * TTL), or our registration is deleted (`rmpeer` by mistake), we register again on a new
 * lease and tell the allocator to re-assert what it holds.
 */
import type { Logger } from '../log';
import type { Store, StoreLease, StoreWatch } from '../store/types';
import { HOSTS_PREFIX, hostKey } from './blocks';
import { compareText } from '../text-order';

export interface HostRecord {
  name: string;
  nickname: string;
  /** Control address peers dial: "192.0.2.11:6783". */
  address: string;
}

export interface HostRegistryOptions {
  store: Store;
  self: HostRecord;
  ttlSeconds: number;
  log: Logger;
  /** The other registered hosts, whenever the set changes (and periodically). */
  onPeers(peers: HostRecord[]): void;
  /** We registered again after losing the registration. */
  onReregistered(): Promise<void>;
  /** How often to hand the peer list out again even without changes, ms (default 10 s). */
  refreshMs?: number;
}

const RETRY_MS = 1000;

export class HostRegistry {
  private lease: StoreLease | undefined;
  private watch: StoreWatch | undefined;
  private readonly hosts = new Map<string, HostRecord>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private registering: Promise<void> | undefined;
  private closed = false;

  private constructor(private readonly opts: HostRegistryOptions) {}

  /** Register (fails if the store is unavailable) and start watching. */
  static async start(opts: HostRegistryOptions): Promise<HostRegistry> {
    const r = new HostRegistry(opts);
    await r.register();
    r.watch = opts.store.watch(HOSTS_PREFIX, {
      onReset: (entries) => {
        r.hosts.clear();
        for (const e of entries) r.learn(e.key, e.value);
        r.changed();
      },
      onEvents: (events) => {
        for (const e of events) {
          if (e.type === 'put') r.learn(e.key, e.value);
          else {
            r.hosts.delete(e.key.slice(HOSTS_PREFIX.length));
            if (e.key === hostKey(opts.self.name)) r.recover('our registration was deleted');
          }
        }
        r.changed();
      },
    });
    r.refreshTimer = setInterval(() => r.changed(), opts.refreshMs ?? 10_000);
    r.refreshTimer.unref();
    return r;
  }

  private learn(key: string, value: string): void {
    try {
      const rec = JSON.parse(value) as HostRecord;
      if (typeof rec.name === 'string' && typeof rec.address === 'string')
        this.hosts.set(key.slice(HOSTS_PREFIX.length), rec);
    } catch {
      this.opts.log.warn('ignoring an unreadable host registration', { key });
    }
  }

  private changed(): void {
    if (this.closed) return;
    this.opts.onPeers(this.peers());
  }

  /** Registered hosts other than this one. */
  peers(): HostRecord[] {
    return [...this.hosts.values()]
      .filter((h) => h.name !== this.opts.self.name)
      .sort((a, b) => compareText(a.name, b.name));
  }

  /** Every registered host, this one included. */
  all(): HostRecord[] {
    return [...this.hosts.values()].sort((a, b) => compareText(a.name, b.name));
  }

  get leaseId(): string | undefined {
    return this.lease?.id;
  }

  private async register(): Promise<void> {
    const { store, self, ttlSeconds, log } = this.opts;
    const previous = await store.get(hostKey(self.name));
    const lease = await store.grantLease(ttlSeconds);
    try {
      await store.put(hostKey(self.name), JSON.stringify(self), lease.id);
    } catch (err) {
      lease.release();
      throw err;
    }
    this.lease = lease;
    lease.onLost((reason) => this.recover(`lease lost: ${reason}`));
    // The lease of our previous run (restarted within its TTL) holds nothing any more.
    if (previous && previous.lease !== '0' && previous.lease !== lease.id) {
      await store.revokeLease(previous.lease).catch(() => undefined);
    }
    log.info('registered in the store', { store: store.kind, address: self.address, lease: lease.id, ttl: ttlSeconds });
  }

  /** Register again until it works, then let the allocator re-assert its addresses. */
  private recover(why: string): void {
    if (this.closed || this.registering) return;
    this.opts.log.warn('registering again in the store', { why });
    const old = this.lease;
    this.lease = undefined;
    old?.release();
    this.registering = (async () => {
      while (!this.closed) {
        try {
          await this.register();
          await this.opts.onReregistered();
          return;
        } catch (err) {
          this.opts.log.warn('cannot register in the store yet; retrying', { error: (err as Error).message });
          await new Promise<void>((r) => {
            this.retryTimer = setTimeout(r, RETRY_MS);
          });
        }
      }
    })().finally(() => {
      this.registering = undefined;
    });
  }

  /**
   * Stop. `deregister`: revoke the lease, so our registration goes at once (reset);
   * otherwise it stays until the TTL passes, so a quick restart keeps everything.
   */
  async close(deregister = false): Promise<void> {
    this.closed = true;
    clearInterval(this.refreshTimer);
    clearTimeout(this.retryTimer);
    await this.watch?.close();
    if (deregister) await this.lease?.revoke().catch(() => undefined);
    else this.lease?.release();
    this.lease = undefined;
  }
}
