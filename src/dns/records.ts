/**
 * The records every host serves, in memory: what the store holds under dns/ (every
 * host's records), indexed by name and by address. Fed by the store watch only, so all
 * hosts serve the same table; answering never touches the store.
 *
 * Store keys: dns/<peer name>/<name>/<ip hex>, value {"name","ip"}. One key per
 * (host, name, address), on the owning host's lease: a dead host's records expire with it.
 */
import type { KvEntry, WatchEvent } from '../store/types';
import { canonicalIpv4, compareIpv4 } from '../net/ipv4';
import { recordNameProblem, normalizeName } from './names';

export const DNS_PREFIX = 'dns/';

export interface DnsRecord {
  /** Relative, normalized: "web". */
  name: string;
  /** Dotted IPv4. */
  ip: string;
}

export function recordKey(host: string, rec: DnsRecord): string {
  const hex = rec.ip
    .split('.')
    .map((p) => Number(p).toString(16).padStart(2, '0'))
    .join('');
  return `${DNS_PREFIX}${host}/${rec.name}/${hex}`;
}

/** Parse a stored value; undefined when it is not a record (ignored, never fatal). */
export function parseRecordValue(value: string): DnsRecord | undefined {
  try {
    const v = JSON.parse(value) as { name?: unknown; ip?: unknown };
    if (typeof v.name !== 'string' || typeof v.ip !== 'string') return undefined;
    const ip = canonicalIpv4(v.ip);
    if (ip === undefined || recordNameProblem(v.name) !== undefined) return undefined;
    return { name: normalizeName(v.name), ip };
  } catch {
    return undefined;
  }
}

/** Counted multimap: a (name, ip) pair held by two hosts stays until both let go. */
class CountedIndex {
  private readonly map = new Map<string, Map<string, number>>();

  add(k: string, v: string): void {
    let inner = this.map.get(k);
    if (!inner) this.map.set(k, (inner = new Map<string, number>()));
    inner.set(v, (inner.get(v) ?? 0) + 1);
  }

  remove(k: string, v: string): void {
    const inner = this.map.get(k);
    const n = inner?.get(v);
    if (!inner || n === undefined) return;
    if (n > 1) inner.set(v, n - 1);
    else {
      inner.delete(v);
      if (inner.size === 0) this.map.delete(k);
    }
  }

  values(k: string): string[] {
    const inner = this.map.get(k);
    return inner ? [...inner.keys()] : [];
  }

  has(k: string): boolean {
    return this.map.has(k);
  }

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }
}

export class DnsRecordTable {
  private readonly byKey = new Map<string, DnsRecord>();
  private readonly byName = new CountedIndex();
  private readonly byIp = new CountedIndex();
  /** Round-robin position per name. */
  private readonly turn = new Map<string, number>();
  /** Bumped on every change: answers cached under an older generation are stale. */
  generation = 0;
  /** Sorted address lists per name, rebuilt lazily after a change. */
  private readonly sorted = new Map<string, string[]>();

  /** Replace everything with a full listing of the dns/ prefix. */
  reset(entries: KvEntry[]): void {
    this.byKey.clear();
    this.byName.clear();
    this.byIp.clear();
    this.sorted.clear();
    this.generation++;
    for (const e of entries) this.put(e.key, e.value);
  }

  apply(events: WatchEvent[]): void {
    for (const e of events) {
      if (e.type === 'put') this.put(e.key, e.value);
      else this.delete(e.key);
    }
  }

  put(key: string, value: string): void {
    const rec = parseRecordValue(value);
    this.delete(key);
    if (!rec) return;
    this.byKey.set(key, rec);
    this.byName.add(rec.name, rec.ip);
    this.byIp.add(rec.ip, rec.name);
    this.sorted.delete(rec.name);
    this.generation++;
  }

  delete(key: string): void {
    const old = this.byKey.get(key);
    if (!old) return;
    this.byKey.delete(key);
    this.byName.remove(old.name, old.ip);
    this.byIp.remove(old.ip, old.name);
    this.sorted.delete(old.name);
    this.generation++;
  }

  hasName(name: string): boolean {
    return this.byName.has(name);
  }

  /** Addresses of a name in a stable order (sorted numerically). */
  addresses(name: string): string[] {
    let list = this.sorted.get(name);
    if (list === undefined) {
      list = this.byName.values(name).sort(compareIpv4);
      this.sorted.set(name, list);
    }
    return list;
  }

  /**
   * Addresses of a name, rotated one place further on each call: several containers with
   * one name share the load (clients mostly take the first address).
   */
  rotated(name: string): string[] {
    const list = this.addresses(name);
    if (list.length < 2) return list;
    const t = this.turn.get(name) ?? 0;
    this.turn.set(name, (t + 1) % list.length);
    const start = t % list.length;
    return start === 0 ? list : [...list.slice(start), ...list.slice(0, start)];
  }

  /** Names of an address, sorted. */
  names(ip: string): string[] {
    return this.byIp.values(ip).sort();
  }

  /** Every record with the peer name of the host that publishes it, sorted by name, address, host. */
  list(): { name: string; ip: string; host: string }[] {
    const out = [...this.byKey.entries()].map(([key, r]) => ({
      name: r.name,
      ip: r.ip,
      host: key.slice(DNS_PREFIX.length).split('/')[0]!,
    }));
    return out.sort((a, b) =>
      a.name !== b.name
        ? a.name < b.name
          ? -1
          : 1
        : a.ip !== b.ip
          ? compareIpv4(a.ip, b.ip)
          : a.host < b.host
            ? -1
            : a.host > b.host
              ? 1
              : 0,
    );
  }

  /** Number of (host, name, address) records. */
  get size(): number {
    return this.byKey.size;
  }

  get nameCount(): number {
    return this.byName.size;
  }
}

/** What answering needs of the records: the whole table, or one network's view of it. */
export interface RecordView {
  hasName(name: string): boolean;
  rotated(name: string): string[];
  names(ip: string): string[];
}

/**
 * The records as a container on one network sees them: only addresses `visible` to it
 * (its own network's, and anything outside the overlay range), like Docker's embedded DNS.
 */
export class FilteredRecordView implements RecordView {
  constructor(
    private readonly table: DnsRecordTable,
    private readonly visible: (ip: string) => boolean,
  ) {}

  hasName(name: string): boolean {
    return this.table.hasName(name) && this.table.addresses(name).some(this.visible);
  }

  rotated(name: string): string[] {
    return this.table.rotated(name).filter(this.visible);
  }

  names(ip: string): string[] {
    return this.visible(ip) ? this.table.names(ip) : [];
  }
}
