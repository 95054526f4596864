/**
 * The process and Node.js metrics every daemon exports, under the names (prefixed) that
 * dashboards built for prom-client's default metrics read: CPU, memory, file
 * descriptors, event loop delay, handles and requests, V8 heap spaces, GC pauses.
 *
 * Everything is read when Prometheus scrapes (/proc/self/status, /proc/self/limits and
 * /proc/self/fd are kernel tables, a read never blocks) except two things that can only
 * be watched as they happen: the event loop delay, sampled by perf_hooks'
 * monitorEventLoopDelay every `eventLoopResolutionMs`, and GC pauses, reported by a
 * PerformanceObserver.
 */
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import {
  PerformanceObserver,
  constants as perfConstants,
  monitorEventLoopDelay,
  type NodeGCPerformanceDetail,
  type PerformanceEntry,
} from 'node:perf_hooks';
import type { Registry } from './registry';
import { Counter } from './counter';
import { Gauge } from './gauge';
import { Histogram } from './histogram';

export interface ProcessMetricsOptions {
  /** Prepended to every name, e.g. `weavets_`. */
  prefix: string;
  /** How often the event loop delay is sampled; each sample wakes the loop. */
  eventLoopResolutionMs: number;
}

/** GC pause buckets, seconds (prom-client's defaults, so existing dashboards' quantiles hold). */
export const GC_DURATION_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5] as const;

const GC_KINDS = new Map<number, string>([
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [perfConstants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB, 'weakcb'],
]);

/** Node's undocumented live handle and request lists (what prom-client's per-type gauges count). */
interface ProcessInternals {
  _getActiveHandles?(): object[];
  _getActiveRequests?(): object[];
}

export function registerProcessMetrics(registry: Registry, opts: ProcessMetricsOptions): void {
  const p = opts.prefix;
  registerCpu(registry, p);
  new Gauge({
    name: `${p}process_start_time_seconds`,
    help: 'Start time of the process since unix epoch in seconds.',
    registry,
  }).set(Math.round(Date.now() / 1000 - process.uptime()));
  registerProcMemory(registry, p);
  new Gauge({
    name: `${p}process_open_fds`,
    help: 'Number of open file descriptors.',
    registry,
    collect() {
      // Less the descriptor readdir itself had open on the directory.
      this.set(fs.readdirSync('/proc/self/fd').length - 1);
    },
  });
  new Gauge({
    name: `${p}process_max_fds`,
    help: 'Maximum number of open file descriptors.',
    registry,
    collect() {
      const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
      if (m) this.set(Number(m[1]));
    },
  });
  registerEventLoopDelay(registry, p, opts.eventLoopResolutionMs);
  registerHandles(registry, p);
  registerHeap(registry, p);
  const [major, minor, patch] = process.version.slice(1).split('.');
  new Gauge({
    name: `${p}nodejs_version_info`,
    help: 'Node.js version info.',
    labelNames: ['version', 'major', 'minor', 'patch'],
    registry,
  }).set({ version: process.version, major, minor, patch }, 1);
  registerGc(registry, p);
}

/** CPU time since the process started (getrusage through process.cpuUsage), as counters. */
function registerCpu(registry: Registry, p: string): void {
  let last = { user: 0, system: 0 };
  const user = new Counter({
    name: `${p}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registry,
  });
  const system = new Counter({
    name: `${p}process_cpu_system_seconds_total`,
    help: 'Total system CPU time spent in seconds.',
    registry,
  });
  new Counter({
    name: `${p}process_cpu_seconds_total`,
    help: 'Total user and system CPU time spent in seconds.',
    registry,
    collect() {
      const now = process.cpuUsage();
      const userSeconds = Math.max(0, now.user - last.user) / 1e6;
      const systemSeconds = Math.max(0, now.system - last.system) / 1e6;
      last = now;
      user.inc(userSeconds);
      system.inc(systemSeconds);
      this.inc(userSeconds + systemSeconds);
    },
  });
}

/** VmRSS, VmSize and VmData from /proc/self/status. */
function registerProcMemory(registry: Registry, p: string): void {
  const kb = (status: string, field: string): number | undefined => {
    const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  new Gauge({
    name: `${p}process_resident_memory_bytes`,
    help: 'Resident memory size in bytes.',
    registry,
    collect() {
      const status = fs.readFileSync('/proc/self/status', 'utf8');
      for (const [gauge, field] of [
        [this, 'VmRSS'],
        [virtual, 'VmSize'],
        [heap, 'VmData'],
      ] as const) {
        const bytes = kb(status, field);
        if (bytes !== undefined) gauge.set(bytes);
      }
    },
  });
  const virtual = new Gauge({
    name: `${p}process_virtual_memory_bytes`,
    help: 'Virtual memory size in bytes.',
    registry,
  });
  const heap = new Gauge({ name: `${p}process_heap_bytes`, help: 'Process heap size in bytes.', registry });
}

/**
 * nodejs_eventloop_lag_seconds: how long a callback queued now waits for the loop,
 * measured during the scrape. The min..p99 gauges: the delays sampled since the last
 * scrape (left as they were when no sample was taken since), as Node records them: from
 * one sample to the next, so the sampling interval is included (~0.1 s at 100 ms when the
 * loop is idle), which is what prom-client's gauges showed too.
 */
function registerEventLoopDelay(registry: Registry, p: string, resolutionMs: number): void {
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  const stats: [string, string, () => number][] = [
    ['min', 'The minimum recorded event loop delay.', () => delay.min],
    ['max', 'The maximum recorded event loop delay.', () => delay.max],
    ['mean', 'The mean of the recorded event loop delays.', () => delay.mean],
    ['stddev', 'The standard deviation of the recorded event loop delays.', () => delay.stddev],
    ['p50', 'The 50th percentile of the recorded event loop delays.', () => delay.percentile(50)],
    ['p90', 'The 90th percentile of the recorded event loop delays.', () => delay.percentile(90)],
    ['p99', 'The 99th percentile of the recorded event loop delays.', () => delay.percentile(99)],
  ];
  const gauges: [Gauge, () => number][] = [];
  new Gauge({
    name: `${p}nodejs_eventloop_lag_seconds`,
    help: 'Lag of event loop in seconds.',
    registry,
    async collect() {
      const start = process.hrtime.bigint();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
      if (delay.count > 0) for (const [gauge, read] of gauges) gauge.set(read() / 1e9);
      delay.reset();
    },
  });
  for (const [stat, help, read] of stats)
    gauges.push([new Gauge({ name: `${p}nodejs_eventloop_lag_${stat}_seconds`, help, registry }), read]);
}

/** What keeps the loop alive, and live libuv handles and requests, in total and by type. */
function registerHandles(registry: Registry, p: string): void {
  const internals = process as unknown as ProcessInternals;
  const byType = (items: readonly (string | object)[]): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const item of items) {
      const type = typeof item === 'string' ? item : item?.constructor?.name;
      if (type !== undefined) counts.set(type, (counts.get(type) ?? 0) + 1);
    }
    return counts;
  };
  const lists: [string, string, string, (() => readonly (string | object)[]) | undefined][] = [
    [
      'handles',
      'Number of active libuv handles grouped by handle type. Every handle type is C++ class name.',
      'Total number of active handles.',
      internals._getActiveHandles?.bind(process),
    ],
    [
      'requests',
      'Number of active libuv requests grouped by request type. Every request type is C++ class name.',
      'Total number of active requests.',
      internals._getActiveRequests?.bind(process),
    ],
  ];
  registerByType(
    registry,
    `${p}nodejs_active_resources`,
    'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
    'Total number of active resources.',
    () => byType(process.getActiveResourcesInfo()),
  );
  for (const [what, help, totalHelp, list] of lists) {
    if (!list) continue;
    registerByType(registry, `${p}nodejs_active_${what}`, help, totalHelp, () => byType(list()));
  }
}

function registerByType(
  registry: Registry,
  name: string,
  help: string,
  totalHelp: string,
  count: () => Map<string, number>,
): void {
  new Gauge({
    name,
    help,
    labelNames: ['type'],
    registry,
    collect() {
      this.reset();
      for (const [type, n] of count()) this.set({ type }, n);
    },
  });
  new Gauge({
    name: `${name}_total`,
    help: totalHelp,
    registry,
    collect() {
      let n = 0;
      for (const k of count().values()) n += k;
      this.set(n);
    },
  });
}

/** V8's heap: in all (process.memoryUsage) and per space (new, old, code, ...). */
function registerHeap(registry: Registry, p: string): void {
  new Gauge({
    name: `${p}nodejs_heap_size_total_bytes`,
    help: 'Process heap size from Node.js in bytes.',
    registry,
    collect() {
      const m = process.memoryUsage();
      this.set(m.heapTotal);
      used.set(m.heapUsed);
      external.set(m.external);
    },
  });
  const used = new Gauge({
    name: `${p}nodejs_heap_size_used_bytes`,
    help: 'Process heap size used from Node.js in bytes.',
    registry,
  });
  const external = new Gauge({
    name: `${p}nodejs_external_memory_bytes`,
    help: 'Node.js external memory size in bytes.',
    registry,
  });
  const spaceGauge = (kind: string, collect?: (this: Gauge<'space'>) => void): Gauge<'space'> =>
    new Gauge({
      name: `${p}nodejs_heap_space_size_${kind}_bytes`,
      help: `Process heap space size ${kind} from Node.js in bytes.`,
      labelNames: ['space'],
      registry,
      ...(collect ? { collect } : {}),
    });
  const spaceTotal = spaceGauge('total', () => {
    for (const s of v8.getHeapSpaceStatistics()) {
      const space = s.space_name.replace(/_space$/, '');
      spaceTotal.set({ space }, s.space_size);
      spaceUsed.set({ space }, s.space_used_size);
      spaceAvailable.set({ space }, s.space_available_size);
    }
  });
  const spaceUsed = spaceGauge('used');
  const spaceAvailable = spaceGauge('available');
}

/** GC pauses by kind, seconds, as V8 reports each one. */
function registerGc(registry: Registry, p: string): void {
  const pauses = new Histogram({
    name: `${p}nodejs_gc_duration_seconds`,
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'],
    buckets: GC_DURATION_BUCKETS,
    registry,
  });
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as PerformanceEntry & { detail?: NodeGCPerformanceDetail }).detail;
      const kind = GC_KINDS.get(detail?.kind ?? -1);
      pauses.observe(kind === undefined ? {} : { kind }, entry.duration / 1000);
    }
  }).observe({ entryTypes: ['gc'] });
}
