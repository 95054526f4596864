/**
 * Counts what the sleeve's frame path allocates, in a process of its own (run by
 * test/unit/sleeve-allocation.test.ts with `node --import tsx`), and prints one JSON
 * object per scenario. Two sleeves are joined by rings that allocate nothing themselves
 * (sleeve-loopback.ts) and fed TCP-like exchanges: a batch of data frames from a to b,
 * answered by as many 52-byte ACKs.
 *
 * Why a process of its own: what V8 allocates for a 48-bit number depends on what it
 * inlines, and vitest's module runner, which reaches every import through its own module
 * objects, makes it inline differently from the daemon's plain CommonJS. Measured inside
 * vitest, the same code showed about 30 bytes per frame of heap numbers that a plain node
 * process running it (as the daemon does) does not allocate.
 */
import { BROADCAST_MAC, pattern, tapFrame } from './sleeve-mesh';
import { buildLoopback, countAllocation } from './sleeve-loopback';

const MAC_A = Buffer.from([0x02, 0xaa, 0x10, 0x20, 0x30, 0x01]);
const MAC_B = Buffer.from([0x02, 0xbb, 0x10, 0x20, 0x30, 0x02]);

export interface ScenarioResult {
  name: string;
  frames: number;
  bytesPerFrame: number;
  sites: string[];
  /** Batches (TAP reads) the frames came in. */
  batches: number;
  /** Frames the two bridges received while measured (every frame pushed should arrive). */
  delivered: number;
  /** Bytes b's bridge received while measured. */
  bytesToB: number;
  drops: number;
}

interface Scenario {
  name: string;
  /** Both ends sealing (a network password). */
  sealed: boolean;
  dataFrames: number;
  dataSize: number;
  /** Batch pairs per step. */
  rounds: number;
  warmupSteps: number;
  steps: number;
}

const SCENARIOS: Scenario[] = [
  // 640 frames per step; 157 steps: 100,480 frames measured.
  { name: 'small', sealed: false, dataFrames: 64, dataSize: 1300, rounds: 5, warmupSteps: 300, steps: 157 },
  // TCP super-frames of 60 KB: each cut into ~45 fragments, sent as UDP GSO, reassembled.
  { name: 'super', sealed: false, dataFrames: 4, dataSize: 60_000, rounds: 10, warmupSteps: 100, steps: 125 },
  // Sealed: each datagram sealed and opened in place through libsodium.
  { name: 'small-sealed', sealed: true, dataFrames: 64, dataSize: 1300, rounds: 5, warmupSteps: 300, steps: 157 },
  { name: 'super-sealed', sealed: true, dataFrames: 4, dataSize: 60_000, rounds: 10, warmupSteps: 100, steps: 125 },
];

async function run(s: Scenario): Promise<ScenarioResult> {
  const loop = await buildLoopback({ sealed: s.sealed });
  try {
    const { a, b } = loop;
    // Each side announces its container's MAC, so unicast frames find their owner.
    a.tap.load([tapFrame(BROADCAST_MAC, MAC_A, pattern(46, 1))]);
    a.tap.fire();
    b.tap.load([tapFrame(BROADCAST_MAC, MAC_B, pattern(46, 2))]);
    b.tap.fire();
    loop.settle();
    a.tap.load(Array.from({ length: s.dataFrames }, (_, i) => tapFrame(MAC_B, MAC_A, pattern(s.dataSize, i))));
    b.tap.load(Array.from({ length: s.dataFrames }, (_, i) => tapFrame(MAC_A, MAC_B, pattern(52, i))));
    const step = (): number => {
      let frames = 0;
      for (let r = 0; r < s.rounds; r++) {
        // Time moves in fractions of a millisecond, as performance.now() does.
        loop.clock.advance(0.0371);
        frames += a.tap.fire();
        loop.settle();
        frames += b.tap.fire();
        loop.settle();
      }
      return frames;
    };
    // Let the optimising compiler settle first: the first runs allocate feedback and code.
    for (let i = 0; i < s.warmupSteps; i++) step();
    const deliveredBefore = a.tap.framesWritten + b.tap.framesWritten;
    const bytesBefore = b.tap.bytesWritten;
    const r = await countAllocation(step, s.steps);
    let drops = 0;
    for (const n of [...a.sleeve.drops().values(), ...b.sleeve.drops().values()]) drops += n;
    return {
      name: s.name,
      frames: r.frames,
      bytesPerFrame: r.bytesPerFrame,
      sites: r.sites,
      batches: r.frames / s.dataFrames,
      delivered: a.tap.framesWritten + b.tap.framesWritten - deliveredBefore,
      bytesToB: b.tap.bytesWritten - bytesBefore,
      drops,
    };
  } finally {
    await loop.close();
  }
}

async function main(): Promise<void> {
  const results: ScenarioResult[] = [];
  for (const s of SCENARIOS)
    if (process.env.ONLY === undefined || process.env.ONLY === s.name) results.push(await run(s));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
