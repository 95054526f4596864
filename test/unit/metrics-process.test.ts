import { describe, expect, it } from 'vitest';
import * as v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createMetricsRegistry } from '../../src/api/metrics';

/** The value of an unlabelled sample, or of the first series matching `labels`. */
function sample(text: string, name: string, labels = ''): number {
  const re = new RegExp(`^${name}${labels === '' ? '(?:\\{[^}]*\\})?' : `\\{[^}]*${labels}[^}]*\\}`} (\\S+)$`, 'm');
  const m = re.exec(text);
  if (!m) throw new Error(`no sample ${name}${labels} in:\n${text}`);
  return Number(m[1] === '+Inf' ? Infinity : m[1]);
}

// The process and Node.js metrics, as prom-client's default metrics named them (with
// the daemon's prefix), so dashboards and bench/soak.ts, bench/throughput.ts keep working.
const EXPECTED: [string, string][] = [
  ['process_cpu_user_seconds_total', 'counter'],
  ['process_cpu_system_seconds_total', 'counter'],
  ['process_cpu_seconds_total', 'counter'],
  ['process_start_time_seconds', 'gauge'],
  ['process_resident_memory_bytes', 'gauge'],
  ['process_virtual_memory_bytes', 'gauge'],
  ['process_heap_bytes', 'gauge'],
  ['process_open_fds', 'gauge'],
  ['process_max_fds', 'gauge'],
  ['nodejs_eventloop_lag_seconds', 'gauge'],
  ['nodejs_eventloop_lag_min_seconds', 'gauge'],
  ['nodejs_eventloop_lag_max_seconds', 'gauge'],
  ['nodejs_eventloop_lag_mean_seconds', 'gauge'],
  ['nodejs_eventloop_lag_stddev_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p50_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p90_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
  ['nodejs_active_resources', 'gauge'],
  ['nodejs_active_resources_total', 'gauge'],
  ['nodejs_active_handles', 'gauge'],
  ['nodejs_active_handles_total', 'gauge'],
  ['nodejs_active_requests', 'gauge'],
  ['nodejs_active_requests_total', 'gauge'],
  ['nodejs_heap_size_total_bytes', 'gauge'],
  ['nodejs_heap_size_used_bytes', 'gauge'],
  ['nodejs_external_memory_bytes', 'gauge'],
  ['nodejs_heap_space_size_total_bytes', 'gauge'],
  ['nodejs_heap_space_size_used_bytes', 'gauge'],
  ['nodejs_heap_space_size_available_bytes', 'gauge'],
  ['nodejs_version_info', 'gauge'],
  ['nodejs_gc_duration_seconds', 'histogram'],
];

describe('process metrics', () => {
  it('exports every process and Node.js metric with the weavets_ prefix, and nothing unprefixed', async () => {
    const text = await createMetricsRegistry().metrics();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
    expect(types).toEqual(EXPECTED.map(([n, t]) => [`weavets_${n}`, t]));
    for (const line of text.split('\n')) if (line !== '') expect(line).toMatch(/^(# (HELP|TYPE) )?weavets_/);
    expect(await createMetricsRegistry({ processMetrics: false }).metrics()).toBe('');
  });

  it('reads real values from the process: memory, descriptors, CPU, heap, version', async () => {
    const registry = createMetricsRegistry({ labels: { peer: 'p1' } });
    const text = await registry.metrics();
    const rss = sample(text, 'weavets_process_resident_memory_bytes');
    expect(rss).toBeGreaterThan(10e6);
    expect(rss % 1024).toBe(0);
    expect(sample(text, 'weavets_process_virtual_memory_bytes')).toBeGreaterThan(rss);
    expect(sample(text, 'weavets_process_open_fds')).toBeGreaterThan(2);
    expect(sample(text, 'weavets_process_max_fds')).toBeGreaterThan(sample(text, 'weavets_process_open_fds'));
    // CPU since the process started, not since the registry was made.
    const cpu = sample(text, 'weavets_process_cpu_seconds_total');
    expect(cpu).toBeGreaterThan(0);
    expect(cpu).toBeCloseTo(
      sample(text, 'weavets_process_cpu_user_seconds_total') + sample(text, 'weavets_process_cpu_system_seconds_total'),
      6,
    );
    const start = sample(text, 'weavets_process_start_time_seconds');
    expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    expect(sample(text, 'weavets_nodejs_heap_size_used_bytes')).toBeGreaterThan(1e6);
    expect(sample(text, 'weavets_nodejs_heap_size_total_bytes')).toBeGreaterThanOrEqual(
      sample(text, 'weavets_nodejs_heap_size_used_bytes'),
    );
    expect(sample(text, 'weavets_nodejs_heap_space_size_used_bytes', 'space="old"')).toBeGreaterThan(0);
    expect(text).not.toMatch(/space="[a-z_]*_space"/);
    const [major, minor, patch] = process.version.slice(1).split('.');
    expect(text).toContain(
      `weavets_nodejs_version_info{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}",peer="p1"} 1`,
    );
    expect(sample(text, 'weavets_nodejs_active_handles_total')).toBeGreaterThan(0);
    // The registry's default labels reach the process metrics too.
    expect(text).toMatch(/^weavets_process_open_fds\{peer="p1"\} \d+$/m);

    // Counters only go up between scrapes.
    let spin = 0;
    for (let i = 0; i < 5e6; i++) spin += i;
    expect(spin).toBeGreaterThan(0);
    const later = await registry.metrics();
    expect(sample(later, 'weavets_process_cpu_seconds_total')).toBeGreaterThan(cpu);
  });

  it('times GC pauses by kind in the GC histogram', async () => {
    const registry = createMetricsRegistry();
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    await new Promise((r) => setTimeout(r, 50));
    const text = await registry.metrics();
    expect(sample(text, 'weavets_nodejs_gc_duration_seconds_count', 'kind="major"')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'weavets_nodejs_gc_duration_seconds_sum', 'kind="major"')).toBeGreaterThan(0);
    for (const le of ['0.001', '0.01', '0.1', '1', '2', '5', '\\+Inf'])
      expect(text).toMatch(
        new RegExp(`^weavets_nodejs_gc_duration_seconds_bucket\\{kind="major",le="${le}"\\} \\d+$`, 'm'),
      );
  });

  it('samples the event loop delay and measures the lag during the scrape', async () => {
    const registry = createMetricsRegistry();
    await registry.metrics(); // start a fresh window
    const until = Date.now() + 250;
    while (Date.now() < until); // the loop is blocked for 250 ms
    await new Promise((r) => setTimeout(r, 250));
    const text = await registry.metrics();
    expect(sample(text, 'weavets_nodejs_eventloop_lag_max_seconds')).toBeGreaterThan(0.1);
    expect(sample(text, 'weavets_nodejs_eventloop_lag_p99_seconds')).toBeGreaterThan(0.1);
    expect(sample(text, 'weavets_nodejs_eventloop_lag_min_seconds')).toBeLessThanOrEqual(
      sample(text, 'weavets_nodejs_eventloop_lag_max_seconds'),
    );
    const lag = sample(text, 'weavets_nodejs_eventloop_lag_seconds');
    expect(lag).toBeGreaterThan(0);
    expect(lag).toBeLessThan(0.1);
  });
});
