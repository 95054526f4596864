/**
 * Networks as tenants under Docker: two hosts, each with a weavets daemon and a dockerd,
 * one etcd; two Docker networks (`docker network create -d weavets` on both hosts, no
 * --subnet) and a container of each on each host. Same network: ping both ways across
 * hosts. Across networks: nothing, neither on the segment (L2) nor through the gateway
 * (containers have a default route via their host, which must not forward between the
 * segments). The segments are the catalog's networks (unique ids); `docker run --ip` works.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { NetworkInfo } from '../../src/endpoint/types';
import { createLab, type Lab } from '../net/harness';
import { ETCD_TOOLS } from './etcd';
import { describeWithTools } from '../require-tools';
import {
  DOCKER_IMAGE,
  docker,
  DOCKER_TOOLS,
  dockerOk,
  weavetsDockerArgs,
  type DockerHost,
  startDockerPair,
  stopDockerPair,
  type DockerPair,
} from './docker-lab';

const describeDocker = describeWithTools({ commands: DOCKER_TOOLS, files: ETCD_TOOLS.files });

describeDocker('Docker: two networks on two dockerds are isolated tenants', () => {
  let lab: Lab;
  const pair: DockerPair = { hosts: [] };
  const hosts = pair.hosts;
  const ips = new Map<string, string>();

  const ipOf = async (d: DockerHost, name: string, network: string): Promise<string> =>
    (
      await dockerOk(lab, d, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name])
    ).trim();

  beforeAll(async () => {
    lab = await createLab();
    lab.requireCli();
    try {
      await startDockerPair(lab, pair, {
        beforeEtcd: async (...both) => {
          for (const h of both) await lab.execOk(h, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
        },
      });
      const [h1, h2] = [hosts[0]!.host, hosts[1]!.host];
      const etcd = pair.etcd!;
      await lab.launch(h1, [], ['--etcd', etcd.url, '--datapath', 'sleeve', ...weavetsDockerArgs(hosts[0]!)]);
      await lab.launch(h2, [h1.ip], ['--etcd', etcd.url, '--datapath', 'sleeve', ...weavetsDockerArgs(hosts[1]!)]);
      for (const [i, d] of hosts.entries()) {
        for (const net of ['tenant-a', 'tenant-b']) {
          await dockerOk(lab, d, ['network', 'create', '-d', d.driver, '--ipam-driver', d.driver, net]);
          const name = `${net}-${i + 1}`;
          await dockerOk(lab, d, ['run', '-d', '--name', name, '--network', net, DOCKER_IMAGE, 'sleep', '600']);
          ips.set(name, await ipOf(d, name, net));
        }
      }
    } catch (err) {
      lab.dumpLogs();
      throw err;
    }
  }, 300_000);

  afterAll(async () => {
    await stopDockerPair(lab, pair);
  }, 180_000);

  it('the two Docker networks are catalog networks with distinct ids, the same on both hosts', async () => {
    const [l1, l2] = await Promise.all(hosts.map((d) => lab.weavetsJson<NetworkInfo[]>(d.host, ['network', 'ls'])));
    const pick = (l: NetworkInfo[]): NetworkInfo[] =>
      l.filter((n) => n.name.startsWith('tenant-')).sort((a, b) => a.name.localeCompare(b.name));
    expect(pick(l1!).map((n) => n.name)).toEqual(['tenant-a', 'tenant-b']);
    expect(pick(l1!)).toEqual(pick(l2!).map((n) => ({ ...n, local: true })));
    expect(pick(l1!)[0]!.id).not.toBe(pick(l1!)[1]!.id);
    expect(new Set(ips.values()).size).toBe(4);
  });

  it('same network answers across hosts both ways; across networks nothing answers, directly or through the gateway', async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    const hostOf = (name: string): DockerHost => (name.endsWith('-1') ? d1 : d2);
    await lab.waitFor(
      async () =>
        (await docker(lab, d1, ['exec', 'tenant-a-1', 'ping', '-c', '1', '-W', '1', ips.get('tenant-a-2')!])).code ===
        0,
      {
        what: 'tenant-a-1 to reach tenant-a-2',
        timeoutMs: 30_000,
      },
    );
    const rows: string[] = ['docker isolation matrix: P = ping answered; row = source'];
    const names = [...ips.keys()];
    rows.push(['', ...names].map((n) => n.padEnd(12)).join(''));
    const wrong: string[] = [];
    for (const src of names) {
      const cells: string[] = [];
      for (const dst of names) {
        if (src === dst) {
          cells.push('.');
          continue;
        }
        const r = await docker(lab, hostOf(src), ['exec', src, 'ping', '-c', '3', '-W', '2', ips.get(dst)!]);
        const ok = /[1-9]\d* packets received/.test(r.stdout);
        cells.push(ok ? 'P' : '-');
        const same = src.slice(0, 8) === dst.slice(0, 8);
        if (ok !== same) wrong.push(`${src} -> ${dst} (${ips.get(dst)}): ${ok ? 'answered' : 'no answer'}`);
      }
      rows.push([src, ...cells].map((n) => n.padEnd(12)).join(''));
    }
    console.log(rows.join('\n'));
    // The containers do have the route through their host (their gateway) to every address.
    expect(await dockerOk(lab, d1, ['exec', 'tenant-a-1', 'ip', 'route'])).toMatch(/^default via /m);
    expect(wrong).toEqual([]);
  }, 300_000);

  it('docker run --ip on a weavets network gets that address', async () => {
    const [d1] = hosts as [DockerHost];
    const taken = new Set(ips.values());
    const base = ips.get('tenant-a-1')!.split('.').map(Number);
    let want = '';
    for (let k = 10; k < 60; k++) {
      const cand = `${base[0]}.${base[1]}.${base[2]}.${(base[3]! + k) % 250}`;
      if (!taken.has(cand)) {
        want = cand;
        break;
      }
    }
    await dockerOk(lab, d1, [
      'network',
      'create',
      '-d',
      d1.driver,
      '--ipam-driver',
      d1.driver,
      '--subnet',
      '10.32.0.0/12',
      'fixed',
    ]);
    await dockerOk(lab, d1, [
      'run',
      '-d',
      '--name',
      'pinned',
      '--network',
      'fixed',
      '--ip',
      want,
      DOCKER_IMAGE,
      'sleep',
      '600',
    ]);
    expect(await ipOf(d1, 'pinned', 'fixed')).toBe(want);
    // Another container asking for the same address is refused.
    const again = await docker(lab, d1, [
      'run',
      '-d',
      '--name',
      'pinned2',
      '--network',
      'fixed',
      '--ip',
      want,
      DOCKER_IMAGE,
      'sleep',
      '600',
    ]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/in use by/);
  }, 120_000);
});
