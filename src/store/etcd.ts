/**
 * The Store interface over etcd v3 (the etcd3 package). Every unary call carries a
 * deadline so that a dead or partitioned etcd makes callers fail fast with
 * StoreUnavailableError instead of hanging; leases are kept alive by etcd3's keepalive
 * stream (the same lease id for the life of the daemon, never re-granted behind the
 * caller's back); watches re-list when etcd has compacted past their revision.
 */
import * as fs from 'node:fs';
import {
  CompareResult,
  CompareTarget,
  Etcd3,
  EtcdLeaseInvalidError,
  type ICompare,
  type IOptions,
  type Lease,
  type Watcher,
} from 'etcd3';
import type { Logger } from '../log';
import {
  StoreUnavailableError,
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

export interface EtcdStoreOptions {
  /** "http://10.0.0.5:2379" or "https://..."; several for a cluster. */
  endpoints: string[];
  /** PEM files for TLS: CA to trust, and a client certificate and key. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  /** Never logged. */
  password?: string;
  /** Deadline of one call, ms (default 3000). */
  callTimeoutMs?: number;
  /** Every key lives under this prefix (default "/weavets/"). */
  prefix?: string;
  log: Logger;
}

const DEFAULT_CALL_TIMEOUT_MS = 3000;
/** How etcd cancels a watch created with an expired or unknown auth token. */
const AUTH_TOKEN_ERROR = /invalid auth token|code = Unauthenticated/i;
const WATCH_RETRY_MS = 1000;

type RawKv = { key: Buffer; value: Buffer; mod_revision: string; create_revision: string; lease: string };

export class EtcdStore implements Store {
  readonly kind = 'etcd' as const;
  readonly location: string;
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly leases = new Set<Lease>();
  private readonly watches = new Set<StoreWatch>();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly hintContext: EtcdHintContext;

  constructor(opts: EtcdStoreOptions) {
    if (opts.endpoints.length === 0) throw new Error('etcd: no endpoints');
    this.location = opts.endpoints.join(',');
    this.prefix = opts.prefix ?? '/weavets/';
    this.log = opts.log;
    const timeout = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.timeoutMs = timeout;
    const options: IOptions = {
      hosts: opts.endpoints,
      dialTimeout: timeout,
      // Streams (watch, keepalive) live long; unary calls get a deadline each. etcd3's
      // default fault handling (retry on another endpoint, per-endpoint circuit breaker)
      // stays; call() bounds the whole of it.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    };
    if (opts.caFile !== undefined || opts.certFile !== undefined || opts.keyFile !== undefined) {
      if (opts.caFile === undefined) throw new Error('etcd TLS: --etcd-ca is required with --etcd-cert/--etcd-key');
      const creds: NonNullable<IOptions['credentials']> = { rootCertificate: fs.readFileSync(opts.caFile) };
      if (opts.certFile !== undefined) creds.certChain = fs.readFileSync(opts.certFile);
      if (opts.keyFile !== undefined) creds.privateKey = fs.readFileSync(opts.keyFile);
      options.credentials = creds;
    }
    if (opts.username !== undefined) {
      // No callOptions of its own: etcd3 then gives each authenticate call the
      // defaultCallOptions above, a fresh deadline per call. A fixed deadline computed here
      // would already be past when etcd3 authenticates again (the first call more than
      // `timeout` ms after start, or a token that expired: --auth-token-ttl, 5 minutes by
      // default), failing every call from then on with DEADLINE_EXCEEDED.
      options.auth = { username: opts.username, password: opts.password ?? '' };
    }
    this.client = new Etcd3(options);
    this.hintContext = {
      tls: options.credentials !== undefined || opts.endpoints.some((e) => e.startsWith('https:')),
      clientCert: opts.certFile !== undefined,
      ...(opts.username !== undefined ? { username: opts.username } : {}),
      prefix: this.prefix,
    };
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  private entry(kv: RawKv): KvEntry {
    return {
      key: kv.key.toString().slice(this.prefix.length),
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
      createRevision: Number(kv.create_revision),
      lease: String(kv.lease ?? '0'),
    };
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([fn(), deadline]);
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) throw err;
      const msg = err instanceof Error ? err.message : String(err);
      const hint = etcdErrorHint(msg, this.hintContext);
      throw new StoreUnavailableError(what, this.location, hint === undefined ? msg : `${msg.trim()}. ${hint}`, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const res = await this.call('get', () => this.client.get(this.k(key)).exec());
    const kv = res.kvs[0];
    return kv ? this.entry(kv) : undefined;
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    const b = this.client.put(this.k(key)).value(value);
    if (lease !== undefined) b.lease(lease);
    const res = await this.call('put', () => b.exec());
    return Number(res.header.revision);
  }

  async delete(key: string): Promise<boolean> {
    const res = await this.call('delete', () => this.client.delete().key(this.k(key)).exec());
    return Number(res.deleted) > 0;
  }

  async list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }> {
    const res = await this.call('list', () => this.client.getAll().prefix(this.k(prefix)).sort('Key', 'Ascend').exec());
    return { entries: res.kvs.map((kv) => this.entry(kv as RawKv)), revision: Number(res.header.revision) };
  }

  async txn(compare: Compare[], success: TxnOp[]): Promise<TxnResult> {
    // The raw request rather than etcd3's if().and() builder: the builder cannot give a
    // condition a range_end, which a range compare needs.
    const conditions = compare.map((c) => this.condition(c));
    const ops = success.map((op) => {
      if (op.op === 'delete') return this.client.delete().key(this.k(op.key));
      const p = this.client.put(this.k(op.key)).value(op.value);
      if (op.lease !== undefined) p.lease(op.lease);
      return p;
    });
    const res = await this.call('transaction', async () =>
      this.client.kv.txn({
        compare: conditions,
        success: await Promise.all(ops.map((o) => o.op())),
        failure: [],
      }),
    );
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  private condition(c: Compare): ICompare {
    if ('range' in c) {
      // Every key in [from, to) last changed before R + 1; an empty range holds (etcd
      // compares a missing key as revision 0).
      return {
        key: Buffer.from(this.k(c.range.from)),
        range_end: Buffer.from(this.k(c.range.to)),
        target: CompareTarget.Mod,
        result: CompareResult.Less,
        mod_revision: c.unchangedSince + 1,
      };
    }
    const key = Buffer.from(this.k(c.key));
    if ('value' in c)
      return { key, target: CompareTarget.Value, result: CompareResult.Equal, value: Buffer.from(c.value) };
    // Version 0 is etcd's "does not exist".
    if (c.modRevision === 0) return { key, target: CompareTarget.Version, result: CompareResult.Equal, version: 0 };
    return { key, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: c.modRevision };
  }

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    const lease = this.client.lease(ttlSeconds, { autoKeepAlive: true });
    // etcd3 emits 'lost' for a failed first grant too; the grant() rejection reports that.
    let lostHandler: ((reason: string) => void) | undefined;
    let granted = false;
    lease.on('lost', (err) => {
      if (!granted) return;
      this.leases.delete(lease);
      this.log.warn('etcd lease lost', { lease: leaseId, error: err.message });
      lostHandler?.(err.message);
    });
    let leaseId = '';
    leaseId = await this.call('lease grant', () => lease.grant());
    granted = true;
    this.leases.add(lease);
    return {
      id: leaseId,
      ttlSeconds,
      onLost: (h) => {
        lostHandler = h;
      },
      revoke: async () => {
        this.leases.delete(lease);
        await this.call('lease revoke', () => lease.revoke({ deadline: Date.now() + DEFAULT_CALL_TIMEOUT_MS }));
      },
      release: () => {
        this.leases.delete(lease);
        lease.release();
      },
    };
  }

  async revokeLease(id: string): Promise<void> {
    try {
      await this.call('lease revoke', () => this.client.leaseClient.leaseRevoke({ ID: id }));
    } catch (err) {
      if (err instanceof StoreUnavailableError && /not found/i.test(err.message)) return;
      throw err;
    }
  }

  watch(prefix: string, handlers: WatchHandlers): StoreWatch {
    let watcher: Watcher | undefined;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    // One generation per listing: events of a watcher we abandoned are ignored.
    let generation = 0;
    const restart = (why: string): void => {
      if (stopped) return;
      if (AUTH_TOKEN_ERROR.test(why)) this.renewWatchStream();
      generation++;
      const old = watcher;
      watcher = undefined;
      void old?.cancel().catch(() => undefined);
      this.log.debug('watch re-listing', { prefix, why });
      clearTimeout(timer);
      timer = setTimeout(start, WATCH_RETRY_MS);
    };
    const start = (): void => {
      if (stopped) return;
      const gen = ++generation;
      void (async () => {
        const { entries, revision } = await this.list(prefix);
        if (stopped || gen !== generation) return;
        handlers.onReset(entries, revision);
        const w = await this.client
          .watch()
          .prefix(this.k(prefix))
          .startRevision(String(revision + 1))
          .create();
        if (stopped || gen !== generation) {
          await w.cancel().catch(() => undefined);
          return;
        }
        watcher = w;
        w.on('data', (res) => {
          if (gen !== generation) return;
          if (Number(res.compact_revision) > 0) {
            restart(`compacted at ${res.compact_revision}`);
            return;
          }
          const events: WatchEvent[] = res.events.map((e) => ({
            type: e.type === 'Delete' ? 'delete' : 'put',
            key: e.kv.key.toString().slice(this.prefix.length),
            value: e.type === 'Delete' ? '' : e.kv.value.toString(),
            modRevision: Number(e.kv.mod_revision),
          }));
          if (events.length > 0) handlers.onEvents(events);
        });
        // etcd3 resumes a broken stream from its last revision by itself; an error means
        // it cannot (compacted, cancelled by the server): start over from a listing.
        w.on('error', (err) => restart(err.message));
      })().catch((err: unknown) => restart(err instanceof Error ? err.message : String(err)));
    };
    start();
    const handle: StoreWatch = {
      close: async () => {
        stopped = true;
        clearTimeout(timer);
        this.watches.delete(handle);
        await watcher?.cancel().catch(() => undefined);
      },
    };
    this.watches.add(handle);
    return handle;
  }

  /**
   * etcd checks a watch stream's auth token when a watch is created on it, and etcd3 opens
   * one stream for all watches with the token it had then. Once that token has expired
   * (--auth-token-ttl), every new watch on the stream is cancelled with "invalid auth
   * token", and re-creating it on the same stream fails forever; unary calls recover by
   * themselves (etcd3 re-authenticates on that error). So: drop the cached token and
   * break the stream, as a network error would: etcd3 re-opens it with a fresh token and
   * resumes the watches still on it from their revisions. etcd3 has no public API for
   * this; these are its ConnectionPool.authenticator and Namespace.watchManager.
   */
  private renewWatchStream(): void {
    const c = this.client as unknown as {
      pool?: { authenticator?: { invalidateMetadata?: () => void } };
      watchManager?: { state?: number; handleError?: (err: Error) => void };
    };
    const manager = c.watchManager;
    // 2 is WatchManager's State.Connected; in any other state a fresh stream is coming anyway.
    if (manager?.state !== 2 || typeof manager.handleError !== 'function') return;
    this.log.debug('etcd auth token expired: re-opening the watch stream');
    c.pool?.authenticator?.invalidateMetadata?.();
    manager.handleError(new Error('etcd auth token expired; re-authenticating'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) await w.close();
    for (const l of this.leases) l.release();
    this.leases.clear();
    this.client.close();
  }
}

export interface EtcdHintContext {
  /** TLS is in use (--etcd-ca given, or an https:// endpoint). */
  tls: boolean;
  /** A client certificate was given (--etcd-cert/--etcd-key). */
  clientCert: boolean;
  /** --etcd-user, if given. */
  username?: string;
  /** The key prefix weavets uses, for a permission hint. */
  prefix: string;
}

/**
 * What to do about an etcd error, for the errors a misconfigured TLS or auth setup gives
 * (gRPC and OpenSSL say "unable to verify the first certificate" or "SSL alert number 42",
 * which do not name the flag to fix). Undefined when there is nothing specific to say.
 */
export function etcdErrorHint(message: string, ctx: EtcdHintContext): string | undefined {
  const m = message;
  if (/Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID|altnames/i.test(m)) {
    return "etcd's server certificate does not name the host or address used in --etcd: use a URL whose host is in the certificate's subjectAltName, or reissue the certificate";
  }
  if (
    /unable to verify|self[- ]signed certificate|unable to get (local )?issuer|certificate verify failed|CERT_UNTRUSTED|UNABLE_TO_VERIFY/i.test(
      m,
    )
  ) {
    return ctx.tls
      ? "etcd's server certificate is not signed by the CA in --etcd-ca: give the CA certificate (PEM) that issued etcd's --cert-file"
      : "etcd's server certificate is not trusted: give the CA certificate (PEM) that issued it with --etcd-ca";
  }
  if (/certificate has expired|CERT_HAS_EXPIRED|certificate is not yet valid/i.test(m)) {
    return 'a TLS certificate is expired or not yet valid: check the clocks, and renew the certificate';
  }
  if (
    /alert (bad certificate|certificate required|unknown ca|certificate unknown|unsupported certificate)|alert number (42|43|46|48|116)\b/i.test(
      m,
    )
  ) {
    return ctx.clientCert
      ? "etcd refused this host's client certificate: --etcd-cert must be issued by a CA in etcd's --trusted-ca-file, for client authentication (extendedKeyUsage clientAuth), with its --etcd-key"
      : 'etcd requires a client certificate (it runs with --client-cert-auth): give --etcd-cert and --etcd-key';
  }
  if (/wrong version number|packet length too long|unknown protocol|http\/1\.\d|Protocol error/i.test(m)) {
    return ctx.tls
      ? 'etcd does not speak TLS on this port: use an http:// URL in --etcd, or give etcd --cert-file/--key-file'
      : 'etcd expects TLS on this port: use an https:// URL in --etcd and give --etcd-ca';
  }
  if (/authentication failed|invalid user ID or password/i.test(m)) {
    return `etcd rejected user '${ctx.username ?? ''}': check --etcd-user and the password in --etcd-password-file (first line) or WEAVETS_ETCD_PASSWORD`;
  }
  if (/user name is empty|user name not found|invalid auth token/i.test(m) && ctx.username === undefined) {
    return 'etcd has authentication enabled: give --etcd-user and --etcd-password-file';
  }
  if (/authentication is not enabled/i.test(m)) {
    return 'etcd has authentication disabled: drop --etcd-user and --etcd-password-file, or enable auth in etcd';
  }
  if (/permission denied/i.test(m)) {
    return ctx.username !== undefined
      ? `etcd user '${ctx.username}' may not read and write weavets' keys: grant one of its roles readwrite on the prefix ${ctx.prefix} (etcdctl role grant-permission ROLE --prefix=true readwrite ${ctx.prefix})`
      : `etcd refused access to ${ctx.prefix}: give --etcd-user and --etcd-password-file of a user with readwrite on that prefix`;
  }
  return undefined;
}
