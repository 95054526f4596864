import { describe, expect, it } from 'vitest';
import { Registry } from '../../src/metrics/registry';
import { Counter } from '../../src/metrics/counter';
import { Gauge } from '../../src/metrics/gauge';
import { Histogram } from '../../src/metrics/histogram';
import { PROMETHEUS_CONTENT_TYPE, formatValue } from '../../src/metrics/exposition';

describe('text exposition', () => {
  it('writes HELP, TYPE and every series of each metric, in registration order', async () => {
    const registry = new Registry();
    const c = new Counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['code', 'method'], registry });
    new Gauge({ name: 'x_up', help: 'Up.', registry }).set(1);
    c.inc({ method: 'get', code: 200 });
    c.inc({ code: '500', method: 'post' }, 2);
    c.inc({ method: 'get', code: 200 }, 0.5);
    expect(await registry.metrics()).toBe(
      [
        '# HELP x_requests_total Requests.',
        '# TYPE x_requests_total counter',
        // Labels in declared order, whatever order the caller wrote them in.
        'x_requests_total{code="200",method="get"} 1.5',
        'x_requests_total{code="500",method="post"} 2',
        '',
        '# HELP x_up Up.',
        '# TYPE x_up gauge',
        'x_up 1',
        '',
      ].join('\n'),
    );
    expect(registry.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(PROMETHEUS_CONTENT_TYPE).toBe(registry.contentType);
  });

  it('escapes label values (backslash, quote, newline) and HELP (backslash, newline)', async () => {
    const registry = new Registry();
    const g = new Gauge({
      name: 'x_info',
      help: 'A help with a \\ backslash,\na newline and "quotes".',
      labelNames: ['v'],
      registry,
    });
    g.set({ v: 'a\\b "c"\nd' }, 1);
    expect(await registry.metrics()).toBe(
      [
        '# HELP x_info A help with a \\\\ backslash,\\na newline and "quotes".',
        '# TYPE x_info gauge',
        'x_info{v="a\\\\b \\"c\\"\\nd"} 1',
        '',
      ].join('\n'),
    );
  });

  it('spells +Inf, -Inf and NaN as Prometheus reads them', async () => {
    expect([Infinity, -Infinity, NaN, 0, -0, 1e-7, 1.5e21, -2.25].map(formatValue)).toEqual([
      '+Inf',
      '-Inf',
      'NaN',
      '0',
      '0',
      '1e-7',
      '1.5e+21',
      '-2.25',
    ]);
    const registry = new Registry();
    const g = new Gauge({ name: 'x_g', help: 'G.', labelNames: ['k'], registry });
    g.set({ k: 'pos' }, Infinity);
    g.set({ k: 'neg' }, -Infinity);
    g.set({ k: 'nan' }, NaN);
    const text = await registry.metrics();
    expect(text).toMatch(/^x_g\{k="pos"\} \+Inf$/m);
    expect(text).toMatch(/^x_g\{k="neg"\} -Inf$/m);
    expect(text).toMatch(/^x_g\{k="nan"\} NaN$/m);
  });

  it('adds the default labels to every series, a series own label of that name winning', async () => {
    const registry = new Registry({ defaultLabels: { peer: '7e:21:00:00:00:01', zone: 'a' } });
    new Gauge({ name: 'x_plain', help: 'P.', registry }).set(3);
    new Gauge({ name: 'x_zoned', help: 'Z.', labelNames: ['zone'], registry }).set({ zone: 'b' }, 4);
    new Histogram({ name: 'x_h', help: 'H.', buckets: [1], registry }).observe(0.5);
    expect(await registry.metrics()).toBe(
      [
        '# HELP x_plain P.',
        '# TYPE x_plain gauge',
        'x_plain{peer="7e:21:00:00:00:01",zone="a"} 3',
        '',
        '# HELP x_zoned Z.',
        '# TYPE x_zoned gauge',
        'x_zoned{zone="b",peer="7e:21:00:00:00:01"} 4',
        '',
        '# HELP x_h H.',
        '# TYPE x_h histogram',
        'x_h_bucket{peer="7e:21:00:00:00:01",zone="a",le="1"} 1',
        'x_h_bucket{peer="7e:21:00:00:00:01",zone="a",le="+Inf"} 1',
        'x_h_sum{peer="7e:21:00:00:00:01",zone="a"} 0.5',
        'x_h_count{peer="7e:21:00:00:00:01",zone="a"} 1',
        '',
      ].join('\n'),
    );
  });

  it('writes histogram buckets cumulative (le inclusive), then +Inf, _sum and _count per series', async () => {
    const registry = new Registry();
    const h = new Histogram({
      name: 'x_seconds',
      help: 'Durations.',
      labelNames: ['op'],
      buckets: [0.005, 0.1, 1],
      registry,
    });
    for (const v of [0.001, 0.005, 0.05, 0.5, 3]) h.observe({ op: 'a' }, v);
    h.observe({ op: 'b' }, 0.25);
    expect(await registry.metrics()).toBe(
      [
        '# HELP x_seconds Durations.',
        '# TYPE x_seconds histogram',
        'x_seconds_bucket{op="a",le="0.005"} 2',
        'x_seconds_bucket{op="a",le="0.1"} 3',
        'x_seconds_bucket{op="a",le="1"} 4',
        'x_seconds_bucket{op="a",le="+Inf"} 5',
        'x_seconds_sum{op="a"} 3.556',
        'x_seconds_count{op="a"} 5',
        'x_seconds_bucket{op="b",le="0.005"} 0',
        'x_seconds_bucket{op="b",le="0.1"} 0',
        'x_seconds_bucket{op="b",le="1"} 1',
        'x_seconds_bucket{op="b",le="+Inf"} 1',
        'x_seconds_sum{op="b"} 0.25',
        'x_seconds_count{op="b"} 1',
        '',
      ].join('\n'),
    );
  });

  it('starts an unlabelled metric at zero and a labelled one with no series', async () => {
    const registry = new Registry();
    new Counter({ name: 'x_total', help: 'T.', registry });
    new Histogram({ name: 'x_h', help: 'H.', buckets: [1, 2], registry });
    new Gauge({ name: 'x_by', help: 'B.', labelNames: ['k'], registry });
    expect(await registry.metrics()).toBe(
      [
        '# HELP x_total T.',
        '# TYPE x_total counter',
        'x_total 0',
        '',
        '# HELP x_h H.',
        '# TYPE x_h histogram',
        'x_h_bucket{le="1"} 0',
        'x_h_bucket{le="2"} 0',
        'x_h_bucket{le="+Inf"} 0',
        'x_h_sum 0',
        'x_h_count 0',
        '',
        '# HELP x_by B.',
        '# TYPE x_by gauge',
        '',
      ].join('\n'),
    );
  });

  it('runs collect at each scrape, before writing; reset and remove drop series', async () => {
    const registry = new Registry();
    let networks = ['a', 'b'];
    let scrapes = 0;
    new Gauge({
      name: 'x_blocks',
      help: 'Blocks.',
      labelNames: ['network'],
      registry,
      collect() {
        scrapes++;
        this.reset();
        for (const n of networks) this.set({ network: n }, n.length + scrapes);
      },
    });
    const c = new Counter({ name: 'x_c_total', help: 'C.', labelNames: ['k'], registry });
    c.inc({ k: 'gone' });
    c.inc({ k: 'kept' });
    c.remove({ k: 'gone' });
    let text = await registry.metrics();
    expect(text).toMatch(/^x_blocks\{network="a"\} 2$/m);
    expect(text).toMatch(/^x_blocks\{network="b"\} 2$/m);
    expect(text).toMatch(/^x_c_total\{k="kept"\} 1$/m);
    expect(text).not.toContain('gone');
    networks = ['b'];
    text = await registry.metrics();
    expect(text).not.toContain('network="a"');
    expect(text).toMatch(/^x_blocks\{network="b"\} 3$/m);
  });

  it('awaits an async collect', async () => {
    const registry = new Registry();
    new Gauge({
      name: 'x_async',
      help: 'A.',
      registry,
      async collect() {
        await new Promise((r) => setTimeout(r, 5));
        this.set(7);
      },
    });
    expect(await registry.metrics()).toMatch(/^x_async 7$/m);
  });

  it('moves a gauge up and down', async () => {
    const registry = new Registry();
    const g = new Gauge({ name: 'x_level', help: 'L.', labelNames: ['k'], registry });
    g.inc({ k: 'a' });
    g.inc({ k: 'a' }, 5);
    g.dec({ k: 'a' }, 2);
    g.dec({ k: 'a' });
    const u = new Gauge({ name: 'x_plain', help: 'P.', registry });
    u.inc(2);
    u.dec();
    const text = await registry.metrics();
    expect(text).toMatch(/^x_level\{k="a"\} 3$/m);
    expect(text).toMatch(/^x_plain 1$/m);
  });
});
