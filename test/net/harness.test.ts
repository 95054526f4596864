/**
 * The namespace lab on its own, no daemon: underlay reachability, container namespaces,
 * block/unblock, and a teardown that leaves nothing behind.
 */
import * as fs from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createLab, namespacesWithPrefix, type Host, type Lab, type Namespace } from './harness';

describe('namespace lab', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let c1: Namespace;

  beforeAll(async () => {
    lab = await createLab();
    h1 = await lab.addHost('host1');
    h2 = await lab.addHost('host2');
    c1 = await lab.addContainer(h1, 'c1');
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it('uses a short per-run prefix and underlay addresses 192.0.2.(10+i)', () => {
    expect(lab.prefix).toMatch(/^wt[0-9a-f]{4}$/);
    expect(h1.ip).toBe('192.0.2.11');
    expect(h2.ip).toBe('192.0.2.12');
    expect(h1.netns).toBe(`/run/netns/${lab.prefix}-host1`);
    expect(fs.existsSync(h1.stateDir)).toBe(true);
  });

  it('hosts ping each other over the underlay', async () => {
    const a = await lab.ping(h1, h2.ip, { count: 2 });
    expect(a.ok, a.output).toBe(true);
    const b = await lab.ping(h2, h1.ip, { count: 2 });
    expect(b.ok, b.output).toBe(true);
    expect(b.avgMs).toBeGreaterThan(0);
  });

  it('keeps overlay-free hosts: only lo and eth0 in a host, only lo in a container', async () => {
    const host = await lab.execOk(h1, ['ip', '-o', 'link', 'show']);
    const names = host.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(':')[1]!.trim().split('@')[0]);
    expect(names.sort()).toEqual(['eth0', 'lo']);
    expect(fs.existsSync(c1.netns)).toBe(true);
    expect(c1.host).toBe('host1');
    const ctr = await lab.execOk(c1, ['ip', '-o', 'link', 'show']);
    expect(ctr.stdout).toMatch(/\blo\b.*UP/);
    expect(ctr.stdout.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('block cuts both directions and unblock restores them', async () => {
    await lab.block(h1, h2);
    expect((await lab.ping(h1, h2.ip, { count: 2, timeoutS: 1 })).received).toBe(0);
    expect((await lab.ping(h2, h1.ip, { count: 2, timeoutS: 1 })).received).toBe(0);
    // A third host is not affected.
    const h3 = await lab.addHost('host3');
    expect((await lab.ping(h3, h1.ip, { count: 1 })).ok).toBe(true);
    expect((await lab.ping(h3, h2.ip, { count: 1 })).ok).toBe(true);
    await lab.unblock(h1, h2);
    const back = await lab.ping(h1, h2.ip, { count: 2 });
    expect(back.ok, back.output).toBe(true);
  });

  it('exec reports exit codes and timeouts without throwing; execOk throws with details', async () => {
    const r = await lab.exec(h1, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    const t = await lab.exec(h1, ['sleep', '5'], { timeoutMs: 200 });
    expect(t.timedOut).toBe(true);
    await expect(lab.execOk(h1, ['false'])).rejects.toThrow(/exited 1/);
  });

  it('waitFor names what it waited for', async () => {
    let n = 0;
    await expect(lab.waitFor(() => ++n > 2, { what: 'three polls', intervalMs: 10 })).resolves.toBe(true);
    await expect(lab.waitFor(() => false, { what: 'the impossible', timeoutMs: 100, intervalMs: 20 })).rejects.toThrow(
      /waiting for the impossible/,
    );
    await expect(
      lab.waitFor(() => false, { what: 'x', timeoutMs: 50, intervalMs: 10, lastSeen: () => 'the last table' }),
    ).rejects.toThrow(/waiting for x; last result: false; last seen: the last table$/);
  });

  it('destroy kills processes left in its namespaces and leaves no namespace with the prefix', async () => {
    const other = await createLab();
    const h = await other.addHost('h');
    await other.addContainer('c');
    const sleeper = other.spawnIn(h, ['sleep', '300']);
    await other.waitFor(() => sleeper.pid !== undefined, { what: 'sleep to start' });
    expect(namespacesWithPrefix(other.prefix).sort()).toEqual([
      `${other.prefix}-c`,
      `${other.prefix}-h`,
      `${other.prefix}-u`,
    ]);
    const exited = new Promise<unknown>((resolve) => sleeper.on('exit', resolve));
    await other.destroy();
    await exited;
    expect(namespacesWithPrefix(other.prefix)).toEqual([]);
    expect(fs.existsSync(other.dir)).toBe(false);
    // Our own lab is untouched.
    expect(namespacesWithPrefix(lab.prefix).length).toBeGreaterThan(0);
  });
});
