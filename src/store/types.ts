/**
 * The cluster store as the rest of weavets sees it: a narrow key-value interface that
 * etcd (etcd.ts), the mesh store replicated over the control connections (mesh.ts, the
 * default without --etcd) and the single-host file store (file.ts) implement.
 *
 * Keys and values are strings. Every mutation bumps a store-wide revision; each key
 * remembers the revision of its last change (`modRevision`) and of its creation, which
 * is what compare-and-swap transactions compare. A key may be attached to a lease: when
 * the lease expires (its owner stopped keeping it alive for `ttl` seconds) or is
 * revoked, the key is deleted.
 *
 * Every call may throw StoreUnavailableError: the store did not answer within the
 * implementation's deadline. Callers fail fast with it rather than wait (docs/ARCHITECTURE.md).
 */
import { WeavetsError } from '../errors';

export interface KvEntry {
  key: string;
  value: string;
  /** Revision of the last change of this key. */
  modRevision: number;
  /** Revision at which the key was created. */
  createRevision: number;
  /** Lease the key is attached to, "0" for none. */
  lease: string;
}

/** The keys from `from` (included) to `to` (excluded), in key order. */
export interface KeyRange {
  from: string;
  to: string;
}

/**
 * A condition of a transaction. `modRevision: 0` means "the key does not exist";
 * any other number means "exists and was last changed at exactly that revision".
 * `unchangedSince: R` over a range means "no key in the range was created or changed
 * after revision R" (a key deleted since is not seen): what a transaction compares when
 * its decision rests on a listing read at R (etcd compares every key of the range).
 */
export type Compare =
  { key: string; modRevision: number } | { key: string; value: string } | { range: KeyRange; unchangedSince: number };

/** Does one condition hold for a store whose keys are `get` and `entries` (file, mesh: their own view)? */
export function compareHolds(
  c: Compare,
  get: (key: string) => KvEntry | undefined,
  entries: () => Iterable<KvEntry>,
): boolean {
  if ('range' in c) {
    for (const kv of entries())
      if (kv.key >= c.range.from && kv.key < c.range.to && kv.modRevision > c.unchangedSince) return false;
    return true;
  }
  const kv = get(c.key);
  if ('value' in c) return kv !== undefined && kv.value === c.value;
  return c.modRevision === 0 ? kv === undefined : kv?.modRevision === c.modRevision;
}

export type TxnOp = { op: 'put'; key: string; value: string; lease?: string } | { op: 'delete'; key: string };

export interface TxnResult {
  succeeded: boolean;
  /** Store revision after the transaction (or at which the compare failed). */
  revision: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** The new value; "" for a delete. */
  value: string;
  modRevision: number;
}

export interface WatchHandlers {
  /**
   * The full current content under the prefix: first when the watch starts, and again
   * whenever the watch had to be re-established from a fresh listing (the store
   * compacted past the revision we were at, or the connection broke).
   */
  onReset(entries: KvEntry[], revision: number): void;
  /** Changes after the last reset, in revision order. */
  onEvents(events: WatchEvent[]): void;
}

export interface StoreWatch {
  close(): Promise<void>;
}

/** A lease the store keeps alive by itself until it is revoked or released. */
export interface StoreLease {
  readonly id: string;
  readonly ttlSeconds: number;
  /** Called once if the store says the lease is gone (expired while we could not reach it). */
  onLost(handler: (reason: string) => void): void;
  /** Delete the lease and every key attached to it. */
  revoke(): Promise<void>;
  /** Stop keeping it alive; its keys disappear when the TTL runs out. */
  release(): void;
}

/** A key several hosts hold with different values (the mesh store, after a partition healed). */
export interface StoreConflict {
  key: string;
  /** Peer names of the holders; the first is the one `get` answers with. */
  holders: string[];
}

export interface Store {
  /** "etcd", "mesh" (replicated over the control connections) or "file" (one host), for status and logs. */
  readonly kind: 'etcd' | 'file' | 'mesh';
  /** Where it is: endpoints, or the file path. Never holds credentials. */
  readonly location: string;
  get(key: string): Promise<KvEntry | undefined>;
  /** Put unconditionally; resolves to the new revision. */
  put(key: string, value: string, lease?: string): Promise<number>;
  /** Delete; resolves to whether the key existed. */
  delete(key: string): Promise<boolean>;
  /** Every key starting with `prefix`, in key order, and the revision of the listing. */
  list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }>;
  /** If every comparison holds, apply `success` atomically; otherwise apply nothing. */
  txn(compare: Compare[], success: TxnOp[]): Promise<TxnResult>;
  grantLease(ttlSeconds: number): Promise<StoreLease>;
  /** Revoke a lease by id (one held by a previous run of this daemon). Missing: no error. */
  revokeLease(id: string): Promise<void>;
  watch(prefix: string, handlers: WatchHandlers): StoreWatch;
  /** Keys in conflict now (only a replicated store without a single arbiter has any). */
  conflicts?(): StoreConflict[];
  close(): Promise<void>;
}

/** The store did not answer in time, or refused the connection. */
export class StoreUnavailableError extends WeavetsError {
  constructor(what: string, location: string, why: string, options?: { cause?: unknown }) {
    super(
      'EWEAVETS_STORE_UNAVAILABLE',
      `the cluster store (${location}) is unavailable: ${what} failed: ${why}`,
      options,
    );
  }
}

/** Compare-and-create: put `key` only if it does not exist. Resolves to whether it did. */
export async function createIfAbsent(store: Store, key: string, value: string, lease?: string): Promise<boolean> {
  const op: TxnOp = lease === undefined ? { op: 'put', key, value } : { op: 'put', key, value, lease };
  return (await store.txn([{ key, modRevision: 0 }], [op])).succeeded;
}
