/**
 * The cluster without etcd (issue 15): four hosts sharing IPAM, names and registrations
 * through the mesh store over their control connections.
 *
 * - Ten times: four hosts launched at once on a range of eight /26 blocks, 60 concurrent
 *   attaches spread over them (through each daemon's API socket, as the CLI does): no
 *   duplicate address, no failed attach; every host then shows the same blocks.
 * - On the last of those clusters: a name added on one host answers on every other
 *   within a second; a partition with attaches on both sides, and its heal; a killed
 *   host's records and blocks gone after the grace period (the lease TTL) and back with
 *   it; a restart keeping addresses, blocks and names.
 * Convergence times are printed (they go into the note).
 */
import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { ApiClient } from '../../src/api/client';
import type { DnsStatus } from '../../src/dns/status';
import type { EndpointStatus } from '../../src/endpoint/types';
import type { IpamStatus } from '../../src/ipam/status';
import { sleep, type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const RANGE = '10.40.0.0/23';
const TTL = 20;
const COMMON = [
  '--datapath',
  'sleeve',
  '--ipalloc-range',
  RANGE,
  '--ipalloc-block',
  '26',
  '--ipam-lease-ttl',
  String(TTL),
];
const REPETITIONS = 10;
const ATTACHES = 60;

const ip = (cidr: string): string => cidr.split('/')[0]!;
const log = (text: string): void => {
  process.stdout.write(`[mesh-store] ${text}\n`);
};

describe('no etcd: one cluster over the mesh', () => {
  let lab: Lab;
  let hosts: Host[] = [];
  /** Container namespaces, 15 per host for the concurrent attaches, reused each repetition. */
  const ctrs: Namespace[][] = [];
  const timings: string[] = [];

  const api = (h: Host): ApiClient => new ApiClient(path.join(h.stateDir, 'weavets.sock'), { timeoutMs: 60_000 });
  const ipamOf = (h: Host): Promise<IpamStatus> => lab.weavetsJson<IpamStatus>(h, ['status', 'ipam']);
  const dnsOf = (h: Host): Promise<DnsStatus> => lab.weavetsJson<DnsStatus>(h, ['status', 'dns']);
  const blocksText = (s: IpamStatus): string => JSON.stringify(s.blocks);

  /** Wait until every host in `hs` shows the same blocks and DNS records; returns ms. */
  const converged = async (hs: Host[], want?: (s: IpamStatus) => boolean): Promise<number> => {
    const t0 = Date.now();
    await lab.waitFor(
      async () => {
        // Through the API socket: CLI processes would make the polling slower than the mesh.
        const ipam = await Promise.all(hs.map((h) => api(h).get<IpamStatus>('/ipam/status')));
        const dns = await Promise.all(hs.map((h) => api(h).get<DnsStatus>('/dns/status')));
        if (want && !ipam.every(want)) return false;
        return (
          ipam.every((s) => blocksText(s) === blocksText(ipam[0]!)) &&
          dns.every((d) => JSON.stringify(d.entries) === JSON.stringify(dns[0]!.entries))
        );
      },
      { timeoutMs: 30_000, intervalMs: 20, what: 'every host showing the same blocks and records' },
    );
    return Date.now() - t0;
  };

  const launchAll = async (): Promise<void> => {
    const [h1, ...rest] = hosts;
    await Promise.all([lab.launch(h1!, [], COMMON), ...rest.map((h) => lab.launch(h, [h1!.ip], COMMON))]);
  };

  const resetAll = async (): Promise<void> => {
    await Promise.all(hosts.map((h) => lab.weavetsOk(h, ['reset'], { timeoutMs: 60_000 })));
  };

  const allAddresses = async (): Promise<string[]> => {
    const eps = await Promise.all(hosts.map((h) => lab.weavetsJson<EndpointStatus[]>(h, ['ps'])));
    return eps.flat().map((e) => ip(e.address));
  };

  const dig = async (from: Namespace | Host, server: string, name: string): Promise<string[]> => {
    const r = await lab.exec(from, ['dig', `@${server}`, '+tries=1', '+time=1', '+short', name], { timeoutMs: 10_000 });
    return r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  };

  useLab(
    async (l) => {
      lab = l;
      lab.requireCli();
      hosts = [await lab.addHost('h1'), await lab.addHost('h2'), await lab.addHost('h3'), await lab.addHost('h4')];
      for (const [i, h] of hosts.entries()) {
        ctrs.push([]);
        for (let k = 0; k < ATTACHES / hosts.length + 3; k++)
          ctrs[i]!.push(await lab.addContainer(h, `c${i + 1}x${k}`));
      }
    },
    { timeoutMs: 300_000 },
  );

  it(`${REPETITIONS} times: four hosts launched at once, ${ATTACHES} concurrent attaches on eight /26 blocks, never a duplicate or a failure`, async () => {
    for (let rep = 1; rep <= REPETITIONS; rep++) {
      const t0 = Date.now();
      await launchAll();
      const launched = Date.now();
      const results = await Promise.allSettled(
        Array.from({ length: ATTACHES }, (_, k) => {
          const hi = k % hosts.length;
          const ctr = ctrs[hi]![Math.floor(k / hosts.length)]!;
          return api(hosts[hi]!).post<EndpointStatus>('/attach', { id: `r${rep}-${ctr.name}`, netns: ctr.netns });
        }),
      );
      const attached = Date.now();
      const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
      expect(failed).toEqual([]);
      const addrs = results.map((r) => ip((r as PromiseFulfilledResult<EndpointStatus>).value.address));
      expect(new Set(addrs).size).toBe(ATTACHES);
      for (const a of addrs) expect(a).toMatch(/^10\.40\.[01]\.\d+$/);
      const ms = await converged(hosts, (s) => s.blocks.length > 0 && s.conflicts.length === 0);
      const ipam = await ipamOf(hosts[0]!);
      const owners = new Set(ipam.blocks.map((b) => b.owner));
      expect(owners.size).toBe(4);
      expect(ipam.conflicts).toEqual([]);
      timings.push(
        `rep ${rep}: launch ${launched - t0} ms, ${ATTACHES} attaches ${attached - launched} ms, converged ${ms} ms after, ${ipam.blocks.length} blocks`,
      );
      log(timings[timings.length - 1]!);
      if (rep < REPETITIONS) await resetAll();
    }
  }, 1_200_000);

  it('a name added on one host answers on every other host within a second', async () => {
    const [h1, h2, h3, h4] = hosts;
    const dns3 = (await dnsOf(h3!)).listen[0]!.split(':')[0]!;
    const dns4 = (await dnsOf(h4!)).listen[0]!.split(':')[0]!;
    const t0 = Date.now();
    const web = ip(await lab.attach(h1!, ctrs[0]![15]!, ['--name', 'web'], 'web-1'));
    const attachedAt = Date.now();
    // In the DNS table of every other host (what its server answers from), through the API...
    const inTable = await Promise.all(
      [h2!, h3!, h4!].map(async (h) => {
        await lab.waitFor(
          async () =>
            ((await api(h).post<{ addresses?: string[] }>('/dns/lookup', { name: 'web' })).addresses ?? []).includes(
              web,
            ),
          {
            timeoutMs: 5000,
            intervalMs: 10,
            what: `web in ${h.name}'s table`,
          },
        );
        return Date.now() - attachedAt;
      }),
    );
    // ...and answered by the DNS server of h3 to a container there (dig's own start-up included).
    let seen3 = 0;
    await lab.waitFor(
      async () => (await dig(ctrs[2]![0]!, dns3, 'web.weavets.local')).includes(web) && (seen3 = Date.now()),
      { timeoutMs: 5000, intervalMs: 20, what: 'web resolving on h3' },
    );
    expect(await dig(ctrs[3]![0]!, dns4, 'web')).toContain(web);
    log(
      `name: attach --name web on h1 took ${attachedAt - t0} ms; in the tables of h2/h3/h4 ${inTable.join('/')} ms after it returned; dig on h3 answered ${seen3 - attachedAt} ms after`,
    );
    expect(seen3 - attachedAt).toBeLessThan(1000);
    expect((await lab.ping(ctrs[2]![0]!, web)).ok).toBe(true);
  });

  it('a partition with attaches on both sides, then its heal: no duplicate, the same blocks everywhere', async () => {
    const [h1, h2, h3, h4] = hosts;
    for (const a of [h1!, h2!]) for (const b of [h3!, h4!]) await lab.block(a, b);
    // The sides see each other go (control connections silent for 4 s).
    await lab.waitFor(
      async () => {
        const peers = await lab.weavetsJson<{ reachable: boolean; nickname: string }[]>(h1!, ['status', 'peers']);
        return peers.filter((p) => p.reachable).length === 2;
      },
      { timeoutMs: 20_000, what: 'h1 seeing only its side' },
    );
    const left = await Promise.all([
      lab.attach(h1!, ctrs[0]![16]!, [], 'p-l1'),
      lab.attach(h2!, ctrs[1]![15]!, [], 'p-l2'),
      lab.attach(h2!, ctrs[1]![16]!, ['--name', 'left'], 'p-l3'),
    ]);
    const right = await Promise.all([
      lab.attach(h3!, ctrs[2]![15]!, [], 'p-r1'),
      lab.attach(h4!, ctrs[3]![15]!, [], 'p-r2'),
      lab.attach(h4!, ctrs[3]![16]!, ['--name', 'right'], 'p-r3'),
    ]);
    const healAt = Date.now();
    for (const a of [h1!, h2!]) for (const b of [h3!, h4!]) await lab.unblock(a, b);
    const ms = await converged(hosts, (s) => s.hosts.length === 4);
    log(
      `partition: healed, every host showing the same blocks and records ${Date.now() - healAt} ms after the heal (${ms} ms of polling)`,
    );
    const all = await allAddresses();
    expect(new Set(all).size).toBe(all.length);
    for (const a of [...left, ...right]) expect(all).toContain(ip(a));
    const dns1 = (await dnsOf(h1!)).listen[0]!.split(':')[0]!;
    expect(await dig(ctrs[0]![0]!, dns1, 'right')).toEqual([ip(right[2])]);
    const s = await ipamOf(h3!);
    expect(s.conflicts).toEqual([]);
  }, 120_000);

  it("a killed host's records and blocks go after the grace period, and come back with it", async () => {
    const [h1, h2, , h4] = hosts;
    const name4 = (await ipamOf(h4!)).name;
    const before = await ipamOf(h1!);
    expect(before.blocks.some((b) => b.owner === name4)).toBe(true);
    expect((await dnsOf(h1!)).entries.some((e) => e.name === 'right')).toBe(true);
    const pid = lab.daemonPid(h4!)!;
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    await lab.waitFor(
      async () => {
        const [s, d] = [await ipamOf(h1!), await dnsOf(h2!)];
        return (
          !s.blocks.some((b) => b.owner === name4) &&
          !d.entries.some((e) => e.name === 'right') &&
          !s.hosts.some((h) => h.name === name4)
        );
      },
      { timeoutMs: (TTL + 30) * 1000, intervalMs: 500, what: "h4's blocks and records gone" },
    );
    const goneAfter = Date.now() - killedAt;
    log(
      `killed h4: its blocks and records gone on h1/h2 ${goneAfter} ms after the kill (grace = TTL ${TTL} s from when h4 became unreachable)`,
    );
    expect(goneAfter).toBeGreaterThan(TTL * 1000);
    await lab.launch(h4!, [h1!.ip], COMMON);
    const backAt = Date.now();
    await lab.waitFor(async () => (await dnsOf(h1!)).entries.some((e) => e.name === 'right'), {
      timeoutMs: 20_000,
      intervalMs: 100,
      what: "h4's record back",
    });
    log(`h4 relaunched: its records back on h1 ${Date.now() - backAt} ms after launch returned`);
    await converged(hosts, (s) => s.blocks.some((b) => b.owner === name4));
  }, 180_000);

  it('a restart keeps addresses, blocks and names', async () => {
    const [h1, h2] = hosts;
    const before = await lab.weavetsJson<EndpointStatus[]>(h2!, ['ps']);
    const blocksBefore = blocksText(await ipamOf(h1!));
    await lab.stopDaemon(h2!);
    await lab.launch(h2!, [h1!.ip], COMMON);
    const after = await lab.weavetsJson<EndpointStatus[]>(h2!, ['ps']);
    expect(after.map((e) => `${e.id}=${e.address}`).sort()).toEqual(before.map((e) => `${e.id}=${e.address}`).sort());
    await converged(hosts);
    expect(blocksText(await ipamOf(h2!))).toBe(blocksBefore);
    const dns1 = (await dnsOf(h1!)).listen[0]!.split(':')[0]!;
    expect(await dig(ctrs[0]![0]!, dns1, 'left')).toHaveLength(1);
    const all = await allAddresses();
    expect(new Set(all).size).toBe(all.length);
    log(`timings:\n${timings.join('\n')}`);
    await sleep(0);
  }, 120_000);
});
