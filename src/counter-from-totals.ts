/**
 * Prometheus counters whose values a component already keeps as running totals (the
 * data path, the router, the mesh store count in plain fields: a prom-client call per
 * frame would cost more than the frame). At each scrape `collect` reads the totals and
 * increments each series by what it grew since the last scrape, so the metric is a real
 * counter (`# TYPE ... counter`, rate() works). A total that went down (its source was
 * rebuilt, e.g. a peer's connection) restarts its series from the new value, which is
 * what Prometheus treats as a counter reset; a series no longer reported goes away.
 */
import { Counter, type Registry } from 'prom-client';
import { compareText } from './text-order';

type Labels<L extends string> = Partial<Record<L, string | number>>;

export interface CounterFromTotalsOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: Registry[];
  /** Report every series' current running total through `emit`. */
  read(emit: (labels: Labels<L>, total: number) => void): void;
}

export function counterFromTotals<L extends string = string>(opts: CounterFromTotalsOptions<L>): Counter<L> {
  const last = new Map<string, { labels: Labels<L>; total: number }>();
  const keyOf = (labels: Labels<L>): string =>
    JSON.stringify(Object.entries(labels).sort(([a], [b]) => compareText(a, b)));
  return new Counter<L>({
    name: opts.name,
    help: opts.help,
    labelNames: opts.labelNames ?? [],
    registers: opts.registers,
    collect() {
      const now = new Map<string, { labels: Labels<L>; total: number }>();
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
