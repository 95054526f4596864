/**
 * A Prometheus registry: the metrics one daemon exports, written in the text format at
 * each scrape. One per daemon (no global), so tests can run several daemons in one
 * process without name clashes.
 */
import { PROMETHEUS_CONTENT_TYPE, checkLabelName } from './exposition';

/** What the registry needs of a metric (src/metrics/metric.ts implements it). */
export interface RegisteredMetric {
  readonly name: string;
  sampleNames(): string[];
  collect(): Promise<void>;
  write(lines: string[], defaultLabels: readonly (readonly [string, string])[]): void;
}

export interface RegistryOptions {
  /** Labels added to every series of every metric (a series' own label of the same name wins). */
  defaultLabels?: Record<string, string>;
}

export class Registry {
  readonly contentType = PROMETHEUS_CONTENT_TYPE;
  private readonly metricList: RegisteredMetric[] = [];
  private readonly names = new Set<string>();
  private readonly defaultLabels: (readonly [string, string])[];

  constructor(opts: RegistryOptions = {}) {
    this.defaultLabels = Object.entries(opts.defaultLabels ?? {});
    for (const [n] of this.defaultLabels) checkLabelName(n);
  }

  /** Called by each metric's constructor; refuses a name some registered metric already writes. */
  register(metric: RegisteredMetric): void {
    const names = metric.sampleNames();
    const taken = names.find((n) => this.names.has(n));
    if (taken !== undefined) throw new Error(`a metric writing ${taken} is already registered`);
    for (const n of names) this.names.add(n);
    this.metricList.push(metric);
  }

  /** Every metric's `collect`, in registration order, then the exposition text. */
  async metrics(): Promise<string> {
    for (const m of this.metricList) await m.collect();
    const lines: string[] = [];
    for (const m of this.metricList) {
      if (lines.length > 0) lines.push('');
      m.write(lines, this.defaultLabels);
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }
}
