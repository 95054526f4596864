/**
 * Networks as tenants under Docker: two hosts, each with a weavets daemon and a dockerd,
 * one etcd; two Docker networks (`docker network create -d weavets` on both hosts, no
 * --subnet) and a container of each on each host. Same network: ping both ways across
 * hosts. Across networks: nothing, neither on the segment (L2) nor through the gateway
 * (containers have a default route via their host, which must not forward between the
 * segments). The segments are the catalog's networks (unique ids), each with its own subnet
 * from the catalog, which the containers' addresses are in; `docker run --ip` works.
 * `-d weavets` alone (Docker's default IPAM) works across hosts, and a weavets restart keeps
 * all of it working.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { contains, parseCidr, parseIpv4 } from '../../src/net/ipv4';
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
import { compareText } from '../../src/text-order';

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

  it('the two Docker networks are catalog networks with distinct ids and subnets, the same on both hosts; their containers are in them', async () => {
    const [l1, l2] = await Promise.all(hosts.map((d) => lab.weavetsJson<NetworkInfo[]>(d.host, ['network', 'ls'])));
    const pick = (l: NetworkInfo[]): NetworkInfo[] =>
      l.filter((n) => n.name.startsWith('tenant-')).sort((a, b) => compareText(a.name, b.name));
    expect(pick(l1!).map((n) => n.name)).toEqual(['tenant-a', 'tenant-b']);
    expect(pick(l1!)).toEqual(pick(l2!).map((n) => ({ ...n, local: true })));
    const [a, b] = pick(l1!) as [NetworkInfo, NetworkInfo];
    expect(a.id).not.toBe(b.id);
    console.log(`Docker networks in the catalog: ${a.name} ${a.subnet}, ${b.name} ${b.subnet}`);
    // Subnets of their own (auto /24s), not the range, and distinct.
    expect(a.subnet).toMatch(/\/24$/);
    expect(b.subnet).toMatch(/\/24$/);
    expect(a.subnet).not.toBe(b.subnet);
    expect(new Set(ips.values()).size).toBe(4);
    for (const [name, ip] of ips) {
      const subnet = parseCidr(name.startsWith('tenant-a') ? a.subnet : b.subnet);
      expect(contains(subnet, parseIpv4(ip)), `${name} ${ip} in ${name.slice(0, 8)}'s subnet`).toBe(true);
    }
    // The container's default route is its host's gateway in the subnet.
    const route = await dockerOk(lab, hosts[0]!, ['exec', 'tenant-a-1', 'ip', 'route']);
    const gw = /^default via (\S+)/m.exec(route)?.[1];
    expect(gw !== undefined && contains(parseCidr(a.subnet), parseIpv4(gw)), route).toBe(true);
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

  it('docker network create --subnet S is the catalog network with S, and docker run --ip there gets that address', async () => {
    const [d1] = hosts as [DockerHost];
    const subnet = '10.47.250.0/24';
    const want = '10.47.250.10';
    await dockerOk(lab, d1, [
      'network',
      'create',
      '-d',
      d1.driver,
      '--ipam-driver',
      d1.driver,
      '--subnet',
      subnet,
      'fixed',
    ]);
    // Shown by weavets with its subnet right after docker network create, before any container.
    await lab.waitFor(
      async () =>
        (await lab.weavetsJson<NetworkInfo[]>(d1.host, ['network', 'ls'])).find((n) => n.name === 'fixed')?.subnet ===
        subnet,
      { what: 'network ls to show fixed with its subnet', timeoutMs: 15_000 },
    );
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
    const l1 = await lab.weavetsJson<NetworkInfo[]>(d1.host, ['network', 'ls']);
    expect(l1.find((n) => n.name === 'fixed')?.subnet).toBe(subnet);
    // A --subnet overlapping a network is refused, naming it.
    const overlapping = await docker(lab, d1, [
      'network',
      'create',
      '-d',
      d1.driver,
      '--ipam-driver',
      d1.driver,
      '--subnet',
      '10.47.250.128/25',
      'overlapping',
    ]);
    expect(overlapping.code).not.toBe(0);
    expect(overlapping.stderr).toMatch(/overlaps weavets network fixed \(10\.47\.250\.0\/24\)/);
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
  it("-d weavets alone (Docker's IPAM): containers on two hosts answer each other; the network is created with no option at all", async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    // Each host's dockerd hands out addresses of its own --ip-range and has its own gateway.
    for (const [i, d] of [d1, d2].entries()) {
      await dockerOk(lab, d, [
        'network',
        'create',
        '-d',
        d.driver,
        '--subnet',
        '172.30.0.0/16',
        '--ip-range',
        `172.30.${i + 1}.0/24`,
        '--gateway',
        `172.30.${i + 1}.1`,
        'plain',
      ]);
      await dockerOk(lab, d, [
        'run',
        '-d',
        '--name',
        `plain-${i + 1}`,
        '--network',
        'plain',
        DOCKER_IMAGE,
        'sleep',
        '600',
      ]);
      ips.set(`plain-${i + 1}`, await ipOf(d, `plain-${i + 1}`, 'plain'));
    }
    expect(ips.get('plain-1')).toMatch(/^172\.30\.1\./);
    expect(ips.get('plain-2')).toMatch(/^172\.30\.2\./);
    await lab.waitFor(
      async () =>
        (await docker(lab, d1, ['exec', 'plain-1', 'ping', '-c', '1', '-W', '1', ips.get('plain-2')!])).code === 0,
      { what: 'plain-1 to reach plain-2 across hosts', timeoutMs: 30_000 },
    );
    expect((await docker(lab, d2, ['exec', 'plain-2', 'ping', '-c', '1', '-W', '2', ips.get('plain-1')!])).code).toBe(
      0,
    );
    // Not across to a weavets-addressed network.
    expect(
      (await docker(lab, d1, ['exec', 'plain-1', 'ping', '-c', '2', '-W', '1', ips.get('tenant-a-2')!])).code,
    ).not.toBe(0);
    // Literally alone: Docker picks the subnet; a container starts with an address of it.
    await dockerOk(lab, d1, ['network', 'create', '-d', d1.driver, 'alone']);
    await dockerOk(lab, d1, ['run', '-d', '--name', 'alone-1', '--network', 'alone', DOCKER_IMAGE, 'sleep', '600']);
    const alone = await ipOf(d1, 'alone-1', 'alone');
    expect(alone).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(contains(parseCidr('10.32.0.0/12'), parseIpv4(alone))).toBe(false);
  }, 180_000);

  it('a weavets restart keeps the networks working, and new containers still get addresses in their subnet', async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    await lab.stopDaemon(d1.host);
    await lab.launch(d1.host, [], ['--etcd', pair.etcd!.url, '--datapath', 'sleeve', ...weavetsDockerArgs(d1)]);
    for (const [src, dst] of [
      ['tenant-a-1', 'tenant-a-2'],
      ['tenant-b-1', 'tenant-b-2'],
      ['plain-1', 'plain-2'],
    ] as const) {
      await lab.waitFor(
        async () => (await docker(lab, d1, ['exec', src, 'ping', '-c', '1', '-W', '1', ips.get(dst)!])).code === 0,
        { what: `${src} to reach ${dst} after the restart`, timeoutMs: 30_000 },
      );
    }
    expect(
      (await docker(lab, d1, ['exec', 'tenant-a-1', 'ping', '-c', '2', '-W', '1', ips.get('tenant-b-2')!])).code,
    ).not.toBe(0);
    const l1 = await lab.weavetsJson<NetworkInfo[]>(d1.host, ['network', 'ls']);
    const a = l1.find((n) => n.name === 'tenant-a')!;
    await dockerOk(lab, d1, [
      'run',
      '-d',
      '--name',
      'tenant-a-3',
      '--network',
      'tenant-a',
      DOCKER_IMAGE,
      'sleep',
      '600',
    ]);
    const ip3 = await ipOf(d1, 'tenant-a-3', 'tenant-a');
    expect(contains(parseCidr(a.subnet), parseIpv4(ip3)), `${ip3} in ${a.subnet}`).toBe(true);
    expect((await docker(lab, d2, ['exec', 'tenant-a-2', 'ping', '-c', '1', '-W', '2', ip3])).code).toBe(0);
  }, 180_000);
});
