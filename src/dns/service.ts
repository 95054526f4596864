/**
 * The embedded DNS as the daemon sees it: records this host publishes (named endpoints,
 * `dns-add`, later Docker) written to the store under a lease of this host, a watch of
 * every host's records feeding the in-memory table, and the server answering from it.
 *
 * The lease has the IPAM registration's TTL and lives exactly as long as this daemon
 * keeps it alive, so a dead host's records vanish with its registration. Manual records
 * persist in <stateDir>/dns.json; endpoint records are re-derived from the endpoints.
 */
import type { Logger } from '../log';
import type { Store, StoreLease, StoreWatch } from '../store/types';
import type { Cidr } from '../net/ipv4';
import { WeavetsError } from '../errors';
import type { FieldReader, JsonObject } from '../json-fields';
import { JsonStateFile, type StateFormat } from '../state/json-state-file';
import { StateDir } from '../state/state-dir';
import { SerialQueue } from '../serial-queue';
import type { DnsStatus } from './status';
import type { EndpointStatus } from '../endpoint/types';
import { DNS_PREFIX, DnsRecordTable, recordKey, type DnsRecord } from './records';
import { DnsServer, type VisibilityOf } from './server';
import { Upstream } from './upstream';
import { canonicalIpv4 } from '../net/ipv4';
import { normalizeName, recordNameProblem, relativeName } from './names';

function parseManualRecords(doc: JsonObject, fields: FieldReader): DnsRecord[] {
  return (fields.optArray(doc, 'records') ?? []).map((v, i) => {
    const o = fields.asObject(v, `records[${i}]`);
    const f = fields.within(`records[${i}].`);
    return { name: f.reqString(o, 'name'), ip: f.reqString(o, 'ip') };
  });
}

/** dns.json: the records added by hand; version 1 adds `version` to the unversioned {records}. */
export const DNS_STATE_FORMAT: StateFormat<DnsRecord[]> = {
  version: 1,
  parse: parseManualRecords,
  parseUnversioned: (doc, fields) => parseManualRecords(fields.asObject(doc, 'the document'), fields),
  toJson: (records) => ({ records }),
};

export interface DnsSettings {
  /** Port on the bridge addresses (53). */
  port: number;
  /** Extra "addr:port" listeners, loopback only. */
  extraListen: { addr: string; port: number }[];
  /** Normalized domain without trailing dot: "weavets.local". */
  domain: string;
  ttl: number;
  resolvConf: string;
}

export interface DnsServiceOptions {
  store: Store;
  /** This host's peer name: the key segment of its records. */
  self: string;
  leaseTtlSeconds: number;
  stateDir: string;
  range: Cidr;
  settings: DnsSettings;
  /** Per listen address, the addresses its askers may see (their network's); default: all. */
  visibility?: VisibilityOf;
  log: Logger;
}

const RETRY_MS = 1000;

export class DnsService {
  readonly table = new DnsRecordTable();
  private readonly server: DnsServer;
  private readonly upstream: Upstream;
  private lease: StoreLease | undefined;
  private watch: StoreWatch | undefined;
  /** What this host publishes: owner -> records. Owners: "ep:<id>", "manual". */
  private readonly owned = new Map<string, DnsRecord[]>();
  /** Keys we believe are in the store with our current lease. */
  private readonly published = new Set<string>();
  /** Keys of a previous run of this host, deleted unless we publish them again. */
  private stale = new Set<string>();
  /** Store passes, one at a time (each catches its own failure and schedules a retry). */
  private readonly syncing = new SerialQueue();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly file: JsonStateFile<DnsRecord[]>;

  private constructor(private readonly opts: DnsServiceOptions) {
    const { settings, log } = opts;
    this.file = new JsonStateFile(new StateDir(opts.stateDir).dns, DNS_STATE_FORMAT);
    this.upstream = new Upstream({
      resolvConf: settings.resolvConf,
      isOwnAddress: (ip) => this.server.isListeningOn(ip),
      log: log.child('upstream'),
    });
    this.server = new DnsServer(
      this.table,
      { domain: settings.domain, ttl: settings.ttl, range: opts.range },
      this.upstream,
      log,
      opts.visibility,
    );
  }

  static async start(opts: DnsServiceOptions): Promise<DnsService> {
    const s = new DnsService(opts);
    await s.loadManual();
    s.lease = await s.grant();
    s.watch = opts.store.watch(DNS_PREFIX, {
      onReset: (entries) => s.table.reset(entries),
      onEvents: (events) => s.table.apply(events),
    });
    // Records of a previous run of this host that we no longer hold: gone now, not at its TTL.
    const prefix = `${DNS_PREFIX}${opts.self}/`;
    const stale = (await opts.store.list(prefix)).entries.filter((e) => e.lease !== s.lease!.id).map((e) => e.key);
    s.stale = new Set(stale);
    return s;
  }

  private async grant(): Promise<StoreLease> {
    const lease = await this.opts.store.grantLease(this.opts.leaseTtlSeconds);
    lease.onLost((reason) => {
      if (this.closed) return;
      this.opts.log.warn('DNS lease lost; publishing our records again', { reason });
      this.lease = undefined;
      this.published.clear();
      this.resync();
    });
    return lease;
  }

  // ---- what this host publishes --------------------------------------------------------

  private desired(): Map<string, string> {
    const out = new Map<string, string>();
    for (const recs of this.owned.values()) {
      for (const r of recs) out.set(recordKey(this.opts.self, r), JSON.stringify(r));
    }
    return out;
  }

  /** Bring the store in line with `owned`, one pass at a time; retried while the store is down. */
  private resync(): void {
    void this.syncing.run(async () => {
      if (this.closed) return;
      try {
        if (!this.lease) this.lease = await this.grant();
        const want = this.desired();
        for (const [key, value] of want) {
          if (this.published.has(key)) continue;
          await this.opts.store.put(key, value, this.lease.id);
          this.published.add(key);
        }
        for (const key of [...this.published, ...this.stale]) {
          if (want.has(key)) continue;
          await this.opts.store.delete(key);
          this.published.delete(key);
          this.stale.delete(key);
        }
        this.stale.clear();
      } catch (err) {
        this.opts.log.warn('cannot publish DNS records yet; retrying', { error: (err as Error).message });
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.resync(), RETRY_MS);
        this.retryTimer.unref();
      }
    });
  }

  /** After start: the endpoints this host has now; publishes everything once. */
  restore(endpoints: EndpointStatus[]): void {
    for (const ep of endpoints) this.setEndpoint(ep);
    this.resync();
  }

  /** Records of an endpoint (its name, if it has one). */
  endpointAttached(ep: EndpointStatus): void {
    if (this.setEndpoint(ep)) this.resync();
  }

  private setEndpoint(ep: EndpointStatus): boolean {
    if (ep.name === undefined || ep.name === '') return false;
    const name = relativeName(ep.name, this.opts.settings.domain);
    if (recordNameProblem(name) !== undefined) {
      this.opts.log.warn('endpoint name is not a DNS name; no record', { id: ep.id, name: ep.name });
      return false;
    }
    this.owned.set(`ep:${ep.id}`, [{ name, ip: ep.address.split('/')[0]! }]);
    return true;
  }

  endpointDetached(id: string): void {
    if (this.owned.delete(`ep:${id}`)) this.resync();
  }

  /** Records under an owner of another subsystem (Docker: container id); [] removes them. */
  setOwned(owner: string, records: DnsRecord[]): void {
    if (records.length === 0) this.owned.delete(owner);
    else this.owned.set(owner, records);
    this.resync();
  }

  /** `dns-add NAME IP...` */
  async add(nameText: string, ips: string[]): Promise<DnsRecord[]> {
    const name = this.checkName(nameText);
    if (ips.length === 0) throw new WeavetsError('EWEAVETS_BAD_REQUEST', 'dns-add needs at least one address');
    const manual = this.owned.get('manual') ?? [];
    const added: DnsRecord[] = [];
    for (const text of ips) {
      const ip = canonicalIpv4(text);
      if (ip === undefined)
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${JSON.stringify(text)} is not an IPv4 address`);
      if (!manual.some((r) => r.name === name && r.ip === ip) && !added.some((r) => r.ip === ip))
        added.push({ name, ip });
    }
    this.owned.set('manual', [...manual, ...added]);
    await this.saveManual();
    this.resync();
    await this.syncing.idle();
    return added;
  }

  /** `dns-remove NAME [IP...]`: records added with dns-add; without IPs, all of NAME's. */
  async remove(nameText: string, ips: string[]): Promise<DnsRecord[]> {
    const name = this.checkName(nameText);
    const only = new Set<string>();
    for (const text of ips) {
      const ip = canonicalIpv4(text);
      if (ip === undefined)
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${JSON.stringify(text)} is not an IPv4 address`);
      only.add(ip);
    }
    const manual = this.owned.get('manual') ?? [];
    const gone = manual.filter((r) => r.name === name && (only.size === 0 || only.has(r.ip)));
    if (gone.length === 0) {
      throw new WeavetsError(
        'EWEAVETS_NOT_FOUND',
        `no record ${name}${only.size ? ` with ${[...only].join(', ')}` : ''} was added on this host with dns-add`,
      );
    }
    this.owned.set(
      'manual',
      manual.filter((r) => !gone.includes(r)),
    );
    await this.saveManual();
    this.resync();
    await this.syncing.idle();
    return gone;
  }

  /** Addresses of a name (or names of an address), from the table every host shares. */
  lookup(text: string): { name: string; addresses: string[] } | { address: string; names: string[] } {
    const ip = canonicalIpv4(text);
    const domain = this.opts.settings.domain;
    if (ip !== undefined) return { address: ip, names: this.table.names(ip).map((n) => `${n}.${domain}.`) };
    const name = this.checkName(text);
    return { name: `${name}.${domain}.`, addresses: this.table.addresses(name) };
  }

  private checkName(text: string): string {
    const name = relativeName(text, this.opts.settings.domain);
    const bad = recordNameProblem(name);
    if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
    return normalizeName(name);
  }

  private async loadManual(): Promise<void> {
    try {
      const recs = ((await this.file.read()) ?? []).filter(
        (r) => recordNameProblem(r.name) === undefined && canonicalIpv4(r.ip) !== undefined,
      );
      if (recs.length > 0) this.owned.set('manual', recs);
    } catch (err) {
      this.opts.log.warn('ignoring an unreadable dns.json', { file: this.file.file, error: (err as Error).message });
    }
  }

  private async saveManual(): Promise<void> {
    await this.file.write(this.owned.get('manual') ?? []);
  }

  // ---- serving --------------------------------------------------------------------------

  /** Listen on these bridge addresses (port from settings) plus the extra ones. */
  async listenOn(bridgeAddresses: string[]): Promise<void> {
    const port = this.opts.settings.port;
    await this.server.reconcile([
      ...bridgeAddresses.map((addr) => ({ addr, port })),
      ...this.opts.settings.extraListen,
    ]);
  }

  /** Networks changed (created, removed): each listener's view is computed afresh. */
  networksChanged(): void {
    this.server.invalidate();
  }

  /** Does the server listen on `ip` (at the bridge port)? */
  listensOn(ip: string): boolean {
    return this.server.isListeningOn(ip);
  }

  /** What a container on the network served at `bridgeAddress` should put in resolv.conf. */
  resolverFor(bridgeAddress: string): { nameservers: string[]; search: string[] } | undefined {
    // resolv.conf cannot name a port: only a listener on 53 can be a container's resolver.
    if (this.opts.settings.port !== 53 || !this.server.isListeningOn(bridgeAddress)) return undefined;
    return { nameservers: [bridgeAddress], search: [this.opts.settings.domain] };
  }

  status(): DnsStatus {
    const s = this.opts.settings;
    return {
      enabled: true,
      domain: `${s.domain}.`,
      ttl: s.ttl,
      listen: this.server.addresses(),
      records: this.table.size,
      names: this.table.nameCount,
      local: [...this.owned.values()].reduce((n, r) => n + r.length, 0),
      entries: this.table.list(),
      upstream: this.upstream.currentServers(),
      resolvConf: s.resolvConf,
      queries: { ...this.server.counters },
    };
  }

  /** Stop serving. `revoke` (reset): our records go at once; otherwise at the lease's TTL. */
  async close(revoke = false): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.server.close();
    this.upstream.close();
    await this.syncing.idle();
    await this.watch?.close();
    if (revoke) await this.lease?.revoke().catch(() => undefined);
    else this.lease?.release();
    this.lease = undefined;
  }
}
