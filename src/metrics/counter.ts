/** A counter: a value per series that only goes up (a restart of its source is a reset). */
import { Metric, type LabelValues, type MetricOptions } from './metric';
import { sampleLine } from './exposition';

interface Total {
  total: number;
}

export class Counter<L extends string = never> extends Metric<L, Total> {
  constructor(opts: MetricOptions<L, Counter<L>>) {
    super(opts, 'counter');
  }

  /** Add `by` (default 1) to the series; refuses a negative, infinite or NaN increment. */
  inc(by?: number): void;
  inc(labels: LabelValues<L>, by?: number): void;
  inc(labelsOrBy?: LabelValues<L> | number, by?: number): void {
    const labels = typeof labelsOrBy === 'object' ? labelsOrBy : {};
    const n = (typeof labelsOrBy === 'object' ? by : labelsOrBy) ?? 1;
    if (!Number.isFinite(n) || n < 0)
      throw new RangeError(`${this.name}: a counter only goes up; increment ${n} refused`);
    this.seriesFor(labels).value.total += n;
  }

  protected initial(): Total {
    return { total: 0 };
  }

  protected writeSeries(lines: string[], labels: string, value: Total): void {
    lines.push(sampleLine(this.name, labels, value.total));
  }
}
