/**
 * The store without --etcd: every host's entries replicated to every host over the
 * authenticated control connections (STORE messages, src/store/mesh-codec.ts), merged
 * the same way everywhere (src/store/mesh-state.ts), and persisted on each host in
 * <stateDir>/mesh-store.json (written like the file store: temp file, fsync, rename,
 * directory fsync, group commit). Design and safety argument: docs/ARCHITECTURE.md,
 * "The mesh store".
 *
 * - Each key's entries are owned by the hosts that wrote them; a host changes only its
 *   own entries (a put or delete of a key another host wrote is a new entry of ours that
 *   says which entry of theirs it replaces).
 * - A compare-and-create (txn comparing `modRevision: 0` on a key it puts) is a CLAIM:
 *   visible at once, confirmed only when every reachable peer of the store has answered
 *   it with no competing claim or holder (each peer promises a key to one pending claim
 *   at a time; a claimant facing another claim yields to the lower peer name). Only then
 *   does txn() resolve; a lost claim is deleted and txn() reports failure.
 * - Leases are this host's: its leased keys go when the lease is revoked or expires. A
 *   host's entries, leased or not, are dropped by every other host once it has been
 *   unreachable for the grace period, and at once on `forgetOwner` (rmpeer).
 * - Two held entries with different values for one key (found when a partition heals)
 *   are a conflict: logged, counted and listed by `conflicts()`, never merged silently.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileDurably } from '../state/durable-write';
import { GroupCommit } from './durable';
import { parseFileStoreContent, parseMeshStoreContent, type MeshStoreContent, type PersistedLease } from './persisted';
import type { Logger } from '../log';
import {
  decode,
  encode,
  encodeEntriesChunked,
  MeshDecodeError,
  type MeshAck,
  type MeshEntry,
  type MeshMessage,
} from './mesh-codec';
import { MeshState } from './mesh-state';
import { compareText } from '../text-order';
import {
  StoreUnavailableError,
  compareHolds,
  type Compare,
  type KvEntry,
  type Store,
  type StoreConflict,
  type StoreLease,
  type StoreWatch,
  type TxnOp,
  type TxnResult,
  type WatchEvent,
  type WatchHandlers,
} from './types';

/** What the mesh store needs from the router (implemented by Router; in tests by a loopback). */
export interface MeshTransport {
  /** Peers with a ready control connection. */
  neighbours(): string[];
  send(peer: string, payload: Buffer): boolean;
  /** Peers reachable over control connections, directly or through others. */
  reachable(): ReadonlySet<string>;
  /** Has every launch peer been reached once? Claims wait for it (or the settle timeout). */
  targetsConnected(): boolean;
}

export interface MeshStoreOptions {
  file: string;
  /** This host's peer name text. */
  self: string;
  log: Logger;
  /** How long an unreachable peer's entries are kept before they are dropped, ms. */
  graceMs: number;
  /** A claim not confirmed within this fails with StoreUnavailableError, ms (default 10 s). */
  claimTimeoutMs?: number;
  /** Claims wait at most this long after attach for launch targets to connect, ms (default 10 s). */
  settleTimeoutMs?: number;
  /** An entry of ours imported on first open (migration from the file store). */
  importFrom?: string;
  now?: () => number;
}

type MeshFile = MeshStoreContent;

interface ViewCache {
  kv: KvEntry;
  owner: string;
  version: number;
}

interface PendingTxn {
  /** Contested key -> version of our claim. */
  claims: Map<string, number>;
  compare: Compare[];
  rest: TxnOp[];
  /** Puts of the contested keys, applied as held on success. */
  puts: Map<string, { value: string; lease?: string }>;
  startedAt: number;
  failed: string | undefined;
  resolve(r: { ok: boolean; why?: string; unavailable?: string }): void;
}

interface Promise_ {
  owner: string;
  version: number;
  at: number;
}

const TICK_MS = 250;
const SYNC_CHUNK_BYTES = 1024 * 1024;
const PROMISE_TIMEOUT_MS = 30_000;
const SEEN_LIMIT = 20_000;
const NEIGHBOUR_QUIET_MS = 2000;
const COMPACT_EVERY_MS = 10_000;

export class MeshStore implements Store {
  readonly kind = 'mesh' as const;
  readonly location: string;
  private readonly state = new MeshState();
  private readonly view = new Map<string, ViewCache>();
  private readonly conflicted = new Map<string, string[]>();
  private readonly watchers = new Set<{ prefix: string; handlers: WatchHandlers; ready: boolean }>();
  private readonly leases = new Map<string, PersistedLease>();
  private readonly kept = new Map<string, NodeJS.Timeout>();
  private readonly leaseOf = new Map<string, string>();
  private readonly pending = new Set<PendingTxn>();
  private readonly pendingByKey = new Map<string, PendingTxn>();
  /** "key|version" of our claims -> peer -> its answer. */
  private readonly answers = new Map<string, Map<string, boolean>>();
  /** key -> the pending claim of another peer we answered yes to. */
  private readonly promises = new Map<string, Promise_>();
  private readonly seen = new Set<string>();
  /** Neighbours that sent us STORE messages: they run a mesh store. */
  private readonly speakers = new Set<string>();
  private readonly unreachableSince = new Map<string, number>();
  /** Neighbours by when their connection came up: one that has not spoken yet may still. */
  private readonly connectedAt = new Map<string, number>();
  private transport: MeshTransport | undefined;
  private attachedAt = 0;
  private lastCompaction = 0;
  private revision = 0;
  private lastVersion = 0;
  private nextLease = 1;
  private tick: NodeJS.Timeout | undefined;
  private readonly commits = new GroupCommit(() => this.writeOnce());
  private closed = false;
  private conflictHandler: ((c: StoreConflict[]) => void) | undefined;
  private readonly now: () => number;
  private readonly counters = { malformed: 0, claimsConfirmed: 0, claimsLost: 0, conflictsFound: 0 };

  private constructor(private readonly opts: MeshStoreOptions) {
    this.location = opts.file;
    this.now = opts.now ?? Date.now;
  }

  static async open(opts: MeshStoreOptions): Promise<MeshStore> {
    const s = new MeshStore(opts);
    await fs.mkdir(path.dirname(opts.file), { recursive: true, mode: 0o700 });
    await fs.rm(`${opts.file}.tmp`, { force: true });
    let text: string | undefined;
    try {
      text = await fs.readFile(opts.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      const data = parseMeshStoreContent(opts.file, text);
      if (data.self !== opts.self) {
        // Another peer name owns this state (the host was renamed): its entries are not ours to publish.
        opts.log.warn('mesh store file belongs to another peer name; starting empty', {
          file: opts.file,
          was: data.self,
        });
      } else {
        s.lastVersion = data.lastVersion;
        s.nextLease = data.nextLease;
        for (const l of data.leases) s.leases.set(l.id, l);
        for (const [k, id] of Object.entries(data.leaseOf)) s.leaseOf.set(k, id);
        for (const e of data.entries) s.state.merge(e);
      }
    } else if (opts.importFrom !== undefined) {
      await s.importFileStore(opts.importFrom);
    }
    // A claim of ours cut short by a stop never resolved: nobody was told it succeeded.
    for (const e of s.state.all()) {
      if (e.owner === opts.self && e.state === 'claim')
        s.state.merge({ owner: e.owner, key: e.key, version: s.nextVersion(), state: 'gone', value: '' });
    }
    s.expireLeases();
    s.refresh(s.state.keys());
    await s.persist();
    s.tick = setInterval(() => s.onTick(), TICK_MS);
    s.tick.unref();
    return s;
  }

  /** First start after the single-host file store: its keys become our entries. */
  private async importFileStore(file: string): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      return;
    }
    const data = parseFileStoreContent(file, text);
    this.nextLease = data.nextLease;
    for (const l of data.leases) this.leases.set(l.id, l);
    for (const kv of data.kvs) {
      this.state.merge({
        owner: this.opts.self,
        key: kv.key,
        version: this.nextVersion(),
        state: 'held',
        value: kv.value,
      });
      if (kv.lease !== '0') this.leaseOf.set(kv.key, kv.lease);
    }
    this.opts.log.info('imported the file store into the mesh store', { from: file, keys: data.kvs.length });
  }

  /** Versions follow the wall clock (ms) so a host whose state was wiped still writes newer entries. */
  private nextVersion(): number {
    this.lastVersion = Math.max(this.lastVersion + 1, this.now());
    return this.lastVersion;
  }

  // ---- wiring ------------------------------------------------------------------------

  /** Start gossiping through the router. */
  attach(transport: MeshTransport): void {
    this.transport = transport;
    this.attachedAt = this.now();
    for (const peer of transport.neighbours()) this.peerConnected(peer);
  }

  peerConnected(peer: string): void {
    if (!this.transport) return;
    this.connectedAt.set(peer, this.now());
    // Always at least one message, even with no entries: it tells the peer we run a mesh
    // store, so its claims wait for our answer.
    const sync = encodeEntriesChunked(this.state.all(), SYNC_CHUNK_BYTES);
    if (sync.length === 0) sync.push(encode({ kind: 'entries', entries: [] }));
    for (const payload of sync) this.transport.send(peer, payload);
    for (const m of this.state.forgottenMarkers()) {
      this.transport.send(
        peer,
        encode({ kind: 'forget', forget: { owner: m.owner, upTo: m.upTo, by: this.opts.self } }),
      );
    }
    this.progressAll();
  }

  peerDisconnected(peer: string): void {
    this.speakers.delete(peer);
    this.connectedAt.delete(peer);
    this.progressAll();
  }

  topologyChanged(): void {
    this.progressAll();
  }

  /** A STORE message from a neighbour; malformed ones are dropped and counted. */
  receive(from: string, payload: Buffer): void {
    // Not attached yet (the peering attaches us right after the router listens): a store
    // that has not announced itself to its neighbours takes nothing from them either.
    if (!this.transport) return;
    let msg: MeshMessage;
    try {
      msg = decode(payload);
    } catch (err) {
      if (!(err instanceof MeshDecodeError)) throw err;
      this.counters.malformed++;
      this.opts.log.debug('dropped a malformed store message', { from, error: err.message });
      return;
    }
    this.speakers.add(from);
    if (this.closed) return;
    switch (msg.kind) {
      case 'entries':
        this.mergeRemote(msg.entries, from);
        break;
      case 'ack':
        this.onAck(msg.ack, from);
        break;
      case 'forget': {
        const id = `f|${msg.forget.owner}|${msg.forget.upTo}`;
        if (this.seen.has(id)) return;
        this.remember(id);
        this.flood(encode(msg), from);
        this.applyForget(msg.forget.owner, msg.forget.upTo, msg.forget.by);
        break;
      }
    }
  }

  private flood(payload: Buffer, except?: string): void {
    if (!this.transport) return;
    for (const peer of this.transport.neighbours()) if (peer !== except) this.transport.send(peer, payload);
  }

  private remember(id: string): void {
    if (this.seen.size >= SEEN_LIMIT) this.seen.clear();
    this.seen.add(id);
  }

  // ---- merging -----------------------------------------------------------------------

  private mergeRemote(entries: MeshEntry[], from: string): void {
    const changed: MeshEntry[] = [];
    for (const e of entries) {
      if (e.owner === this.opts.self) {
        // Our own entry coming back newer than we have: written by a previous run whose
        // state we lost. Re-assert what we hold now over it.
        const mine = this.state.get(e.key, e.owner);
        if (!mine || e.version > mine.version) this.outdated(e);
        continue;
      }
      if (this.state.merge(e)) changed.push(e);
    }
    if (changed.length === 0) return;
    for (const payload of encodeEntriesChunked(changed, SYNC_CHUNK_BYTES)) this.flood(payload, from);
    this.refresh(changed.map((e) => e.key));
    for (const e of changed) {
      if (e.state === 'claim') this.answer(e);
      this.checkOwnClaim(e.key);
      const p = this.promises.get(e.key);
      if (p && p.owner === e.owner && e.version !== p.version) this.promises.delete(e.key);
    }
    this.persist().catch((err: unknown) =>
      this.opts.log.warn('cannot persist the mesh store', { error: (err as Error).message }),
    );
  }

  /** An entry of ours we do not have (a previous incarnation wrote it): delete it with a newer version. */
  private outdated(e: MeshEntry): void {
    const mine = this.state.get(e.key, this.opts.self);
    if (mine && mine.version >= e.version) return;
    this.lastVersion = Math.max(this.lastVersion, e.version);
    const fresh: MeshEntry = {
      owner: this.opts.self,
      key: e.key,
      version: this.nextVersion(),
      state: 'gone',
      value: '',
    };
    this.state.merge(fresh);
    this.refresh([e.key]);
    this.flood(encode({ kind: 'entries', entries: [fresh] }));
  }

  /** Our answer to another peer's claim, flooded to it. */
  private answer(claim: MeshEntry): void {
    const ok = this.decide(claim);
    const ack: MeshAck = { claimant: claim.owner, by: this.opts.self, key: claim.key, version: claim.version, ok };
    this.remember(`a|${ack.claimant}|${ack.by}|${ack.key}|${ack.version}`);
    this.flood(encode({ kind: 'ack', ack }));
  }

  private decide(claim: MeshEntry): boolean {
    const mine = this.pendingByKey.get(claim.key);
    if (mine && !mine.failed) {
      // Two claims in flight: the lower peer name keeps its claim; we decide for ours atomically here.
      if (compareText(this.opts.self, claim.owner) < 0) return false;
      this.failPending(mine, `lost ${claim.key} to ${claim.owner}`);
    }
    const others = this.state.entriesOf(claim.key).filter((e) => e.owner !== claim.owner);
    const all = this.state.entriesOf(claim.key);
    const hidden = (e: MeshEntry): boolean =>
      all.some((f) => f.owner !== e.owner && f.over?.owner === e.owner && f.over.version >= e.version);
    if (others.some((e) => e.state === 'held' && !hidden(e))) return false;
    const p = this.promises.get(claim.key);
    if (p && p.owner !== claim.owner && this.promiseLive(claim.key, p)) return false;
    this.promises.set(claim.key, { owner: claim.owner, version: claim.version, at: this.now() });
    return true;
  }

  private promiseLive(key: string, p: Promise_): boolean {
    const e = this.state.get(key, p.owner);
    if (!e || e.state !== 'claim' || e.version !== p.version) return false;
    if (this.now() - p.at > PROMISE_TIMEOUT_MS) return false;
    return this.transport?.reachable().has(p.owner) ?? false;
  }

  /** Another peer's entry for a key we are claiming arrived: does it beat our claim? */
  private checkOwnClaim(key: string): void {
    const mine = this.pendingByKey.get(key);
    if (!mine || mine.failed) return;
    const all = this.state.entriesOf(key);
    const hidden = (e: MeshEntry): boolean =>
      all.some((f) => f.owner !== e.owner && f.over?.owner === e.owner && f.over.version >= e.version);
    const holder = all.find((e) => e.owner !== this.opts.self && e.state === 'held' && !hidden(e));
    if (holder) this.failPending(mine, `${key} is held by ${holder.owner}`);
  }

  private onAck(ack: MeshAck, from: string): void {
    const id = `a|${ack.claimant}|${ack.by}|${ack.key}|${ack.version}`;
    if (this.seen.has(id)) return;
    this.remember(id);
    if (ack.claimant !== this.opts.self) {
      this.flood(encode({ kind: 'ack', ack }), from);
      return;
    }
    const k = `${ack.key}|${ack.version}`;
    const got = this.answers.get(k);
    if (!got) return; // a claim already decided
    got.set(ack.by, ack.ok);
    const txn = this.pendingByKey.get(ack.key);
    if (txn) this.progress(txn);
  }

  private applyForget(owner: string, upTo: number, by: string): void {
    if (owner === this.opts.self) {
      // rmpeer of a host that is alive (this one): publish everything again, newer.
      this.opts.log.warn('another host removed this host (rmpeer); publishing our entries again', { by });
      const again: MeshEntry[] = [];
      this.lastVersion = Math.max(this.lastVersion, upTo);
      for (const e of this.state.all()) {
        // Claims in flight keep their version: their answers are counted against it.
        if (e.owner !== this.opts.self || e.state !== 'held') continue;
        const fresh: MeshEntry = { ...e, version: this.nextVersion() };
        this.state.merge(fresh);
        again.push(fresh);
      }
      for (const payload of encodeEntriesChunked(again, SYNC_CHUNK_BYTES)) this.flood(payload);
      this.refresh(again.map((e) => e.key));
      return;
    }
    const touched = this.state.forget(owner, upTo);
    if (touched.length > 0)
      this.opts.log.info('dropped the entries of a removed host', { peer: owner, by, keys: touched.length });
    this.refresh(touched);
    this.progressAll();
    this.persist().catch(() => undefined);
  }

  /**
   * rmpeer: drop `owner`'s entries now, here and on every host (a FORGET flooded to all).
   * Returns how many keys it held.
   */
  async forgetOwner(owner: string): Promise<number> {
    const upTo = Math.max(1, this.state.maxVersion(owner));
    const count = this.state.all().filter((e) => e.owner === owner).length;
    const msg: MeshMessage = { kind: 'forget', forget: { owner, upTo, by: this.opts.self } };
    this.remember(`f|${owner}|${upTo}`);
    this.flood(encode(msg));
    this.applyForget(owner, upTo, this.opts.self);
    await this.persist();
    return count;
  }

  // ---- the view ----------------------------------------------------------------------

  /** Recompute the view of `keys`; emit watch events and conflict reports for what changed. */
  private refresh(keys: Iterable<string>): void {
    const events: WatchEvent[] = [];
    let rev = 0;
    let conflictsChanged = false;
    for (const key of new Set(keys)) {
      const v = this.state.view(key);
      const cached = this.view.get(key);
      if (v.conflict) {
        const before = this.conflicted.get(key);
        if (!before || before.join() !== v.conflict.join()) {
          this.conflicted.set(key, v.conflict);
          this.counters.conflictsFound++;
          conflictsChanged = true;
          this.opts.log.error('CONFLICT in the mesh store: several hosts hold one key with different values', {
            key,
            holders: v.conflict.join(' '),
          });
        }
      } else if (this.conflicted.delete(key)) {
        conflictsChanged = true;
        this.opts.log.info('conflict resolved', { key });
      }
      const w = v.winner;
      if (!w) {
        if (cached) {
          if (rev === 0) rev = ++this.revision;
          this.view.delete(key);
          events.push({ type: 'delete', key, value: '', modRevision: rev });
        }
        continue;
      }
      if (cached && cached.owner === w.owner && cached.version === w.version) continue;
      if (rev === 0) rev = ++this.revision;
      const kv: KvEntry = {
        key,
        value: w.value,
        modRevision: rev,
        createRevision: cached?.kv.createRevision ?? rev,
        lease: w.owner === this.opts.self ? (this.leaseOf.get(key) ?? '0') : '0',
      };
      this.view.set(key, { kv, owner: w.owner, version: w.version });
      events.push({ type: 'put', key, value: w.value, modRevision: rev });
    }
    if (events.length > 0) this.notify(events);
    if (conflictsChanged) this.conflictHandler?.(this.conflicts());
  }

  private notify(events: WatchEvent[]): void {
    for (const w of this.watchers) {
      if (!w.ready) continue;
      const mine = events.filter((e) => e.key.startsWith(w.prefix));
      if (mine.length > 0) w.handlers.onEvents(mine);
    }
  }

  conflicts(): StoreConflict[] {
    return [...this.conflicted.entries()]
      .map(([key, holders]) => ({ key, holders }))
      .sort((a, b) => compareText(a.key, b.key));
  }

  onConflicts(fn: (c: StoreConflict[]) => void): void {
    this.conflictHandler = fn;
  }

  /** Owner of the entry `get(key)` answers with. */
  ownerOf(key: string): string | undefined {
    return this.view.get(key)?.owner;
  }

  stats(): {
    malformed: number;
    claimsConfirmed: number;
    claimsLost: number;
    conflictsFound: number;
    entries: number;
    peers: number;
  } {
    return {
      ...this.counters,
      entries: this.state.all().length,
      peers: [...this.state.owners()].filter((o) => o !== this.opts.self).length,
    };
  }

  // ---- claims ------------------------------------------------------------------------

  /** Peers whose answer a claim needs now: reachable peers that run a mesh store. */
  private voters(): string[] {
    const t = this.transport;
    if (!t) return [];
    const reach = t.reachable();
    const participants = new Set([...this.state.owners(), ...this.speakers]);
    // A neighbour whose first STORE message is still on its way counts too; one silent
    // for NEIGHBOUR_QUIET_MS after connecting runs no mesh store (an --etcd host).
    const now = this.now();
    // The router tells the topology about a new connection before it tells us.
    for (const n of t.neighbours()) if (!this.connectedAt.has(n)) this.connectedAt.set(n, now);
    const fresh = (p: string): boolean => {
      const since = this.connectedAt.get(p);
      return since !== undefined && now - since < NEIGHBOUR_QUIET_MS;
    };
    return [...reach].filter((p) => p !== this.opts.self && (participants.has(p) || fresh(p)));
  }

  private settled(): boolean {
    const t = this.transport;
    if (!t) return false;
    return t.targetsConnected() || this.now() - this.attachedAt >= (this.opts.settleTimeoutMs ?? 10_000);
  }

  private progressAll(): void {
    for (const txn of [...this.pending]) this.progress(txn);
  }

  private progress(txn: PendingTxn): void {
    if (txn.failed !== undefined) return;
    if (!this.settled()) return;
    const voters = this.voters();
    for (const [key, version] of txn.claims) {
      const got = this.answers.get(`${key}|${version}`);
      for (const v of voters) {
        const a = got?.get(v);
        if (a === false) {
          this.failPending(txn, `${v} refused ${key}`);
          return;
        }
        if (a === undefined) return;
      }
    }
    this.confirm(txn);
  }

  private confirm(txn: PendingTxn): void {
    this.finish(txn);
    // Anything else in the transaction must still hold (other keys may have moved meanwhile).
    const others = txn.compare.filter((c) => !('key' in c) || !txn.claims.has(c.key));
    if (!this.comparesHold(others)) {
      this.withdraw(txn);
      txn.resolve({ ok: false });
      return;
    }
    const ops: TxnOp[] = [];
    for (const [key, put] of txn.puts)
      ops.push(
        put.lease === undefined
          ? { op: 'put', key, value: put.value }
          : { op: 'put', key, value: put.value, lease: put.lease },
      );
    ops.push(...txn.rest);
    this.counters.claimsConfirmed++;
    this.apply(ops);
    txn.resolve({ ok: true });
  }

  private failPending(txn: PendingTxn, why: string): void {
    if (txn.failed !== undefined) return;
    txn.failed = why;
    this.finish(txn);
    this.counters.claimsLost++;
    this.withdraw(txn);
    txn.resolve({ ok: false, why });
  }

  private finish(txn: PendingTxn): void {
    this.pending.delete(txn);
    for (const [key, version] of txn.claims) {
      if (this.pendingByKey.get(key) === txn) this.pendingByKey.delete(key);
      this.answers.delete(`${key}|${version}`);
    }
  }

  /** Delete our claim entries of a transaction that did not go through. */
  private withdraw(txn: PendingTxn): void {
    const gone: MeshEntry[] = [];
    for (const [key, version] of txn.claims) {
      const e = this.state.get(key, this.opts.self);
      if (!e || e.version !== version) continue;
      const g: MeshEntry = { owner: this.opts.self, key, version: this.nextVersion(), state: 'gone', value: '' };
      this.state.merge(g);
      gone.push(g);
    }
    if (gone.length === 0) return;
    this.flood(encode({ kind: 'entries', entries: gone }));
    this.refresh(gone.map((e) => e.key));
    this.persist().catch(() => undefined);
  }

  // ---- Store -------------------------------------------------------------------------

  async get(key: string): Promise<KvEntry | undefined> {
    const v = this.view.get(key);
    return v ? { ...v.kv } : undefined;
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    return (await this.txn([], [lease === undefined ? { op: 'put', key, value } : { op: 'put', key, value, lease }]))
      .revision;
  }

  async delete(key: string): Promise<boolean> {
    const had = this.view.has(key);
    if (had) await this.txn([], [{ op: 'delete', key }]);
    return had;
  }

  async list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }> {
    const entries = [...this.view.values()].filter((v) => v.kv.key.startsWith(prefix)).map((v) => ({ ...v.kv }));
    entries.sort((a, b) => compareText(a.key, b.key));
    return { entries, revision: this.revision };
  }

  private comparesHold(compare: Compare[]): boolean {
    // Against this host's view only: a range or a key another host changed, and whose change
    // has not arrived yet, is not seen (docs/ARCHITECTURE.md, "The mesh store").
    const get = (key: string): KvEntry | undefined => this.view.get(key)?.kv;
    const entries = (): KvEntry[] => [...this.view.values()].map((v) => v.kv);
    return compare.every((c) => compareHolds(c, get, entries));
  }

  async txn(compare: Compare[], success: TxnOp[]): Promise<TxnResult> {
    if (this.closed) throw new Error('mesh store is closed');
    if (!this.comparesHold(compare)) return { succeeded: false, revision: this.revision };
    for (const op of success) {
      if (op.op === 'put' && op.lease !== undefined && op.lease !== '0' && !this.leases.has(op.lease))
        throw new Error(`lease ${op.lease} not found`);
    }
    const created = new Set(compare.flatMap((c) => ('modRevision' in c && c.modRevision === 0 ? [c.key] : [])));
    const contested = success.filter(
      (op): op is Extract<TxnOp, { op: 'put' }> => op.op === 'put' && created.has(op.key),
    );
    if (contested.length === 0) {
      this.apply(success);
      await this.persist();
      return { succeeded: true, revision: this.revision };
    }
    // Compare-and-create: claim the keys; resolve once every reachable peer agreed. A claim
    // can lose without anyone winning (three claimants each refused by another's
    // promise): "false" must mean "another host holds it", so wait for the keys' fate and
    // claim again while nobody holds them.
    for (let attempt = 0; ; attempt++) {
      const r = await this.claimOnce(compare, success, contested, created);
      if (r.ok) return { succeeded: true, revision: this.revision };
      if (r.unavailable !== undefined) throw new StoreUnavailableError('claim', this.location, r.unavailable);
      const held = await this.fateOf(contested.map((op) => op.key));
      if (held || attempt >= 16 || this.closed) return { succeeded: false, revision: this.revision };
      // Back off at random so the next round has one claimant ahead of the others.
      await new Promise((res) => setTimeout(res, Math.random() * 20 * (1 + Math.min(attempt, 4))));
      if (!this.comparesHold(compare)) return { succeeded: false, revision: this.revision };
    }
  }

  /** Wait until none of `keys` has a claim of another host in flight; true if another host holds one. */
  private async fateOf(keys: string[]): Promise<boolean> {
    const deadline = this.now() + (this.opts.claimTimeoutMs ?? 10_000) + 1000;
    for (;;) {
      let pendingElsewhere = false;
      for (const key of keys) {
        const v = this.view.get(key);
        if (!v || v.owner === this.opts.self) continue;
        const e = this.state.get(key, v.owner);
        if (e?.state === 'held') return true;
        pendingElsewhere = true;
      }
      if (!pendingElsewhere || this.closed || this.now() > deadline) return pendingElsewhere;
      await new Promise((res) => setTimeout(res, 5));
    }
  }

  private async claimOnce(
    compare: Compare[],
    success: TxnOp[],
    contested: Extract<TxnOp, { op: 'put' }>[],
    created: Set<string>,
  ): Promise<{ ok: boolean; why?: string; unavailable?: string }> {
    const claims = new Map<string, number>();
    const puts = new Map<string, { value: string; lease?: string }>();
    const entries: MeshEntry[] = [];
    for (const op of contested) {
      const e: MeshEntry = {
        owner: this.opts.self,
        key: op.key,
        version: this.nextVersion(),
        state: 'claim',
        value: op.value,
      };
      this.state.merge(e);
      entries.push(e);
      claims.set(op.key, e.version);
      puts.set(op.key, op.lease === undefined ? { value: op.value } : { value: op.value, lease: op.lease });
      this.answers.set(`${op.key}|${e.version}`, new Map());
    }
    const rest = success.filter((op) => !(op.op === 'put' && created.has(op.key)));
    const outcome = new Promise<{ ok: boolean; why?: string; unavailable?: string }>((resolve) => {
      const txn: PendingTxn = { claims, compare, rest, puts, startedAt: this.now(), failed: undefined, resolve };
      this.pending.add(txn);
      for (const key of claims.keys()) this.pendingByKey.set(key, txn);
    });
    this.refresh(claims.keys());
    this.flood(encode({ kind: 'entries', entries }));
    for (const key of claims.keys()) {
      const txn = this.pendingByKey.get(key);
      if (txn) this.progress(txn);
    }
    const r = await outcome;
    await this.persist();
    return r;
  }

  /** Apply operations as entries of ours (held or deleted), now. */
  private apply(ops: TxnOp[]): void {
    const out: MeshEntry[] = [];
    for (const op of ops) {
      const winner = this.view.get(op.key);
      const mine = this.state.get(op.key, this.opts.self);
      const mineLive = mine !== undefined && mine.state !== 'gone';
      // Our entry for the key is what we change; another host's is replaced (and says so)
      // only when we have none: in a conflict, a delete gives up ours and nothing else.
      const over =
        !mineLive && winner && winner.owner !== this.opts.self
          ? { owner: winner.owner, version: winner.version }
          : undefined;
      if (op.op === 'delete') {
        if (!winner && !mineLive) continue;
        this.leaseOf.delete(op.key);
      } else if (op.lease !== undefined && op.lease !== '0') this.leaseOf.set(op.key, op.lease);
      else this.leaseOf.delete(op.key);
      const e: MeshEntry =
        op.op === 'put'
          ? { owner: this.opts.self, key: op.key, version: this.nextVersion(), state: 'held', value: op.value }
          : { owner: this.opts.self, key: op.key, version: this.nextVersion(), state: 'gone', value: '' };
      if (over) e.over = over;
      this.state.merge(e);
      out.push(e);
    }
    if (out.length === 0) return;
    for (const payload of encodeEntriesChunked(out, SYNC_CHUNK_BYTES)) this.flood(payload);
    this.refresh(out.map((e) => e.key));
  }

  // ---- leases ------------------------------------------------------------------------

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    const id = String(this.nextLease++);
    this.leases.set(id, { id, ttl: ttlSeconds, expiresAt: this.now() + ttlSeconds * 1000 });
    await this.persist();
    const timer = setInterval(
      () => {
        const l = this.leases.get(id);
        if (!l) return;
        l.expiresAt = this.now() + l.ttl * 1000;
        this.persist().catch(() => undefined);
      },
      Math.max(100, (ttlSeconds * 1000) / 3),
    );
    timer.unref();
    this.kept.set(id, timer);
    return {
      id,
      ttlSeconds,
      onLost: () => undefined, // kept by this process alone: it cannot lose it while running
      revoke: () => this.revokeLease(id),
      release: () => {
        clearInterval(this.kept.get(id));
        this.kept.delete(id);
      },
    };
  }

  async revokeLease(id: string): Promise<void> {
    if (!this.leases.has(id)) return;
    this.dropLease(id);
    await this.persist();
  }

  private dropLease(id: string): void {
    this.leases.delete(id);
    clearInterval(this.kept.get(id));
    this.kept.delete(id);
    const keys = [...this.leaseOf.entries()].filter(([, l]) => l === id).map(([k]) => k);
    this.apply(keys.map((key) => ({ op: 'delete', key })));
  }

  private expireLeases(): void {
    const now = this.now();
    for (const l of [...this.leases.values()]) {
      if (l.expiresAt > now) continue;
      this.opts.log.info('lease expired', { lease: l.id });
      this.dropLease(l.id);
    }
  }

  // ---- time --------------------------------------------------------------------------

  private onTick(): void {
    if (this.closed) return;
    this.expireLeases();
    const now = this.now();
    // Settling (the launch targets reached, or given up on) can come in this very tick:
    // a claim that every voter has answered then (none, for a host whose launch peers
    // never let it in) is confirmed, not timed out.
    this.progressAll();
    for (const txn of [...this.pending]) {
      if (now - txn.startedAt < (this.opts.claimTimeoutMs ?? 10_000)) continue;
      const voters = this.voters();
      const silent = voters.filter((v) =>
        [...txn.claims].some(([k, ver]) => this.answers.get(`${k}|${ver}`)?.get(v) === undefined),
      );
      txn.failed = 'timeout';
      this.finish(txn);
      this.withdraw(txn);
      txn.resolve({
        ok: false,
        unavailable: this.settled()
          ? `peers ${silent.join(', ') || '(none)'} did not answer a claim within ${this.opts.claimTimeoutMs ?? 10_000} ms`
          : 'the launch targets were not reached',
      });
    }
    this.progressAll();
    if (now - this.lastCompaction >= COMPACT_EVERY_MS) {
      this.lastCompaction = now;
      this.compact(now);
    }
    const t = this.transport;
    if (!t) return;
    const reach = t.reachable();
    for (const owner of this.state.owners()) {
      if (owner === this.opts.self) continue;
      if (reach.has(owner)) {
        this.unreachableSince.delete(owner);
        continue;
      }
      const since = this.unreachableSince.get(owner) ?? now;
      this.unreachableSince.set(owner, since);
      if (now - since < this.opts.graceMs) continue;
      const touched = this.state.forget(owner, this.state.maxVersion(owner));
      this.unreachableSince.delete(owner);
      this.opts.log.info('dropped the entries of a host unreachable for the grace period', {
        peer: owner,
        keys: touched.length,
        graceMs: this.opts.graceMs,
      });
      this.refresh(touched);
      this.persist().catch(() => undefined);
    }
    // A host that is back: take its entries again, whoever relays them.
    for (const m of this.state.forgottenMarkers()) if (reach.has(m.owner)) this.state.unforget(m.owner);
  }

  /**
   * Drop deleted entries older than twice the grace period (a minute more): by then every
   * host that had the entry alive either heard of the deletion or has been unable to
   * reach us for the grace period and dropped all our entries. Versions are wall-clock
   * milliseconds, so a version's age is its distance from now. A deletion that hides
   * another host's entry stays while that entry does.
   */
  private compact(now: number): void {
    const keep = 2 * this.opts.graceMs + 60_000;
    let dropped = 0;
    for (const e of this.state.all()) {
      if (e.state !== 'gone' || now - e.version < keep) continue;
      if (e.over) {
        const hidden = this.state.get(e.key, e.over.owner);
        if (hidden && hidden.version <= e.over.version) continue;
      }
      this.state.drop(e.key, e.owner);
      dropped++;
    }
    if (dropped > 0) this.persist().catch(() => undefined);
  }

  // ---- persistence -------------------------------------------------------------------

  private persist(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.commits.commit();
  }

  private async writeOnce(): Promise<void> {
    const data: MeshFile = {
      format: 1,
      self: this.opts.self,
      lastVersion: this.lastVersion,
      nextLease: this.nextLease,
      leases: [...this.leases.values()],
      leaseOf: Object.fromEntries(this.leaseOf),
      entries: this.state.all(),
    };
    await writeFileDurably(this.opts.file, JSON.stringify(data));
  }

  watch(prefix: string, handlers: WatchHandlers): StoreWatch {
    const w = { prefix, handlers, ready: false };
    this.watchers.add(w);
    queueMicrotask(() => {
      if (!this.watchers.has(w)) return;
      w.ready = true;
      handlers.onReset(
        [...this.view.values()].filter((v) => v.kv.key.startsWith(prefix)).map((v) => ({ ...v.kv })),
        this.revision,
      );
    });
    return {
      close: async () => {
        this.watchers.delete(w);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const txn of [...this.pending]) {
      txn.failed = 'closed';
      this.finish(txn);
      txn.resolve({ ok: false, unavailable: 'the daemon is stopping' });
    }
    try {
      await this.persist();
    } catch (err) {
      this.opts.log.warn('cannot persist the mesh store at close', { error: (err as Error).message });
    }
    await this.commits.idle();
    this.closed = true;
    clearInterval(this.tick);
    for (const t of this.kept.values()) clearInterval(t);
    this.kept.clear();
    this.watchers.clear();
    this.transport = undefined;
  }
}
