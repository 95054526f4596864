/**
 * Addresses that leak when a daemon is killed in the middle of an attach, and what gives
 * them back: a CNI DEL for the id (released at once, whatever the endpoint table says),
 * and otherwise the reconciler (src/ipam/reconcile.ts), after --ipam-reclaim-grace.
 * "Killed mid-attach" is made exact: kill -9 after an attach, then take away what the
 * attach had not yet written (its entry in endpoints.json and its veth), so the address
 * is in the store with nothing on the host using it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EndpointStatus } from '../../src/endpoint/types';
import { REPO_ROOT, type Host, type Lab } from './harness';
import { useLab } from './lab-hooks';

const CNI_PLUGIN = path.join(REPO_ROOT, 'bin', 'weavets-cni');

describe('addresses nothing uses', () => {
  let lab: Lab;
  let h1: Host;

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    h1 = await lab.addHost('h1');
    await lab.launch(h1);
  });

  /** kill -9 the daemon, then forget an endpoint as an attach cut short would never have recorded it. */
  async function killAndForget(id: string): Promise<void> {
    const pid = lab.daemonPid(h1)!;
    process.kill(pid, 'SIGKILL');
    await lab.waitFor(async () => (await lab.exec(h1, ['kill', '-0', String(pid)])).code !== 0, {
      what: 'the daemon to die',
      timeoutMs: 10_000,
    });
    const file = path.join(h1.stateDir, 'endpoints.json');
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as { endpoints: EndpointStatus[]; exposed: unknown[] };
    const ep = data.endpoints.find((e) => e.id === id)!;
    expect(ep).toBeDefined();
    data.endpoints = data.endpoints.filter((e) => e.id !== id);
    fs.writeFileSync(file, JSON.stringify(data));
    await lab.execOk(h1, ['ip', 'link', 'del', ep.hostVeth]);
  }

  async function attachAt(ctrName: string, address: string): Promise<{ code: number | null; out: string }> {
    const ctr = await lab.addContainer(h1, ctrName);
    const r = await lab.weavets(h1, ['attach', '--netns', ctr.netns, '--ip', address, ctrName]);
    return { code: r.code, out: r.stdout + r.stderr };
  }

  it('a CNI DEL releases the address of an id the daemon has no endpoint for', async () => {
    const ctr = await lab.addContainer(h1, 'cnidel');
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'wtnet', type: 'weavets-cni', stateDir: h1.stateDir });
    const env = (command: string): NodeJS.ProcessEnv => ({
      PATH: process.env['PATH'],
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'cnidel',
      CNI_NETNS: ctr.netns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/usr/lib/cni',
    });
    const add = await lab.exec(h1, [process.execPath, CNI_PLUGIN], { env: env('ADD'), input: conf, timeoutMs: 30_000 });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const address = (JSON.parse(add.stdout) as { ips: { address: string }[] }).ips[0]!.address;
    await killAndForget('cni:wtnet:cnidel:eth0');
    await lab.launch(h1);
    // The store still holds it for the id: nobody else can have it.
    const taken = await attachAt('probe1', address);
    expect(taken.code).not.toBe(0);
    expect(taken.out).toMatch(/already in use by cni:wtnet:cnidel:eth0/);
    // The runtime's DEL for the container: released now, not after a grace period.
    const del = await lab.exec(h1, [process.execPath, CNI_PLUGIN], { env: env('DEL'), input: conf, timeoutMs: 30_000 });
    expect(del.code, del.stdout + del.stderr).toBe(0);
    const again = await attachAt('probe2', address);
    expect(again.code, again.out).toBe(0);
    expect(again.out.trim()).toBe(address);
  });

  it('an address held with no endpoint is released after the grace period and counted; used ones stay', async () => {
    const orphan = await lab.addContainer(h1, 'orphan');
    const keeper = await lab.addContainer(h1, 'keeper');
    const orphanAddr = await lab.attach(h1, orphan);
    const keeperAddr = await lab.attach(h1, keeper);
    await killAndForget('orphan');
    await lab.launch(h1, [], ['--ipam-reclaim-grace', '2']);
    const reclaimed = async (): Promise<number> => {
      const m = /^weavets_ipam_reclaimed_total (\d+)$/m.exec((await lab.http(h1, '/metrics')).body);
      return m ? Number(m[1]) : -1;
    };
    expect(await reclaimed()).toBe(0);
    await lab.waitFor(async () => (await reclaimed()) === 1, {
      what: 'the orphaned address to be released',
      timeoutMs: 30_000,
    });
    const reuse = await attachAt('reuse', orphanAddr);
    expect(reuse.code, reuse.out).toBe(0);
    // Well past another grace period: what endpoints and exposures use is still held.
    await new Promise((r) => setTimeout(r, 5_000));
    expect(await reclaimed()).toBe(1);
    const taken = await attachAt('probe3', keeperAddr);
    expect(taken.out).toMatch(/already in use by keeper/);
    const ps = await lab.weavetsJson<EndpointStatus[]>(h1, ['ps']);
    expect(ps.map((e) => e.id).sort()).toEqual(['keeper', 'probe2', 'reuse']);
    expect((await lab.ping(keeper, orphanAddr.split('/')[0]!, { count: 1 })).ok).toBe(true);
  });
});
