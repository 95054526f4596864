/**
 * Prometheus counters whose values a component already keeps as running totals (the
 * data path, the router, the mesh store count in plain fields: a metric update per
 * frame would cost more than the frame). At each scrape `collect` reads the totals and
 * increments each series by what it grew since the last scrape, so the metric is a real
 * counter (`# TYPE ... counter`, rate() works). A total that went down (its source was
 * rebuilt, e.g. a peer's connection) restarts its series from the new value, which is
 * what Prometheus treats as a counter reset; a series no longer reported goes away.
 */
import type { Registry } from './metrics/registry';
import { Counter } from './metrics/counter';
import type { LabelValues } from './metrics/metric';
import { compareText } from './text-order';

export interface CounterFromTotalsOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registry: Registry;
  /** Report every series' current running total through `emit`. */
  read(emit: (labels: LabelValues<L>, total: number) => void): void;
}

export function counterFromTotals<L extends string = string>(opts: CounterFromTotalsOptions<L>): Counter<L> {
  const last = new Map<string, { labels: LabelValues<L>; total: number }>();
  const keyOf = (labels: LabelValues<L>): string =>
    JSON.stringify(Object.entries(labels).sort(([a], [b]) => compareText(a, b)));
  return new Counter<L>({
    name: opts.name,
    help: opts.help,
    labelNames: opts.labelNames ?? [],
    registry: opts.registry,
    collect() {
      const now = new Map<string, { labels: LabelValues<L>; total: number }>();
      opts.read((labels, total) => now.set(keyOf(labels), { labels, total }));
      for (const [key, was] of last) if (!now.has(key)) this.remove(was.labels);
      for (const [key, { labels, total }] of now) {
        const was = last.get(key)?.total;
        if (was === undefined || total < was) {
          if (was !== undefined) this.remove(labels);
          this.inc(labels, total);
        } else if (total > was) {
          this.inc(labels, total - was);
        }
      }
      last.clear();
      for (const [key, v] of now) last.set(key, v);
    },
  });
}
