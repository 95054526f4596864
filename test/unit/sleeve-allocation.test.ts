/**
 * The sleeve's frame path allocates nothing: frames pushed through two sleeves joined by
 * rings that allocate nothing themselves leave no garbage on V8's heap, counted with the
 * sampling heap profiler (collected objects included: garbage is what makes the young
 * generation collect under traffic). The counting runs in a node process of its own, as
 * the daemon runs the code (sleeve-allocation-run.ts says why).
 *
 * Before this was fixed the same runs allocated about 270 bytes per small frame and
 * 5 KB per TCP super-frame: a Uint8Array view per Buffer.copy, and a heap number per
 * 48-bit MAC or peer name that crossed a call or keyed a Map.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ScenarioResult } from './sleeve-allocation-run';

/**
 * Heap bytes per frame we accept. What is left is per batch, not per frame (the clock read
 * once per batch is a heap number, as performance.now() is) plus the profiler's own
 * messages: about 0.5 bytes per small frame in batches of 64, and 6 per super-frame in
 * batches of 4 (each super-frame is ~45 datagrams). Before: 270 and 5,300.
 */
const MAX_BYTES_PER_FRAME = 2;
const MAX_BYTES_PER_SUPER_FRAME = 16;
/**
 * Sealed, what is left is one view object per datagram each way (about 52 bytes), which
 * sodium-native needs because it takes whole buffers: about 104 bytes per small frame
 * (one per datagram) and 124 per super-frame. Before: 411 and 5,490.
 */
const MAX_SEALED_BYTES_PER_FRAME = 160;
const MAX_SEALED_BYTES_PER_SUPER_FRAME = 250;

function measure(): ScenarioResult[] {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'sleeve-allocation-run.ts')], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`sleeve-allocation-run.ts failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ScenarioResult[];
}

describe('sleeve frame path allocation', () => {
  it('moves 100,000 small frames and 10,000 TCP super-frames, both ways, without allocating (sealed: one view per datagram)', () => {
    const [small, big, smallSealed, bigSealed] = measure() as [
      ScenarioResult,
      ScenarioResult,
      ScenarioResult,
      ScenarioResult,
    ];

    expect(small.frames).toBeGreaterThanOrEqual(100_000);
    // Every frame reached the other bridge: the loop measured real forwarding.
    expect(small.delivered).toBe(small.frames);
    expect(small.drops).toBe(0);
    expect(small.bytesPerFrame, small.sites.join('\n')).toBeLessThan(MAX_BYTES_PER_FRAME);

    expect(big.frames).toBeGreaterThanOrEqual(10_000);
    expect(big.delivered).toBe(big.frames);
    expect(big.bytesToB).toBeGreaterThan((big.frames / 2) * 60_000);
    expect(big.drops).toBe(0);
    expect(big.bytesPerFrame, big.sites.join('\n')).toBeLessThan(MAX_BYTES_PER_SUPER_FRAME);

    for (const sealed of [smallSealed, bigSealed]) {
      expect(sealed.delivered).toBe(sealed.frames);
      expect(sealed.drops).toBe(0);
    }
    expect(smallSealed.bytesPerFrame, smallSealed.sites.join('\n')).toBeLessThan(MAX_SEALED_BYTES_PER_FRAME);
    expect(bigSealed.bytesPerFrame, bigSealed.sites.join('\n')).toBeLessThan(MAX_SEALED_BYTES_PER_SUPER_FRAME);
  });
});
