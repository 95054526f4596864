/**
 * A histogram: observations counted into buckets by upper bound (`le`, inclusive), with
 * their sum and count. Kept per bucket and written cumulative, `+Inf` last, as the text
 * format wants.
 */
import { Metric, type LabelValues, type MetricOptions } from './metric';
import { formatValue, sampleLine } from './exposition';

interface Observations {
  /** Observations per bucket, not cumulative; index i is (bounds[i-1], bounds[i]]. */
  inBucket: number[];
  sum: number;
  count: number;
}

export interface HistogramOptions<L extends string> extends MetricOptions<L, Histogram<L>> {
  /** Upper bounds, finite and increasing; `+Inf` is implied. */
  buckets: readonly number[];
}

export class Histogram<L extends string = never> extends Metric<L, Observations> {
  private readonly bounds: readonly number[];
  private readonly les: readonly string[];

  constructor(opts: HistogramOptions<L>) {
    opts.buckets.forEach((b, i) => {
      if (!Number.isFinite(b) || (i > 0 && b <= opts.buckets[i - 1]!))
        throw new Error(`${opts.name}: buckets must be finite and increasing, got ${opts.buckets.join(', ')}`);
    });
    super(opts, 'histogram', ['le']);
    this.bounds = [...opts.buckets];
    this.les = [...this.bounds.map(formatValue), '+Inf'];
  }

  override sampleNames(): string[] {
    return [this.name, `${this.name}_bucket`, `${this.name}_sum`, `${this.name}_count`];
  }

  observe(value: number): void;
  observe(labels: LabelValues<L>, value: number): void;
  observe(labelsOrValue: LabelValues<L> | number, value?: number): void {
    const labels = typeof labelsOrValue === 'object' ? labelsOrValue : {};
    const v = typeof labelsOrValue === 'object' ? value : labelsOrValue;
    if (v === undefined || Number.isNaN(v)) throw new RangeError(`${this.name}: observation ${v} refused`);
    const o = this.seriesFor(labels).value;
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]!) i++;
    o.inBucket[i]!++;
    o.sum += v;
    o.count++;
  }

  protected initial(): Observations {
    return { inBucket: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected writeSeries(lines: string[], labels: string, o: Observations): void {
    const sep = labels === '' ? '' : ',';
    let cumulative = 0;
    this.les.forEach((le, i) => {
      cumulative += o.inBucket[i]!;
      lines.push(sampleLine(`${this.name}_bucket`, `${labels}${sep}le="${le}"`, cumulative));
    });
    lines.push(sampleLine(`${this.name}_sum`, labels, o.sum), sampleLine(`${this.name}_count`, labels, o.count));
  }
}
