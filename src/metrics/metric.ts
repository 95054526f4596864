/**
 * What the three metric types share: a name, a HELP text, declared label names, one
 * value per label set (a series), an optional `collect` run at each scrape before the
 * series are written, and how a series becomes lines of the text format.
 */
import type { Registry } from './registry';
import { checkLabelName, checkMetricName, escapeHelp, formatLabelPairs } from './exposition';

/** A series' labels: any of the declared names; a name left out is written as absent. */
export type LabelValues<L extends string> = Partial<Record<L, string | number>>;

export interface MetricOptions<L extends string, Self> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registry: Registry;
  /** Run at each scrape before the series are written (values computed from other state). */
  collect?: (this: Self) => void | Promise<void>;
}

interface Series<V> {
  /** The series' own labels by name, for the registry's default labels to defer to. */
  labels: Record<string, string>;
  /** The same labels as text, `a="x",b="y"` in declared order; the series' key. */
  text: string;
  value: V;
}

export abstract class Metric<L extends string, V> {
  readonly name: string;
  readonly help: string;
  protected readonly labelNames: readonly L[];
  private readonly series = new Map<string, Series<V>>();
  private readonly collector: (() => void | Promise<void>) | undefined;

  protected constructor(
    opts: MetricOptions<L, never>,
    readonly type: 'counter' | 'gauge' | 'histogram',
    reservedLabels: readonly string[] = [],
  ) {
    checkMetricName(opts.name);
    for (const l of opts.labelNames ?? []) {
      checkLabelName(l);
      if (reservedLabels.includes(l)) throw new Error(`${opts.name}: label name ${l} is reserved for ${type}s`);
    }
    if (new Set(opts.labelNames).size !== (opts.labelNames ?? []).length)
      throw new Error(`${opts.name}: a label name is declared twice`);
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames ?? [];
    this.collector = opts.collect;
    opts.registry.register(this);
  }

  /** The sample names this metric writes, which no other metric of its registry may write. */
  sampleNames(): string[] {
    return [this.name];
  }

  /** Forget every series (an unlabelled metric's one series comes back at its zero). */
  reset(): void {
    this.series.clear();
  }

  /** Forget one series. */
  remove(labels: LabelValues<L>): void {
    this.series.delete(this.labelText(labels));
  }

  /** Called by the registry at each scrape. */
  async collect(): Promise<void> {
    await this.collector?.call(this);
  }

  /** HELP, TYPE and every series; `defaultLabels` are added to each series that lacks them. */
  write(lines: string[], defaultLabels: readonly (readonly [string, string])[]): void {
    lines.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`);
    if (this.labelNames.length === 0 && this.series.size === 0) this.seriesFor({});
    for (const s of this.series.values()) {
      const extra = defaultLabels.filter(([n]) => !Object.hasOwn(s.labels, n));
      const text = extra.length === 0 ? s.text : [s.text, formatLabelPairs(extra)].filter((t) => t !== '').join(',');
      this.writeSeries(lines, text, s.value);
    }
  }

  /** A new series' value. */
  protected abstract initial(): V;

  /** One series' sample lines, `labels` already formatted (default labels included). */
  protected abstract writeSeries(lines: string[], labels: string, value: V): void;

  /** The series for these labels, created at its zero if new. */
  protected seriesFor(labels: LabelValues<L>): Series<V> {
    const text = this.labelText(labels);
    let s = this.series.get(text);
    if (!s) {
      const own: Record<string, string> = {};
      for (const n of this.labelNames) if (labels[n] !== undefined) own[n] = String(labels[n]);
      s = { labels: own, text, value: this.initial() };
      this.series.set(text, s);
    }
    return s;
  }

  private labelText(labels: LabelValues<L>): string {
    for (const n of Object.keys(labels))
      if (!(this.labelNames as readonly string[]).includes(n)) throw new Error(`${this.name}: no label named ${n}`);
    const pairs: [string, string][] = [];
    for (const n of this.labelNames) {
      const v = labels[n];
      if (v !== undefined) pairs.push([n, String(v)]);
    }
    return formatLabelPairs(pairs);
  }
}
