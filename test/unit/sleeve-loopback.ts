/**
 * Two sleeves joined back to back by rings that allocate nothing, for counting what the
 * sleeve itself allocates per frame (test/unit/sleeve-allocation.test.ts).
 *
 * Unlike sleeve-rings.ts (asynchronous, copies and logs every datagram for assertions),
 * here everything is synchronous and preallocated: a TAP ring is loaded once with a batch
 * of frames and `fire()` hands that same batch to the sleeve again and again, as a bridge
 * would; a UDP send copies the datagram straight into the receiving ring's next slot (or
 * drops it when the ring is full, as a full socket buffer does), and `pump()` hands the
 * receiving sleeve what arrived. Routes come from the router's real Topology and frames
 * are counted into the daemon's real FlowCounter, so their costs are counted too.
 */
import { randomBytes } from 'node:crypto';
import { Session } from 'node:inspector/promises';
import { loadSealer } from '../../src/crypto/seal';
import { FlowCounter } from '../../src/diagnostics/flows';
import { silentLogger } from '../../src/log';
import { ManualClock } from '../../src/net/clock';
import { copyBytes } from '../../src/native';
import type { PeerName } from '../../src/net/peername';
import { SleeveDatapath } from '../../src/datapath/sleeve/sleeve';
import type { SleeveLinks, TapRing, UdpRing } from '../../src/datapath/sleeve/ports';
import { Topology } from '../../src/router/topology';
import type { OverlayNetwork } from '../../src/router/overlay';

const UDP_SLOTS = 64;
const UDP_SLOT_SIZE = 65536;
const TAP_SLOTS = 64;
const TAP_SLOT_SIZE = 65664;
const PORT = 6783;

export const LOOP_NETWORK: OverlayNetwork = { id: 0x42, name: 'blue', bridge: 'br-blue', mtu: 1376 };

/** A UDP ring whose sends land synchronously in its peer ring's slots. */
export class LoopUdpRing implements UdpRing {
  readonly port = PORT;
  readonly slotSize = UDP_SLOT_SIZE;
  readonly rxBuf = Buffer.alloc(UDP_SLOTS * UDP_SLOT_SIZE);
  readonly rxLengths = new Uint32Array(UDP_SLOTS);
  readonly rxAddrs = new Uint32Array(UDP_SLOTS);
  readonly rxSegSizes = new Uint16Array(UDP_SLOTS);
  /** No express path here: always 0. */
  readonly rxFlags = new Uint8Array(UDP_SLOTS);
  peer: LoopUdpRing | undefined;
  /** Datagrams waiting in rxBuf for the next pump(). */
  pending = 0;
  /** Datagrams refused because the peer's ring was full. */
  overflow = 0;
  private onDatagrams: ((count: number, first: number) => void) | undefined;

  /** addr: this ring's IPv4 address as a host-order number (what the peer sees as the source). */
  constructor(readonly addr: number) {}

  startReading(onDatagrams: (count: number, first: number) => void): void {
    this.onDatagrams = onDatagrams;
  }

  stopReading(): void {
    this.onDatagrams = undefined;
  }

  sendBatch(
    buf: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    _addrs: Uint32Array,
    _ports: Uint16Array,
    count: number,
  ): number {
    for (let i = 0; i < count; i++) {
      if (!this.carry(buf, offsets[i]!, lengths[i]!, 0)) return i;
    }
    return count;
  }

  send(buf: Buffer, offset: number, length: number): boolean {
    return this.carry(buf, offset, length, 0);
  }

  /** UDP GSO arriving as UDP GRO: one entry of back-to-back segments. */
  sendSegmented(buf: Buffer, offset: number, length: number, segmentSize: number): boolean {
    return this.carry(buf, offset, length, segmentSize);
  }

  close(): void {
    this.onDatagrams = undefined;
  }

  /** Hand what arrived to the sleeve; returns how many datagrams. */
  pump(): number {
    const n = this.pending;
    if (n === 0 || this.onDatagrams === undefined) return 0;
    this.pending = 0;
    this.onDatagrams(n, 0);
    return n;
  }

  private carry(buf: Buffer, offset: number, length: number, seg: number): boolean {
    const to = this.peer!;
    if (to.pending === UDP_SLOTS) {
      this.overflow++;
      return false;
    }
    const slot = to.pending++;
    copyBytes(to.rxBuf, slot * UDP_SLOT_SIZE, buf, offset, offset + length);
    to.rxLengths[slot] = length;
    to.rxAddrs[slot] = this.addr;
    to.rxSegSizes[slot] = seg;
    return true;
  }
}

/** A TAP loaded once with a batch of frames; fire() hands the batch over again. Writes are counted. */
export class LoopTapRing implements TapRing {
  readonly slotSize = TAP_SLOT_SIZE;
  readonly rxBuf = Buffer.alloc(TAP_SLOTS * TAP_SLOT_SIZE);
  readonly rxLengths = new Uint32Array(TAP_SLOTS);
  framesWritten = 0;
  bytesWritten = 0;
  private loaded = 0;
  private onFrames: ((count: number, first: number) => void) | undefined;

  /** Frames (offload block + Ethernet frame each) the next fire() calls hand over. */
  load(frames: Buffer[]): void {
    if (frames.length > TAP_SLOTS) throw new RangeError(`at most ${TAP_SLOTS} frames per batch`);
    frames.forEach((f, i) => {
      f.copy(this.rxBuf, i * TAP_SLOT_SIZE);
      this.rxLengths[i] = f.length;
    });
    this.loaded = frames.length;
  }

  /** One batch from the bridge; returns its frame count. */
  fire(): number {
    if (this.onFrames !== undefined && this.loaded > 0) this.onFrames(this.loaded, 0);
    return this.loaded;
  }

  startReading(onFrames: (count: number, first: number) => void): void {
    this.onFrames = onFrames;
  }

  stopReading(): void {
    this.onFrames = undefined;
  }

  write(_buf: Buffer, _offset: number, length: number): boolean {
    this.framesWritten++;
    this.bytesWritten += length;
    return true;
  }

  writeBatch(_buf: Buffer, _offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    for (let i = 0; i < count; i++) {
      this.framesWritten++;
      this.bytesWritten += lengths[i]!;
    }
    return count;
  }

  close(): void {
    this.onFrames = undefined;
  }
}

class LoopLinks implements SleeveLinks {
  tap: LoopTapRing | undefined;

  openTap(): Promise<TapRing> {
    this.tap = new LoopTapRing();
    return Promise.resolve(this.tap);
  }

  closeTap(_name: string, tap: TapRing): Promise<void> {
    tap.close();
    return Promise.resolve();
  }

  mtuTowards(): Promise<number> {
    return Promise.resolve(1500);
  }
}

export interface LoopHost {
  /** 48 random-looking bits, as production peer names are. */
  name: PeerName;
  sleeve: SleeveDatapath;
  socket: LoopUdpRing;
  tap: LoopTapRing;
  flows: FlowCounter;
}

export interface Loopback {
  a: LoopHost;
  b: LoopHost;
  /** The clock both sleeves read (advance it in fractions of a millisecond, as performance.now() moves). */
  clock: ManualClock;
  /** Deliver datagrams back and forth until both rings are empty. */
  settle(): void;
  close(): Promise<void>;
}

function topologyOf(self: PeerName, other: PeerName): Topology {
  const t = new Topology({ name: self, nickname: `h${self}`, uid: 1n });
  const edge = { peer: other, address: '192.0.2.9:6783', outbound: false, established: true };
  const own = t.setLocalConnections([edge]);
  const theirs = new Topology({ name: other, nickname: `h${other}`, uid: 2n }).setLocalConnections([
    { ...edge, peer: self },
  ]);
  t.merge([own, theirs]);
  return t;
}

/** Two sleeves on one network, peered (sealed or not) and with their paths up. */
export async function buildLoopback(opts: { sealed: boolean }): Promise<Loopback> {
  const clock = new ManualClock();
  const sealer = loadSealer();
  // Names and underlay addresses above 2^31, as most are: no small-integer shortcuts.
  const names = [0xd2_41_7e_09_c3_5a, 0xa6_13_f0_88_21_b7];
  const addrs = [0xc0_00_02_01, 0xc0_00_02_02];
  const hosts: LoopHost[] = [];
  for (let i = 0; i < 2; i++) {
    const socket = new LoopUdpRing(addrs[i]!);
    const links = new LoopLinks();
    const flows = new FlowCounter(8192);
    const sleeve = new SleeveDatapath({
      self: names[i]!,
      routes: topologyOf(names[i]!, names[1 - i]!),
      events: { pathChanged: () => undefined },
      log: silentLogger,
      sealer,
      kernelPeers: new Set(),
      flows,
      socket,
      links,
      clock,
    });
    await sleeve.addNetwork(LOOP_NETWORK);
    hosts.push({ name: names[i]!, sleeve, socket, tap: links.tap!, flows });
  }
  const [a, b] = hosts as [LoopHost, LoopHost];
  a.socket.peer = b.socket;
  b.socket.peer = a.socket;
  const settle = (): void => {
    for (let i = 0; i < 1000; i++) if (a.socket.pump() + b.socket.pump() === 0) return;
    throw new Error('loopback never settled');
  };
  const ab = randomBytes(32);
  const ba = randomBytes(32);
  await a.sleeve.addPeer(b.name, '192.0.2.2', PORT, opts.sealed ? { send: ab, recv: ba } : undefined);
  await b.sleeve.addPeer(a.name, '192.0.2.1', PORT, opts.sealed ? { send: ba, recv: ab } : undefined);
  settle();
  if (a.sleeve.peerStatus(b.name)?.up !== true || b.sleeve.peerStatus(a.name)?.up !== true) {
    throw new Error('loopback paths did not come up');
  }
  return {
    a,
    b,
    clock,
    settle,
    async close() {
      await a.sleeve.close();
      await b.sleeve.close();
    },
  };
}

export interface AllocationCount {
  frames: number;
  /** Bytes of JS heap objects allocated while the steps ran, garbage included (an estimate: sampled). */
  bytes: number;
  bytesPerFrame: number;
  /** The largest allocating call sites, "bytes/frame function file:line <- caller ...", for failure messages. */
  sites: string[];
}

/** Every sampled allocation under a node of V8's sampling heap profile. */
interface SampleNode {
  selfSize: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children: SampleNode[];
}

/** Bytes per call stack (innermost three frames) under `node`, added into `into`. */
function sizesBySite(node: SampleNode, stack: string[], into: Map<string, number>): void {
  const f = node.callFrame;
  const here = [
    `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`,
    ...stack,
  ];
  if (node.selfSize > 0) {
    const key = here.slice(0, 3).join(' <- ');
    into.set(key, (into.get(key) ?? 0) + node.selfSize);
  }
  for (const c of node.children) sizesBySite(c, here, into);
}

/**
 * Heap bytes allocated per frame while `step()` runs `steps` times (step returns the
 * frames it moved), from V8's sampling heap profiler with objects the young and old
 * generation collectors freed included: garbage is what counts, since it is what makes
 * the young generation collect. With `samplingInterval` bytes between samples on
 * average, anything allocating per frame shows; a path that allocates nothing leaves no
 * sample at all. (Comparing the used heap between forced collections, tried first, adds
 * a few kilobytes per collection of the engine's own, which hides what a frame costs.)
 */
export async function countAllocation(
  step: () => number,
  steps: number,
  samplingInterval = 128,
): Promise<AllocationCount> {
  const session = new Session();
  session.connect();
  let frames = 0;
  try {
    await session.post('HeapProfiler.enable');
    await session.post('HeapProfiler.startSampling', {
      samplingInterval,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    for (let i = 0; i < steps; i++) frames += step();
    const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: SampleNode } };
    const bySite = new Map<string, number>();
    sizesBySite(profile.head, [], bySite);
    const bytes = [...bySite.values()].reduce((a, v) => a + v, 0);
    const sites = [...bySite]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 5)
      .map(([site, b]) => `${(b / frames).toFixed(1)} B/frame ${site}`);
    return { frames, bytes, bytesPerFrame: bytes / frames, sites };
  } finally {
    session.disconnect();
  }
}
