/**
 * The daemon's Prometheus registry (src/metrics/). One registry per daemon, so tests can
 * run several daemons in one process without metric name clashes. Components add their
 * own counters/gauges to it; DaemonControl.metrics() returns `registry.metrics()`.
 */
import { Registry } from '../metrics/registry';
import { registerProcessMetrics } from '../metrics/process-metrics';

export const METRIC_PREFIX = 'weavets_';

export interface MetricsRegistryOptions {
  /** Also export process metrics (CPU, memory, event loop lag, GC); default true. */
  processMetrics?: boolean;
  /** Labels added to every series, e.g. { peer: "7e:21:..." }. */
  labels?: Record<string, string>;
}

export function createMetricsRegistry(opts: MetricsRegistryOptions = {}): Registry {
  const registry = new Registry(opts.labels ? { defaultLabels: opts.labels } : {});
  // Event loop delay sampled every 100 ms, not 10 (prom-client's default, which this
  // replaced): each sample wakes the loop, and 100 wake-ups a second cost an idle daemon
  // ~1% of a core (bench/scale.ts).
  if (opts.processMetrics ?? true)
    registerProcessMetrics(registry, { prefix: METRIC_PREFIX, eventLoopResolutionMs: 100 });
  return registry;
}
