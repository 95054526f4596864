/**
 * Policy on this host: follows the policies and every host's endpoints in the store,
 * publishes this host's endpoints (labels and addresses) there, compiles the whole
 * picture into nftables and puts it in force on every change of policy, labels or
 * endpoints; reads the drop log. The daemon builds it after the endpoints are restored.
 *
 * Until the store's first listing has arrived nothing is applied, so a restarted daemon
 * leaves the previous run's tables in force instead of opening up while it starts.
 */
import type { Registry } from '../metrics/registry';
import { Counter } from '../metrics/counter';
import type { Logger } from '../log';
import type { Store, StoreLease, StoreWatch, KvEntry, WatchEvent } from '../store/types';
import { WeavetsError } from '../errors';
import type { EndpointStatus } from '../endpoint/types';
import { labelsProblem } from './labels';
import { validatePolicy, PolicyError, type Policy, type StoredPolicy } from './model';
import {
  applyPolicies,
  removePolicies,
  ENDPOINTS_PREFIX,
  GENERATION_KEY,
  POLICY_PREFIX,
  RULES_PREFIX,
  endpointKey,
  type ApplyResult,
} from './book';
import { compileRuleset, type CompileBridge, type LocalPort, type PolicyEndpoint } from './nft';
import { CompileCache } from './endpoint-index';
import { evaluate, type EvalTraffic, type Verdict } from './evaluate';
import type { EnforceReport, PolicyEnforcer } from './enforcer';
import { DropRing, NflogReader, dropFromPacket, type PolicyDrop } from './drops';
import { compareText } from '../text-order';

export const POLICY_LOG_GROUP = 6783;
const LOG_RATE = 20;
const DROP_RING = 1000;
const RETRY_MS = 2000;

/** `weavets policy status --json` (GET /policy/status). */
export interface PolicyStatus {
  /** Generation of the policy set in the store as this host last saw it. */
  generation: number;
  /** Generation in force in this host's tables; -1 before the first enforcement. */
  enforcedGeneration: number;
  enforcedAt?: string;
  policies: number;
  /** Endpoints known cluster-wide (this host's and the others'). */
  endpoints: number;
  dryRun: boolean;
  /** Bridges whose frames pass through the stateful table. */
  statefulBridges: string[];
  /** Why the last enforcement failed (the previous ruleset stays in force). */
  error?: string;
  /** Drop records this host has read. */
  drops: number;
  /** The last successful enforcement (docs/POLICY.md, "Applying a change"). */
  lastEnforceMs?: EnforceTimes;
}

/**
 * How long the last successful enforcement took, ms: `compile` (the whole ruleset, in
 * the daemon), `apply` (everything after: the script, `nft` and the bridges), of which
 * `nft` (the child process) and `bridges` (nf_call_iptables); `mode` says whether both
 * tables were replaced (`full`), only what changed was sent (`incremental`) or nothing
 * had changed (`none`).
 */
export interface EnforceTimes {
  compile: number;
  apply: number;
  nft: number;
  bridges: number;
  mode: EnforceReport['mode'];
}

export interface PolicyServiceOptions {
  store: Store;
  /** This host's peer name and nickname. */
  self: string;
  nickname: string;
  leaseTtlSeconds: number;
  dryRun: boolean;
  enforcer: PolicyEnforcer;
  /** This host's endpoints now. */
  localEndpoints(): EndpointStatus[];
  /** This host's bridges now (every network it carries). */
  bridges(): CompileBridge[];
  /** The fastdp VXLAN port when that data path may be used (its datagrams are not tracked). */
  tunnelPort?: number;
  metrics: Registry;
  log: Logger;
}

export class PolicyService {
  private readonly rules = new Map<string, StoredPolicy>();
  private readonly parsed = new Map<string, Policy>();
  private readonly remote = new Map<string, PolicyEndpoint>();
  /** Counts changes of `remote`: with this host's endpoints, the compile cache's stamp. */
  private remoteChanges = 0;
  private readonly compileCache = new CompileCache();
  private generation = 0;
  private enforcedGeneration = -1;
  private enforcedAt: string | undefined;
  private lastError: string | undefined;
  private statefulBridges: string[] = [];
  private lastEnforceMs: EnforceTimes | undefined;
  private listed = false;
  private watch: StoreWatch | undefined;
  private lease: StoreLease | undefined;
  private readonly published = new Map<string, string>();
  private stale = new Set<string>();
  private enforcing: Promise<void> = Promise.resolve();
  private enforcePending = false;
  private publishing: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private publishTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private reader: NflogReader | undefined;
  private readonly ring = new DropRing(DROP_RING);
  private dropCount = 0;
  private readonly dropCounter: Counter<'network' | 'policy'>;
  private firstListing!: () => void;
  private readonly listedPromise = new Promise<void>((r) => (this.firstListing = r));

  private constructor(private readonly opts: PolicyServiceOptions) {
    this.dropCounter = new Counter({
      name: 'weavets_policy_drops_total',
      help: 'Packets refused by a policy (or by anti-spoofing, policy="anti-spoofing"), as logged; audit-mode records count too',
      labelNames: ['network', 'policy'],
      registry: opts.metrics,
    });
  }

  static async start(opts: PolicyServiceOptions): Promise<PolicyService> {
    const s = new PolicyService(opts);
    try {
      s.reader = await NflogReader.open(POLICY_LOG_GROUP, (p) => s.onLogged(p), opts.log);
    } catch (err) {
      opts.log.warn('policy drops will not be shown: cannot read NFLOG', { error: (err as Error).message });
    }
    s.lease = await s.grant();
    const mine = `${ENDPOINTS_PREFIX}${opts.self}/`;
    s.stale = new Set((await opts.store.list(mine)).entries.filter((e) => e.lease !== s.lease!.id).map((e) => e.key));
    s.watch = opts.store.watch(POLICY_PREFIX, {
      onReset: (entries) => s.reset(entries),
      onEvents: (events) => s.applyEvents(events),
    });
    s.endpointsChanged();
    return s;
  }

  // ---- the store's view ------------------------------------------------------------

  private reset(entries: KvEntry[]): void {
    this.rules.clear();
    this.parsed.clear();
    this.remote.clear();
    this.remoteChanges++;
    this.generation = 0;
    for (const e of entries) this.put(e.key, e.value);
    this.listed = true;
    this.firstListing();
    this.schedule();
  }

  private applyEvents(events: WatchEvent[]): void {
    for (const e of events) {
      if (e.type === 'put') this.put(e.key, e.value);
      else this.del(e.key);
    }
    this.schedule();
  }

  private put(key: string, value: string): void {
    try {
      if (key === GENERATION_KEY) {
        this.generation = (JSON.parse(value) as { generation: number }).generation;
      } else if (key.startsWith(RULES_PREFIX)) {
        const stored = JSON.parse(value) as StoredPolicy;
        const policy = validatePolicy(stored.document, { defaultNetwork: stored.network });
        this.rules.set(stored.name, stored);
        this.parsed.set(stored.name, policy);
      } else if (key.startsWith(ENDPOINTS_PREFIX)) {
        const ep = JSON.parse(value) as PolicyEndpoint;
        if (labelsProblem(ep.labels) !== undefined || typeof ep.ip !== 'string') throw new Error('bad endpoint record');
        this.remote.set(key, ep);
        this.remoteChanges++;
      }
    } catch (err) {
      this.opts.log.error('ignoring an unreadable policy record in the store', { key, error: (err as Error).message });
    }
  }

  private del(key: string): void {
    if (key.startsWith(RULES_PREFIX)) {
      const name = key.slice(RULES_PREFIX.length);
      this.rules.delete(name);
      this.parsed.delete(name);
    } else if (key.startsWith(ENDPOINTS_PREFIX)) {
      this.remote.delete(key);
      this.remoteChanges++;
    }
  }

  // ---- enforcement -------------------------------------------------------------------

  private localPolicyEndpoints(): PolicyEndpoint[] {
    return this.opts.localEndpoints().map((ep) => {
      const out: PolicyEndpoint = {
        id: ep.id,
        network: ep.network,
        ip: ep.address.split('/')[0]!,
        labels: ep.labels ?? {},
        host: this.opts.self,
        hostNickname: this.opts.nickname,
      };
      if (ep.name !== undefined) out.name = ep.name;
      return out;
    });
  }

  /** Every endpoint of the cluster: ours from the registry, others' from the store. */
  endpoints(): PolicyEndpoint[] {
    const mine = this.localPolicyEndpoints();
    const others = [...this.remote.values()].filter((e) => e.host !== this.opts.self);
    return [...mine, ...others];
  }

  private schedule(): void {
    if (!this.listed || this.closed) return;
    if (this.enforcePending) return;
    this.enforcePending = true;
    this.enforcing = this.enforcing.then(async () => {
      this.enforcePending = false;
      if (this.closed) return;
      await this.enforceNow();
    });
  }

  private async enforceNow(): Promise<void> {
    const generation = this.generation;
    const local = this.opts.localEndpoints();
    const localPorts: LocalPort[] = local
      .filter((ep) => ep.hostVeth !== '' && ep.mac !== '')
      .map((ep) => ({
        network: ep.network,
        hostVeth: ep.hostVeth,
        mac: ep.mac.toLowerCase(),
        ip: ep.address.split('/')[0]!,
      }));
    const bridges = this.opts.bridges();
    const t0 = performance.now();
    const endpoints = this.endpoints();
    // What the compile resolves selectors over: every endpoint's network, address and
    // labels; ours are few, the others' change only through the store (counted).
    const mine = endpoints.filter((e) => e.host === this.opts.self).map((e) => [e.network, e.ip, e.labels]);
    this.compileCache.retain(new Set(bridges.map((b) => b.network)));
    const compiled = compileRuleset({
      policies: [...this.parsed.values()],
      endpoints,
      cache: { store: this.compileCache, stamp: `${this.remoteChanges} ${JSON.stringify(mine)}` },
      localPorts,
      bridges,
      dryRun: this.opts.dryRun,
      logGroup: POLICY_LOG_GROUP,
      logRate: LOG_RATE,
      tunnelPort: this.opts.tunnelPort,
    });
    const t1 = performance.now();
    try {
      const report = await this.opts.enforcer.apply(
        compiled,
        bridges.map((b) => b.bridge),
      );
      this.lastEnforceMs = {
        compile: Math.round(t1 - t0),
        apply: Math.round(performance.now() - t1),
        nft: Math.round(report.nftMs),
        bridges: Math.round(report.bridgesMs),
        mode: report.mode,
      };
      this.enforcedGeneration = generation;
      this.enforcedAt = new Date().toISOString();
      this.statefulBridges = compiled.statefulBridges;
      if (this.lastError !== undefined) this.opts.log.info('policy enforcement recovered', { generation });
      this.lastError = undefined;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.opts.log.error('cannot put policy in force; the previous ruleset stays', {
        generation,
        error: this.lastError,
      });
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.schedule(), RETRY_MS);
      this.retryTimer.unref();
    }
  }

  /** Wait until what is known now is in force (attach answers after its port is guarded). */
  async settled(): Promise<void> {
    await this.listedPromise;
    this.schedule();
    await this.enforcing;
  }

  /** Endpoints attached, detached or relabelled here: publish them and enforce again. */
  endpointsChanged(): void {
    this.schedule();
    this.publish();
  }

  // ---- publishing this host's endpoints --------------------------------------------

  private async grant(): Promise<StoreLease> {
    const lease = await this.opts.store.grantLease(this.opts.leaseTtlSeconds);
    lease.onLost((reason) => {
      if (this.closed) return;
      this.opts.log.warn('policy endpoint lease lost; publishing our endpoints again', { reason });
      this.lease = undefined;
      this.published.clear();
      this.publish();
    });
    return lease;
  }

  private publish(): void {
    this.publishing = this.publishing.then(async () => {
      if (this.closed) return;
      try {
        if (!this.lease) this.lease = await this.grant();
        const want = new Map<string, string>();
        for (const ep of this.localPolicyEndpoints()) want.set(endpointKey(this.opts.self, ep.id), JSON.stringify(ep));
        for (const [key, value] of want) {
          if (this.published.get(key) === value) continue;
          await this.opts.store.put(key, value, this.lease.id);
          this.published.set(key, value);
        }
        for (const key of [...this.published.keys(), ...this.stale]) {
          if (want.has(key)) continue;
          await this.opts.store.delete(key);
          this.published.delete(key);
        }
        this.stale.clear();
      } catch (err) {
        this.opts.log.warn('cannot publish endpoint labels yet; retrying', { error: (err as Error).message });
        clearTimeout(this.publishTimer);
        this.publishTimer = setTimeout(() => this.publish(), RETRY_MS);
        this.publishTimer.unref();
      }
    });
  }

  // ---- drops -------------------------------------------------------------------------

  private onLogged(packet: Parameters<typeof dropFromPacket>[0]): void {
    const bridges = this.opts.bridges();
    const all = this.endpoints();
    const drop = dropFromPacket(
      packet,
      {
        networkName: (id) => bridges.find((b) => b.id === id)?.network,
        endpoint: (network, address) => {
          const ep = all.find((e) => e.network === network && e.ip === address);
          return ep ? { name: ep.name ?? ep.id, host: ep.hostNickname || ep.host } : undefined;
        },
      },
      Date.now(),
    );
    if (!drop) return;
    this.ring.push(drop);
    this.dropCount++;
    this.dropCounter.inc({ network: drop.network, policy: drop.policy });
  }

  drops(): PolicyDrop[] {
    return this.ring.list();
  }

  // ---- the API -----------------------------------------------------------------------

  async apply(documents: unknown[], networks: readonly string[], defaultNetwork: string): Promise<ApplyResult> {
    if (documents.length === 0) throw new PolicyError('', 'no policy given');
    const items = documents.map((doc, i) => {
      try {
        const p = validatePolicy(doc, { networks, defaultNetwork });
        return { name: p.name, network: p.network, document: doc as Record<string, unknown> };
      } catch (err) {
        if (err instanceof PolicyError && documents.length > 1)
          throw new PolicyError(err.path, err.reason, `policy ${i + 1}`, { cause: err });
        throw err;
      }
    });
    const names = new Set<string>();
    for (const it of items) {
      if (names.has(it.name)) throw new PolicyError('name', `policy ${it.name} appears twice`);
      names.add(it.name);
    }
    const result = await applyPolicies(this.opts.store, items);
    for (const p of result.policies)
      if (p.changed)
        this.opts.log.info('policy applied', { name: p.name, version: p.version, generation: result.generation });
    return result;
  }

  /**
   * What the policies in force say of a new connection between two addresses of a
   * network, with the live labels of the cluster's endpoints (`weavets trace`). The
   * same evaluator as `policy test`; an address that is no endpoint has no labels.
   */
  verdictFor(network: string, fromIp: string, toIp: string, traffic: EvalTraffic): Verdict {
    const endpoints = this.endpoints().filter((e) => e.network === network);
    const end = (ip: string): { labels: PolicyEndpoint['labels']; ip: string } => ({
      labels: endpoints.find((e) => e.ip === ip)?.labels ?? {},
      ip,
    });
    const policies = [...this.parsed.values()].filter((p) => p.network === network);
    return evaluate(policies, end(fromIp), end(toIp), traffic, this.opts.dryRun);
  }

  list(): StoredPolicy[] {
    return [...this.rules.values()].sort((a, b) => compareText(a.name, b.name));
  }

  show(name: string): StoredPolicy {
    const p = this.rules.get(name);
    if (!p)
      throw new WeavetsError(
        'EWEAVETS_NOT_FOUND',
        `no policy named ${JSON.stringify(name)}; see \`weavets policy ls\``,
      );
    return p;
  }

  async remove(names: readonly string[]): Promise<{ generation: number; removed: StoredPolicy[] }> {
    if (names.length === 0) throw new WeavetsError('EWEAVETS_BAD_REQUEST', 'name at least one policy to remove');
    const r = await removePolicies(this.opts.store, names);
    this.opts.log.info('policies removed', { names: names.join(','), generation: r.generation });
    return r;
  }

  status(): PolicyStatus {
    const s: PolicyStatus = {
      generation: this.generation,
      enforcedGeneration: this.enforcedGeneration,
      policies: this.rules.size,
      endpoints: this.endpoints().length,
      dryRun: this.opts.dryRun,
      statefulBridges: this.statefulBridges,
      drops: this.dropCount,
    };
    if (this.enforcedAt !== undefined) s.enforcedAt = this.enforcedAt;
    if (this.lastError !== undefined) s.error = this.lastError;
    if (this.lastEnforceMs !== undefined) s.lastEnforceMs = this.lastEnforceMs;
    return s;
  }

  /** Stop following the store; the tables stay in force (nothing fails open). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.publishTimer);
    this.reader?.close();
    await this.watch?.close().catch(() => undefined);
    await this.enforcing.catch(() => undefined);
    await this.publishing.catch(() => undefined);
    this.lease?.release();
  }
}
