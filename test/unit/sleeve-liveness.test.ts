/**
 * Path liveness on an injected clock: a path is up once heartbeats are answered and goes
 * down when answers stop for longer than PATH_DEAD_MS, and up again when they resume.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PATH_DEAD_MS } from '../../src/datapath/sleeve/liveness';
import { buildMesh, type Mesh } from './sleeve-mesh';

let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close();
  mesh = undefined;
});

describe('sleeve path liveness', () => {
  it('goes down after PATH_DEAD_MS of silence and up when answers resume', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    expect(a.sleeve.peerStatus(b.name)).toMatchObject({ up: true, heartbeatsAnswered: 1 });
    expect(a.sleeve.peerStatus(b.name)?.lastAnswerAt).toBe(mesh.clock.wallNow());

    mesh.underlay.filter = () => null; // the underlay fails
    mesh.clock.advance(PATH_DEAD_MS - 1);
    await new Promise((r) => setTimeout(r, 450)); // two liveness ticks on the real timer
    expect(a.sleeve.peerStatus(b.name)?.up).toBe(true);
    mesh.clock.advance(2);
    await vi.waitFor(() => expect(a.sleeve.peerStatus(b.name)?.up).toBe(false), { timeout: 5_000 });
    expect(a.pathEvents).toEqual([
      [b.name, true],
      [b.name, false],
    ]);

    mesh.underlay.filter = undefined;
    await vi.waitFor(() => expect(a.sleeve.peerStatus(b.name)?.up).toBe(true), { timeout: 5_000 });
    expect(a.pathEvents.at(-1)).toEqual([b.name, true]);
    expect(a.sleeve.peerStatus(b.name)!.heartbeatsSent).toBeGreaterThan(
      a.sleeve.peerStatus(b.name)!.heartbeatsAnswered!,
    );
  });
});
