/** A gauge: a value per series that is set, or goes up and down. */
import { Metric, type LabelValues, type MetricOptions } from './metric';
import { sampleLine } from './exposition';

interface Level {
  level: number;
}

export class Gauge<L extends string = never> extends Metric<L, Level> {
  constructor(opts: MetricOptions<L, Gauge<L>>) {
    super(opts, 'gauge');
  }

  set(value: number): void;
  set(labels: LabelValues<L>, value: number): void;
  set(labelsOrValue: LabelValues<L> | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.seriesFor({}).value.level = labelsOrValue;
    else this.seriesFor(labelsOrValue).value.level = value ?? 0;
  }

  /** Add `by` (default 1). */
  inc(by?: number): void;
  inc(labels: LabelValues<L>, by?: number): void;
  inc(labelsOrBy?: LabelValues<L> | number, by?: number): void {
    if (typeof labelsOrBy === 'object') this.seriesFor(labelsOrBy).value.level += by ?? 1;
    else this.seriesFor({}).value.level += labelsOrBy ?? 1;
  }

  /** Subtract `by` (default 1). */
  dec(by?: number): void;
  dec(labels: LabelValues<L>, by?: number): void;
  dec(labelsOrBy?: LabelValues<L> | number, by?: number): void {
    if (typeof labelsOrBy === 'object') this.seriesFor(labelsOrBy).value.level -= by ?? 1;
    else this.seriesFor({}).value.level -= labelsOrBy ?? 1;
  }

  protected initial(): Level {
    return { level: 0 };
  }

  protected writeSeries(lines: string[], labels: string, value: Level): void {
    lines.push(sampleLine(this.name, labels, value.level));
  }
}
