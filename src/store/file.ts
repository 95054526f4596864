/**
 * The embedded store for a single host: the whole key space in memory, persisted to one
 * JSON file in the state dir. A mutation resolves only once it is on disk: the file is
 * written to a temporary name, fsynced, renamed over the old one and the directory
 * fsynced, so a crash (kill -9, power loss) leaves either the old or the new content,
 * never a torn file. Mutations that arrive while a write is in flight share the next
 * write (group commit), which keeps concurrent allocations cheap.
 *
 * Leases are emulated with wall-clock expiry times persisted with the data: a lease not
 * kept alive (the daemon was down) for longer than its TTL has expired when the store is
 * next opened, and its keys are gone. One process only: the daemon's state dir lock (its
 * API socket) already guarantees that.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileDurably } from '../state/durable-write';
import { GroupCommit } from './durable';
import { parseFileStoreContent, type FileStoreContent, type PersistedLease } from './persisted';
import type { Logger } from '../log';
import {
  compareHolds,
  type Compare,
  type KvEntry,
  type Store,
  type StoreLease,
  type StoreWatch,
  type TxnOp,
  type TxnResult,
  type WatchEvent,
  type WatchHandlers,
} from './types';

/** Wall-clock ms in expiresAt. */
type FileLease = PersistedLease;
type FileContent = FileStoreContent;

export interface FileStoreOptions {
  file: string;
  log: Logger;
  /** Clock, for tests. */
  now?: () => number;
}

export class FileStore implements Store {
  readonly kind = 'file' as const;
  readonly location: string;
  private readonly kvs = new Map<string, KvEntry>();
  private readonly leases = new Map<string, FileLease>();
  private readonly kept = new Map<string, NodeJS.Timeout>();
  private readonly watchers = new Set<{ prefix: string; handlers: WatchHandlers; ready: boolean }>();
  private revision = 0;
  private nextLease = 1;
  private expiryTimer: NodeJS.Timeout | undefined;
  private readonly commits = new GroupCommit(() => this.writeOnce());
  private closed = false;
  private readonly now: () => number;

  private constructor(
    private readonly file: string,
    private readonly log: Logger,
    now?: () => number,
  ) {
    this.location = file;
    this.now = now ?? Date.now;
  }

  static async open(opts: FileStoreOptions): Promise<FileStore> {
    const store = new FileStore(opts.file, opts.log, opts.now);
    await fs.mkdir(path.dirname(opts.file), { recursive: true, mode: 0o700 });
    let text: string | undefined;
    try {
      text = await fs.readFile(opts.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      const data = parseFileStoreContent(opts.file, text);
      store.revision = data.revision;
      store.nextLease = data.nextLease;
      for (const kv of data.kvs) store.kvs.set(kv.key, kv);
      for (const l of data.leases) store.leases.set(l.id, l);
    }
    // A temp file left by a crash mid-write holds nothing the real file lacks.
    await fs.rm(`${opts.file}.tmp`, { force: true });
    if (store.expireLeases()) await store.persist();
    store.scheduleExpiry();
    return store;
  }

  /** Delete expired leases and their keys; true if anything changed. */
  private expireLeases(): boolean {
    const now = this.now();
    const events: WatchEvent[] = [];
    let changed = false;
    for (const l of [...this.leases.values()]) {
      if (l.expiresAt > now) continue;
      this.log.info('lease expired', { lease: l.id });
      events.push(...this.dropLease(l.id));
      changed = true;
    }
    if (events.length > 0) this.notify(events);
    return changed;
  }

  private dropLease(id: string): WatchEvent[] {
    this.leases.delete(id);
    clearInterval(this.kept.get(id));
    this.kept.delete(id);
    const events: WatchEvent[] = [];
    let rev = 0;
    for (const kv of [...this.kvs.values()]) {
      if (kv.lease !== id) continue;
      if (rev === 0) rev = ++this.revision;
      this.kvs.delete(kv.key);
      events.push({ type: 'delete', key: kv.key, value: '', modRevision: rev });
    }
    return events;
  }

  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    if (this.closed || this.leases.size === 0) return;
    const next = Math.min(...[...this.leases.values()].map((l) => l.expiresAt));
    this.expiryTimer = setTimeout(
      () => {
        if (this.expireLeases())
          this.persist().catch((err: unknown) => this.log.error('cannot persist lease expiry', { error: String(err) }));
        this.scheduleExpiry();
      },
      Math.max(10, next - this.now() + 5),
    );
    this.expiryTimer.unref();
  }

  private notify(events: WatchEvent[]): void {
    for (const w of this.watchers) {
      if (!w.ready) continue; // its first listing, still to come, includes these
      const mine = events.filter((e) => e.key.startsWith(w.prefix));
      if (mine.length > 0) w.handlers.onEvents(mine);
    }
  }

  /** Resolve once the current in-memory state is durably on disk. */
  private persist(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('file store is closed'));
    return this.commits.commit();
  }

  private async writeOnce(): Promise<void> {
    const data: FileContent = {
      format: 1,
      revision: this.revision,
      nextLease: this.nextLease,
      kvs: [...this.kvs.values()],
      leases: [...this.leases.values()],
    };
    await writeFileDurably(this.file, JSON.stringify(data));
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const kv = this.kvs.get(key);
    return kv ? { ...kv } : undefined;
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    const r = await this.txn([], [lease === undefined ? { op: 'put', key, value } : { op: 'put', key, value, lease }]);
    return r.revision;
  }

  async delete(key: string): Promise<boolean> {
    const had = this.kvs.has(key);
    if (had) await this.txn([], [{ op: 'delete', key }]);
    return had;
  }

  async list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }> {
    const entries = [...this.kvs.values()].filter((kv) => kv.key.startsWith(prefix)).map((kv) => ({ ...kv }));
    entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { entries, revision: this.revision };
  }

  async txn(compare: Compare[], success: TxnOp[]): Promise<TxnResult> {
    if (this.closed) throw new Error('file store is closed');
    for (const c of compare) {
      if (
        !compareHolds(
          c,
          (key) => this.kvs.get(key),
          () => this.kvs.values(),
        )
      )
        return { succeeded: false, revision: this.revision };
    }
    for (const op of success) {
      if (op.op === 'put' && op.lease !== undefined && op.lease !== '0' && !this.leases.has(op.lease)) {
        throw new Error(`lease ${op.lease} not found`);
      }
    }
    // Applied synchronously: no other call interleaves between the checks and the changes.
    const rev = ++this.revision;
    const events: WatchEvent[] = [];
    for (const op of success) {
      if (op.op === 'put') {
        const old = this.kvs.get(op.key);
        this.kvs.set(op.key, {
          key: op.key,
          value: op.value,
          modRevision: rev,
          createRevision: old?.createRevision ?? rev,
          lease: op.lease ?? '0',
        });
        events.push({ type: 'put', key: op.key, value: op.value, modRevision: rev });
      } else if (this.kvs.delete(op.key)) {
        events.push({ type: 'delete', key: op.key, value: '', modRevision: rev });
      }
    }
    const durable = this.persist();
    this.notify(events);
    await durable;
    return { succeeded: true, revision: rev };
  }

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    const id = String(this.nextLease++);
    const lease: FileLease = { id, ttl: ttlSeconds, expiresAt: this.now() + ttlSeconds * 1000 };
    this.leases.set(id, lease);
    await this.persist();
    this.scheduleExpiry();
    // Keepalive: push the expiry forward a third of the TTL at a time, as etcd clients do.
    const timer = setInterval(
      () => {
        const l = this.leases.get(id);
        if (!l) return;
        l.expiresAt = this.now() + l.ttl * 1000;
        this.persist().catch(() => undefined);
        this.scheduleExpiry();
      },
      Math.max(100, (ttlSeconds * 1000) / 3),
    );
    timer.unref();
    this.kept.set(id, timer);
    return {
      id,
      ttlSeconds,
      onLost: () => undefined, // the only keeper is this process: it cannot lose the lease while running
      revoke: () => this.revokeLease(id),
      release: () => {
        clearInterval(this.kept.get(id));
        this.kept.delete(id);
      },
    };
  }

  async revokeLease(id: string): Promise<void> {
    if (!this.leases.has(id)) return;
    const events = this.dropLease(id);
    const durable = this.persist();
    this.notify(events);
    await durable;
    this.scheduleExpiry();
  }

  watch(prefix: string, handlers: WatchHandlers): StoreWatch {
    const w = { prefix, handlers, ready: false };
    this.watchers.add(w);
    queueMicrotask(() => {
      if (!this.watchers.has(w)) return;
      w.ready = true;
      const entries = [...this.kvs.values()].filter((kv) => kv.key.startsWith(prefix)).map((kv) => ({ ...kv }));
      handlers.onReset(entries, this.revision);
    });
    return {
      close: async () => {
        this.watchers.delete(w);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.commits.idle();
    this.closed = true;
    clearTimeout(this.expiryTimer);
    for (const t of this.kept.values()) clearInterval(t);
    this.kept.clear();
    this.watchers.clear();
  }
}
