import { describe, expect, it } from 'vitest';
import { Registry } from '../../src/metrics/registry';
import { counterFromTotals } from '../../src/counter-from-totals';

describe('counterFromTotals', () => {
  it('exports running totals as a counter that follows them, resets and drops series', async () => {
    const registry = new Registry();
    const totals = new Map<string, number>([
      ['bad_mac', 3],
      ['no_route', 0],
    ]);
    counterFromTotals({
      name: 'test_dropped_total',
      help: 'Dropped, by reason.',
      labelNames: ['reason'],
      registry,
      read(emit) {
        for (const [reason, n] of totals) emit({ reason }, n);
      },
    });
    const scrape = async (): Promise<string> => registry.metrics();
    let text = await scrape();
    expect(text).toContain('# TYPE test_dropped_total counter');
    expect(text).toMatch(/^test_dropped_total\{reason="bad_mac"\} 3$/m);
    expect(text).toMatch(/^test_dropped_total\{reason="no_route"\} 0$/m);
    // Scraping again without change changes nothing.
    expect(await scrape()).toBe(text);

    totals.set('bad_mac', 10);
    text = await scrape();
    expect(text).toMatch(/^test_dropped_total\{reason="bad_mac"\} 10$/m);

    // The source was rebuilt: the series restarts from its new total (a counter reset).
    totals.set('bad_mac', 2);
    totals.delete('no_route');
    text = await scrape();
    expect(text).toMatch(/^test_dropped_total\{reason="bad_mac"\} 2$/m);
    expect(text).not.toContain('no_route');
  });

  it('works without labels', async () => {
    const registry = new Registry();
    let n = 0;
    counterFromTotals({
      name: 'test_reclaimed_total',
      help: 'Reclaimed.',
      registry,
      read(emit) {
        emit({}, n);
      },
    });
    expect(await registry.metrics()).toMatch(/^test_reclaimed_total 0$/m);
    n = 4;
    expect(await registry.metrics()).toMatch(/^test_reclaimed_total 4$/m);
  });
});
