import { describe, expect, it } from 'vitest';
import { Registry } from '../../src/metrics/registry';
import { Counter } from '../../src/metrics/counter';
import { Gauge } from '../../src/metrics/gauge';
import { Histogram } from '../../src/metrics/histogram';

describe('metrics refuse what Prometheus would not read or a counter cannot do', () => {
  it('a counter refuses a negative, NaN or infinite increment and keeps its value', async () => {
    const registry = new Registry();
    const c = new Counter({ name: 'x_total', help: 'T.', labelNames: ['k'], registry });
    c.inc({ k: 'a' }, 2);
    expect(() => c.inc({ k: 'a' }, -1)).toThrow(/x_total: a counter only goes up; increment -1 refused/);
    expect(() => c.inc({ k: 'a' }, NaN)).toThrow(RangeError);
    expect(() => c.inc({ k: 'a' }, Infinity)).toThrow(RangeError);
    const u = new Counter({ name: 'y_total', help: 'U.', registry });
    expect(() => u.inc(-0.5)).toThrow(/increment -0.5 refused/);
    const text = await registry.metrics();
    expect(text).toMatch(/^x_total\{k="a"\} 2$/m);
    expect(text).toMatch(/^y_total 0$/m);
  });

  it('a registry refuses a second metric of the same name, or one writing a histogram sample name', async () => {
    const registry = new Registry();
    new Counter({ name: 'x_total', help: 'T.', registry });
    expect(() => new Gauge({ name: 'x_total', help: 'again', registry })).toThrow(
      /a metric writing x_total is already registered/,
    );
    new Histogram({ name: 'x_seconds', help: 'H.', buckets: [1], registry });
    expect(() => new Gauge({ name: 'x_seconds_count', help: 'clash', registry })).toThrow(/x_seconds_count/);
    // The refused ones are not written.
    const text = await registry.metrics();
    expect(text).not.toContain('again');
    expect(text).not.toContain('clash');
    // Another registry is another namespace.
    expect(() => new Counter({ name: 'x_total', help: 'T.', registry: new Registry() })).not.toThrow();
  });

  it('refuses invalid metric and label names, undeclared labels, le on a histogram, bad buckets', () => {
    const registry = new Registry();
    expect(() => new Gauge({ name: 'x-y', help: '', registry })).toThrow(/invalid metric name/);
    expect(() => new Gauge({ name: '1x', help: '', registry })).toThrow(/invalid metric name/);
    expect(() => new Gauge({ name: 'x', help: '', labelNames: ['a-b'], registry })).toThrow(/invalid label name/);
    expect(() => new Gauge({ name: 'x', help: '', labelNames: ['__a'], registry })).toThrow(/invalid label name/);
    expect(() => new Gauge({ name: 'x', help: '', labelNames: ['a', 'a'], registry })).toThrow(/declared twice/);
    expect(() => new Histogram({ name: 'h', help: '', labelNames: ['le'], buckets: [1], registry })).toThrow(
      /reserved/,
    );
    expect(() => new Histogram({ name: 'h', help: '', buckets: [1, 1], registry })).toThrow(/increasing/);
    expect(() => new Histogram({ name: 'h', help: '', buckets: [1, Infinity], registry })).toThrow(/finite/);
    expect(() => new Registry({ defaultLabels: { 'bad-name': 'x' } })).toThrow(/invalid label name/);
    const g = new Gauge({ name: 'x', help: '', labelNames: ['a'], registry });
    expect(() => g.set({ b: 'no' } as never, 1)).toThrow(/x: no label named b/);
    const h = new Histogram({ name: 'h', help: '', buckets: [1], registry });
    expect(() => h.observe(NaN)).toThrow(RangeError);
  });
});
