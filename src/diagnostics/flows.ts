/**
 * Flows: bytes and packets per container pair per network over the last minute.
 *
 * - The sleeve counts frames it takes from a bridge into a FlowCounter: a fixed
 *   open-addressing table in typed arrays, so counting a frame allocates nothing.
 * - Frames the kernel carries (fastdp) never reach the sleeve; they are counted by the
 *   kernel (KernelFlowCounters, src/diagnostics/kernel-flows.ts) and merged here.
 * - FlowWindow keeps a snapshot of the cumulative counters every 5 s and answers the
 *   difference between now and a minute ago; pairs are named from the containers every
 *   host reports in its health row.
 */
import { fromHalves, highHalf, lowHalf } from '../net/halves';
import type { FrameCounter } from '../router/overlay';

/** One container pair on one network (`weavets flows --json`). */
export interface FlowRow {
  network: string;
  src: FlowEnd;
  dst: FlowEnd;
  bytes: number;
  packets: number;
  /** Which path counted it on this host. */
  datapath: 'sleeve' | 'fastdp';
}

export interface FlowEnd {
  /** Container name; "" when unnamed or the MAC is no container we know (no ids: served over TCP). */
  name: string;
  address: string;
  mac: string;
  host: string;
}

/** GET /flows: the top pairs by bytes over the window, as this host counted them. */
export interface FlowsStatus {
  /** false when the daemon was launched with --no-flows. */
  enabled: boolean;
  windowSeconds: number;
  host: string;
  flows: FlowRow[];
}

const EMPTY = 0;
const MAX_PROBE = 32;

/**
 * Cumulative counters per (network id, source MAC, destination MAC). Entries are only
 * added on the frame path; `compact` (off the frame path) drops idle ones.
 */
export class FlowCounter implements FrameCounter {
  private cap: number;
  private nets: Uint32Array;
  private srcs: Float64Array;
  private dsts: Float64Array;
  private bytes: Float64Array;
  private packets: Float64Array;
  private used = 0;
  /** Frames not counted because the table was full. */
  overflow = 0;

  constructor(capacity = 4096) {
    this.cap = 1 << Math.ceil(Math.log2(Math.max(16, capacity)));
    this.nets = new Uint32Array(this.cap);
    this.srcs = new Float64Array(this.cap);
    this.dsts = new Float64Array(this.cap);
    this.bytes = new Float64Array(this.cap);
    this.packets = new Float64Array(this.cap);
  }

  get size(): number {
    return this.used;
  }

  /**
   * Count one frame (or `packets` frames of `bytes` in all: what the express path counted
   * in C), its MACs given as 24-bit halves (src/net/halves.ts). All in this one function
   * on purpose: a 48-bit MAC handed to another function is a heap number per frame. `net`
   * must be non-zero (network ids are 1..0xfffffe).
   */
  record(
    net: number,
    srcHigh: number,
    srcLow: number,
    dstHigh: number,
    dstLow: number,
    bytes: number,
    packets = 1,
  ): void {
    const mask = this.cap - 1;
    const srcMac = fromHalves(srcHigh, srcLow);
    const dstMac = fromHalves(dstHigh, dstLow);
    // Mix the low bits of both MACs and the network: MACs of one host share their top bytes.
    const h =
      (Math.imul(net, 0x9e3779b1) ^
        Math.imul((((srcHigh & 0xff) << 24) | srcLow) >>> 0, 0x85ebca6b) ^
        Math.imul((((dstHigh & 0xff) << 24) | dstLow) >>> 0, 0xc2b2ae35)) >>>
      0;
    for (let i = 0; i < MAX_PROBE; i++) {
      const slot = (h + i) & mask;
      const n = this.nets[slot]!;
      if (n === EMPTY) {
        if (this.used * 4 >= this.cap * 3) break;
        this.nets[slot] = net;
        this.srcs[slot] = srcMac;
        this.dsts[slot] = dstMac;
        this.bytes[slot] = bytes;
        this.packets[slot] = packets;
        this.used++;
        return;
      }
      if (n === net && this.srcs[slot] === srcMac && this.dsts[slot] === dstMac) {
        this.bytes[slot] = this.bytes[slot]! + bytes;
        this.packets[slot] = this.packets[slot]! + packets;
        return;
      }
    }
    this.overflow += packets;
  }

  /** Every entry: (net, src, dst, cumulative bytes, packets). */
  forEach(fn: (net: number, src: number, dst: number, bytes: number, packets: number) => void): void {
    for (let i = 0; i < this.cap; i++) {
      const n = this.nets[i]!;
      if (n !== EMPTY) fn(n, this.srcs[i]!, this.dsts[i]!, this.bytes[i]!, this.packets[i]!);
    }
  }

  /** Rebuild keeping only the entries `keep` accepts (off the frame path). */
  compact(keep: (net: number, src: number, dst: number) => boolean): void {
    const old = { nets: this.nets, srcs: this.srcs, dsts: this.dsts, bytes: this.bytes, packets: this.packets };
    const cap = this.cap;
    this.nets = new Uint32Array(cap);
    this.srcs = new Float64Array(cap);
    this.dsts = new Float64Array(cap);
    this.bytes = new Float64Array(cap);
    this.packets = new Float64Array(cap);
    this.used = 0;
    for (let i = 0; i < cap; i++) {
      const n = old.nets[i]!;
      if (n === EMPTY || !keep(n, old.srcs[i]!, old.dsts[i]!)) continue;
      const src = old.srcs[i]!;
      const dst = old.dsts[i]!;
      this.record(n, highHalf(src), lowHalf(src), highHalf(dst), lowHalf(dst), 0);
      // record counted one packet of 0 bytes: put the real totals in.
      this.set(n, old.srcs[i]!, old.dsts[i]!, old.bytes[i]!, old.packets[i]!);
    }
  }

  private set(net: number, src: number, dst: number, bytes: number, packets: number): void {
    const mask = this.cap - 1;
    const h =
      (Math.imul(net, 0x9e3779b1) ^
        Math.imul((src % 0x100000000) >>> 0, 0x85ebca6b) ^
        Math.imul((dst % 0x100000000) >>> 0, 0xc2b2ae35)) >>>
      0;
    for (let i = 0; i < MAX_PROBE; i++) {
      const slot = (h + i) & mask;
      if (this.nets[slot] === net && this.srcs[slot] === src && this.dsts[slot] === dst) {
        this.bytes[slot] = bytes;
        this.packets[slot] = packets;
        return;
      }
    }
  }
}

/** Cumulative counters read from one source at one moment, keyed "net/src/dst". */
export type FlowTotals = Map<
  string,
  { net: number; src: number; dst: number; bytes: number; packets: number; datapath: 'sleeve' | 'fastdp' }
>;

export function flowKey(net: number, src: number, dst: number): string {
  return `${net}/${src}/${dst}`;
}

export const FLOW_WINDOW_MS = 60_000;
export const FLOW_SNAPSHOT_MS = 5000;

/** Snapshots of cumulative totals; the window is the difference to the oldest within a minute. */
export class FlowWindow {
  private readonly snapshots: { at: number; totals: FlowTotals }[] = [];

  add(at: number, totals: FlowTotals): void {
    this.snapshots.push({ at, totals });
    while (this.snapshots.length > 1 && at - this.snapshots[0]!.at > FLOW_WINDOW_MS) this.snapshots.shift();
  }

  /** Per pair, what was counted between the oldest snapshot in the window and `now`. */
  delta(
    now: FlowTotals,
  ): { net: number; src: number; dst: number; bytes: number; packets: number; datapath: 'sleeve' | 'fastdp' }[] {
    const base = this.snapshots[0]?.totals;
    const out = [];
    for (const [k, v] of now) {
      const b = base?.get(k);
      // A counter that went down was reset (table compacted, kernel set re-created): count from zero.
      const bytes = b === undefined || b.bytes > v.bytes ? v.bytes : v.bytes - b.bytes;
      const packets = b === undefined || b.packets > v.packets ? v.packets : v.packets - b.packets;
      if (packets > 0) out.push({ ...v, bytes, packets });
    }
    return out;
  }

  /** Pairs that did not move during the whole window (safe to forget). */
  idle(now: FlowTotals): Set<string> {
    const base = this.snapshots[0];
    const out = new Set<string>();
    if (base === undefined) return out;
    for (const [k, v] of now) {
      const b = base.totals.get(k);
      if (b !== undefined && b.packets === v.packets) out.add(k);
    }
    return out;
  }
}

/** Where fastdp's per-pair counters come from (the kernel); read off the frame path. */
export interface KernelFlowSource {
  read(): Promise<FlowTotals>;
  close(): Promise<void>;
}

const TOP_FLOWS = 50;

/** Owns the sleeve's FlowCounter, the kernel source and the window; answers `flows`. */
export class FlowService {
  readonly counter = new FlowCounter(8192);
  private readonly window = new FlowWindow();
  private readonly timer: NodeJS.Timeout;
  private last: FlowTotals = new Map();
  private kernel: KernelFlowSource | undefined;
  private reading: Promise<void> | undefined;

  constructor(private readonly onError: (err: Error) => void) {
    this.timer = setInterval(() => void this.snapshot(), FLOW_SNAPSHOT_MS);
    this.timer.unref();
  }

  setKernelSource(source: KernelFlowSource | undefined): void {
    this.kernel = source;
  }

  /** Read both sources now and add a snapshot to the window. */
  snapshot(): Promise<void> {
    this.reading ??= (async () => {
      try {
        const totals = await this.totals();
        this.window.add(Date.now(), totals);
        const idle = this.window.idle(totals);
        if (idle.size > 0 && this.counter.size > 1024) this.counter.compact((n, s, d) => !idle.has(flowKey(n, s, d)));
      } catch (err) {
        this.onError(err as Error);
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  private async totals(): Promise<FlowTotals> {
    const totals: FlowTotals = new Map();
    this.counter.forEach((net, src, dst, bytes, packets) =>
      totals.set(flowKey(net, src, dst), { net, src, dst, bytes, packets, datapath: 'sleeve' }),
    );
    if (this.kernel !== undefined) {
      for (const [k, v] of await this.kernel.read()) {
        const have = totals.get(`k${k}`);
        if (have === undefined) totals.set(`k${k}`, v);
      }
    }
    this.last = totals;
    return totals;
  }

  /** The top pairs of the last minute, named by `name`. */
  async status(
    host: string,
    name: (net: number, mac: number) => { network: string; end: FlowEnd },
  ): Promise<FlowsStatus> {
    const now = await this.totals().catch((err: Error) => {
      this.onError(err);
      return this.last;
    });
    const rows: FlowRow[] = this.window
      .delta(now)
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, TOP_FLOWS)
      .map((f) => {
        const s = name(f.net, f.src);
        const d = name(f.net, f.dst);
        return { network: s.network, src: s.end, dst: d.end, bytes: f.bytes, packets: f.packets, datapath: f.datapath };
      });
    return { enabled: true, windowSeconds: FLOW_WINDOW_MS / 1000, host, flows: rows };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.kernel?.close().catch(() => undefined);
  }
}
