/**
 * IPAM metrics: blocks owned and addresses used/free per network (read from the
 * allocator's view when Prometheus scrapes), and allocate/release latency by outcome.
 */
import type { Registry } from '../metrics/registry';
import { Gauge } from '../metrics/gauge';
import { Histogram } from '../metrics/histogram';
import { counterFromTotals } from '../counter-from-totals';
import type { IpamStatus } from '../ipam/status';

export interface IpamMetricsSource {
  status(): IpamStatus;
  /** The mesh store's counters (absent with etcd). */
  storeStats?():
    { malformed: number; claimsConfirmed: number; claimsLost: number; entries: number; peers: number } | undefined;
  /** Addresses released because nothing on this host used them (src/ipam/reconcile.ts). */
  reclaimedAddresses(): number;
}

/** Register the gauges; returns the observer to hand to the allocator. */
export function registerIpamMetrics(
  registry: Registry,
  source: IpamMetricsSource,
): (op: 'allocate' | 'release', outcome: string, seconds: number) => void {
  registerAllocationGauges(registry, source);
  if (source.storeStats) registerMeshStoreMetrics(registry, source.storeStats.bind(source));
  counterFromTotals({
    name: 'weavets_ipam_reclaimed_total',
    help: 'Addresses this host held that nothing on it used (no endpoint, exposure or Docker handle), released after the grace period.',
    registry,
    read(emit) {
      emit({}, source.reclaimedAddresses());
    },
  });
  const latency = new Histogram({
    name: 'weavets_ipam_operation_seconds',
    help: 'Duration of address allocations and releases against the store, by outcome (ok or an error code).',
    labelNames: ['op', 'outcome'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registry,
  });
  return (op, outcome, seconds) => latency.observe({ op, outcome }, seconds);
}

/** What IPAM's status says, read when Prometheus scrapes: blocks, addresses, hosts, conflicts. */
function registerAllocationGauges(registry: Registry, source: IpamMetricsSource): void {
  new Gauge({
    name: 'weavets_ipam_blocks',
    help: 'Address blocks this host owns, per network.',
    labelNames: ['network'],
    registry,
    collect() {
      this.reset();
      for (const n of source.status().networks) this.set({ network: n.network }, n.blocks.length);
    },
  });
  new Gauge({
    name: 'weavets_ipam_addresses',
    help: "Addresses in this host's blocks, per network and state (used, free).",
    labelNames: ['network', 'state'],
    registry,
    collect() {
      this.reset();
      for (const n of source.status().networks) {
        this.set({ network: n.network, state: 'used' }, n.used);
        this.set({ network: n.network, state: 'free' }, n.free);
      }
    },
  });
  new Gauge({
    name: 'weavets_ipam_hosts',
    help: 'Hosts registered in the store, this one included.',
    registry,
    collect() {
      this.set(source.status().hosts.length);
    },
  });
  new Gauge({
    name: 'weavets_ipam_conflicts',
    help: 'IPAM keys (blocks, addresses, handles) several hosts hold with different values: found when a partition healed (mesh store); nothing new is allocated from a contested block.',
    registry,
    collect() {
      this.set(source.status().conflicts.filter((c) => c.key.startsWith('ipam/')).length);
    },
  });
  new Gauge({
    name: 'weavets_store_conflicts',
    help: 'Store keys of any kind several hosts hold with different values (mesh store).',
    registry,
    collect() {
      this.set(source.status().conflicts.length);
    },
  });
}

/** The mesh store's own counters (no etcd). */
function registerMeshStoreMetrics(registry: Registry, stats: NonNullable<IpamMetricsSource['storeStats']>): void {
  counterFromTotals({
    name: 'weavets_store_messages_rejected_total',
    help: 'Mesh store (STORE) messages dropped as malformed.',
    registry,
    read(emit) {
      emit({}, stats()?.malformed ?? 0);
    },
  });
  counterFromTotals({
    name: 'weavets_store_claims_total',
    help: 'Compare-and-create claims of this host on the mesh store, by outcome (confirmed, lost).',
    labelNames: ['outcome'],
    registry,
    read(emit) {
      const s = stats();
      if (!s) return;
      emit({ outcome: 'confirmed' }, s.claimsConfirmed);
      emit({ outcome: 'lost' }, s.claimsLost);
    },
  });
  new Gauge({
    name: 'weavets_store_entries',
    help: 'Entries in the mesh store (every host, deletions included).',
    registry,
    collect() {
      this.set(stats()?.entries ?? 0);
    },
  });
}
