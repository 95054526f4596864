/**
 * Networks as tenants, end to end: three hosts sharing a real etcd, three networks (red:
 * subnet picked from the range, blue: --subnet 10.40.7.0/24, and the default network), a
 * container of each network on each host, on sleeve, fastdp and encrypted sleeve.
 *
 * For every (source container, target) pair, where targets are every other container and
 * every host address on every network (the DNS listeners), it tries ping, a TCP connect
 * and ARP, and then again through the host as a router (routes to the other networks via
 * the source's own host address, with ip_forward on). Same network: ping, TCP and ARP
 * answer. Different networks: nothing answers, by any path. A container spoofing a source
 * address of another network reaches nothing there either. Names resolve only within a
 * network; upstream forwarding works from every network. The matrix is printed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import type { NetworkInfo } from '../../src/endpoint/types';
import type { RouterStatus } from '../../src/router/status';
import { REPO_ROOT, createLab, type Host, type Lab, type Namespace } from '../net/harness';
import { ETCD_TOOLS, startEtcdIn, type EtcdServer } from './etcd';
import { describeWithTools } from '../require-tools';

// nc (netcat-openbsd: -l -k, -z -w) for the TCP probes, busybox for arping.
const describeEtcd = describeWithTools({ ...ETCD_TOOLS, commands: ['nc', 'busybox'] });
const NETWORKS = ['red', 'blue', 'weavets'] as const;
type NetName = (typeof NETWORKS)[number];
const BLUE_SUBNET = '10.40.7.0/24';
const PASSWORD = 'tenants are not neighbours';
const TCP_PORT = 7000;

/** A stub upstream: example.com A -> 198.51.100.7, everything else NXDOMAIN. */
const STUB = `
const dgram = require('node:dgram');
const pkt = require(${JSON.stringify(path.join(REPO_ROOT, 'node_modules', 'dns-packet'))});
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  let q; try { q = pkt.decode(m); } catch { return; }
  const name = q.questions[0].name.toLowerCase();
  const hit = name === 'example.com' && q.questions[0].type === 'A';
  s.send(pkt.encode({ type: 'response', id: q.id, flags: pkt.RECURSION_DESIRED | pkt.RECURSION_AVAILABLE | (hit ? 0 : 3),
    questions: q.questions, answers: hit ? [{ type: 'A', name: q.questions[0].name, ttl: 60, data: '198.51.100.7' }] : [] }), r.port, r.address);
});
s.bind(53, '198.18.0.2', () => console.log('stub ready'));
`;

interface Member {
  label: string;
  network: NetName;
  host: Host;
  ip: string;
  /** A container (undefined: a host address). */
  ns?: Namespace;
}

interface Outcome {
  ping: boolean;
  tcp: boolean;
  arp: boolean;
  routed: boolean;
}

const MODES: { name: string; args: string[]; password: boolean }[] = [
  { name: 'sleeve', args: ['--datapath', 'sleeve'], password: false },
  { name: 'fastdp', args: ['--datapath', 'fastdp'], password: false },
  { name: 'encrypted sleeve', args: ['--datapath', 'sleeve'], password: true },
];

/** fn over items, at most `n` at a time, results in order. */
async function inBatches<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += n) out.push(...(await Promise.all(items.slice(i, i + n).map(fn))));
  return out;
}

async function upTo(tries: number, probe: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < tries; i++) if (await probe()) return true;
  return false;
}

function addressOf(cidr: string): string {
  return cidr.split('/')[0]!;
}

// Tests about one data path are registered only in that mode's suite (no skip lines).
for (const mode of MODES) {
  describeEtcd(`networks as tenants: 3 hosts x 3 networks on ${mode.name}`, () => {
    let lab: Lab;
    let etcd: EtcdServer | undefined;
    const hosts: Host[] = [];
    const containers: Member[] = [];
    const hostAddrs: Member[] = [];
    const listeners: import('node:child_process').ChildProcess[] = [];
    let subnets: Record<NetName, string>;

    beforeAll(async () => {
      lab = await createLab();
      lab.requireCli();
      try {
        for (let i = 1; i <= 3; i++) hosts.push(await lab.addHost(`h${i}`));
        // The host may route (as a Docker host does): isolation must hold regardless.
        for (const h of hosts) await lab.execOk(h, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
        const up = await lab.addNamespace('up');
        await lab.link(hosts[0]!, 'vup', '198.18.0.1/24', up, 'eth0', '198.18.0.2/24');
        fs.writeFileSync(path.join(lab.dir, 'stub.js'), STUB);
        const stub = lab.spawnIn(up, [process.execPath, path.join(lab.dir, 'stub.js')]);
        listeners.push(stub);
        await new Promise<void>((resolve, reject) => {
          stub.stdout!.on('data', () => resolve());
          stub.on('exit', (code) => reject(new Error(`stub upstream exited ${code}`)));
        });
        const resolvConf = path.join(lab.dir, 'resolv.conf');
        fs.writeFileSync(resolvConf, 'nameserver 198.18.0.2\n');
        etcd = await startEtcdIn(lab, hosts[0]!);
        let env: NodeJS.ProcessEnv | undefined;
        if (mode.password) env = { WEAVETS_PASSWORD: PASSWORD };
        const common = [...mode.args, '--etcd', etcd.url, '--dns-resolv-conf', resolvConf];
        await lab.launch(hosts[0]!, [], common, env ? { env } : {});
        await lab.launch(hosts[1]!, [hosts[0]!.ip], common, env ? { env } : {});
        await lab.launch(hosts[2]!, [hosts[0]!.ip], common, env ? { env } : {});
        await lab.weavetsOk(hosts[0]!, ['network', 'create', 'red']);
        await lab.weavetsOk(hosts[1]!, ['network', 'create', 'blue', '--subnet', BLUE_SUBNET]);
        const list = await lab.weavetsJson<NetworkInfo[]>(hosts[2]!, ['network', 'ls']);
        subnets = Object.fromEntries(NETWORKS.map((n) => [n, list.find((x) => x.name === n)?.subnet ?? ''])) as Record<
          NetName,
          string
        >;
        for (const [i, h] of hosts.entries()) {
          for (const n of NETWORKS) {
            const label = `${n[0]}${i + 1}`;
            const ns = await lab.addContainer(h, label);
            const ip = addressOf(await lab.attach(h, ns, ['--network', n, '--name', label]));
            containers.push({ label, network: n, host: h, ip, ns });
            const l = lab.spawnIn(ns, ['nc', '-lk', String(TCP_PORT)]);
            listeners.push(l);
          }
        }
        // The host's own address on each network (where DNS listens).
        for (const [i, h] of hosts.entries()) {
          const st = await lab.weavetsJson<RouterStatus>(h, ['status']);
          for (const n of NETWORKS) {
            const bridge = st.networks.find((x) => x.name === n)!.bridge;
            const out = (await lab.execOk(h, ['ip', '-j', '-4', 'addr', 'show', 'dev', bridge])).stdout;
            const info = JSON.parse(out) as { addr_info: { local: string }[] }[];
            const addr = info[0]?.addr_info[0]?.local;
            if (addr === undefined) throw new Error(`host h${i + 1} has no address on ${n} (${bridge})`);
            hostAddrs.push({ label: `h${i + 1}:${n[0]}`, network: n, host: h, ip: addr });
          }
        }
      } catch (err) {
        lab.dumpLogs();
        throw err;
      }
    }, 240_000);

    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => lab?.dumpLogs());
    });

    afterAll(async () => {
      for (const l of listeners) l.kill('SIGKILL');
      await lab?.destroy();
      await etcd?.destroy();
    });

    it('network ls shows the three networks with distinct ids and non-overlapping subnets; bad input is refused', async () => {
      const list = await lab.weavetsJson<NetworkInfo[]>(hosts[1]!, ['network', 'ls']);
      expect(list.map((n) => n.name).sort()).toEqual(['blue', 'red', 'weavets']);
      expect(new Set(list.map((n) => n.id)).size).toBe(3);
      expect(subnets.blue).toBe(BLUE_SUBNET);
      expect(subnets.weavets).toBe('10.32.0.0/12');
      expect(subnets.red).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.0\/24$/);
      expect(subnets.red).not.toBe(BLUE_SUBNET);
      const bad: [string[], RegExp][] = [
        [['network', 'create', 'green', '--subnet', '10.40.7.128/25'], /overlaps network blue/],
        [['network', 'create', 'green', '--subnet', '192.168.5.0/24'], /outside the range/],
        [['network', 'create', 'green', '--subnet', '10.40.9.0/28'], /smaller than one address block/],
        [['network', 'create', 'not.a.label'], /DNS label/],
        [['network', 'create', 'red'], /already exists/],
      ];
      for (const [args, msg] of bad) {
        const r = await lab.weavets(hosts[2]!, args);
        expect(r.code, args.join(' ')).not.toBe(0);
        expect(r.stderr).toMatch(msg);
      }
      const after = await lab.weavetsJson<NetworkInfo[]>(hosts[0]!, ['network', 'ls']);
      expect(after.map((n) => n.name).sort()).toEqual(['blue', 'red', 'weavets']); // nothing half-made
      // In use: refused, naming hosts and ids.
      const rm = await lab.weavets(hosts[0]!, ['network', 'rm', 'blue']);
      expect(rm.code).not.toBe(0);
      expect(rm.stderr).toMatch(/b1 .* on host h1/);
      expect(rm.stderr).toMatch(/b3 .* on host h3/);
    });

    it('every address is unique across networks and hosts, and each lies in its network subnet', () => {
      const all = [...containers, ...hostAddrs];
      expect(new Set(all.map((m) => m.ip)).size).toBe(all.length);
      for (const m of all) {
        const [base, prefix] = subnets[m.network].split('/');
        const toNum = (ip: string): number => ip.split('.').reduce((a, p) => a * 256 + Number(p), 0);
        const size = 2 ** (32 - Number(prefix));
        expect(Math.floor(toNum(m.ip) / size) * size, `${m.label} ${m.ip} in ${subnets[m.network]}`).toBe(toNum(base!));
        if (m.network === 'weavets') {
          for (const other of ['red', 'blue'] as const) {
            const [ob, op] = subnets[other].split('/');
            const osize = 2 ** (32 - Number(op));
            expect(Math.floor(toNum(m.ip) / osize) * osize, `${m.label} ${m.ip} outside ${subnets[other]}`).not.toBe(
              toNum(ob!),
            );
          }
        }
      }
    });

    it('isolation matrix: same network answers by ping, TCP and ARP both ways; across networks nothing answers by any path', async () => {
      // Everyone on a network can reach everyone on it (wait until the mesh is up).
      const first = containers.find((c) => c.label === 'r1')!;
      const far = containers.find((c) => c.label === 'r3')!;
      await lab.waitFor(async () => (await lab.ping(first.ns!, far.ip, { count: 1, timeoutS: 1 })).ok, {
        what: 'r1 to reach r3',
        timeoutMs: 45_000,
      });

      const results = new Map<string, Outcome>();
      const targets = [...containers, ...hostAddrs];
      for (const src of containers) {
        const others = targets.filter((t) => t !== src);
        const probes = await inBatches(others, 6, async (t) => {
          // Within a network each probe is tried up to three times (a loaded machine may
          // lose one); across networks one success would already be a failure.
          const tries = t.network === src.network ? 3 : 1;
          const ping = await upTo(
            tries,
            async () => (await lab.ping(src.ns!, t.ip, { count: 3, timeoutS: 2, intervalS: 0.2 })).ok,
          );
          const port = t.ns ? TCP_PORT : 53;
          const tcp = await upTo(
            tries,
            async () =>
              (await lab.exec(src.ns!, ['nc', '-z', '-w', '2', t.ip, String(port)], { timeoutMs: 10_000 })).code === 0,
          );
          const arp = await upTo(
            tries,
            async () =>
              (
                await lab.exec(src.ns!, ['busybox', 'arping', '-c', '2', '-w', '2', '-I', 'eth0', t.ip], {
                  timeoutMs: 10_000,
                })
              ).code === 0,
          );
          return [t, { ping, tcp, arp, routed: false }] as const;
        });
        for (const [t, o] of probes) results.set(`${src.label}>${t.label}`, o);
      }
      // Through the host as a router: routes to every other network via the source's own
      // host address (the one its resolver is on); with ip_forward on, only isolation stops it.
      for (const src of containers) {
        const gw = hostAddrs.find((h) => h.host === src.host && h.network === src.network)!;
        for (const n of NETWORKS) {
          if (n === src.network) continue;
          // The default network's subnet holds the others: route just the targets' /32s.
          for (const t of targets.filter((x) => x.network === n)) {
            await lab.execOk(src.ns!, ['ip', 'route', 'replace', `${t.ip}/32`, 'via', gw.ip, 'dev', 'eth0']);
          }
        }
        const others = targets.filter((t) => t.network !== src.network);
        const routed = await inBatches(others, 6, async (t) => {
          const ping = (await lab.ping(src.ns!, t.ip, { count: 3, timeoutS: 2, intervalS: 0.2 })).ok;
          const tcp =
            (
              await lab.exec(src.ns!, ['nc', '-z', '-w', '2', t.ip, String(t.ns ? TCP_PORT : 53)], {
                timeoutMs: 10_000,
              })
            ).code === 0;
          return [t, ping || tcp] as const;
        });
        for (const [t, ok] of routed) results.get(`${src.label}>${t.label}`)!.routed = ok;
        for (const t of others) await lab.exec(src.ns!, ['ip', 'route', 'del', `${t.ip}/32`]);
      }

      // Print the matrix: P ping, T TCP, A ARP, R reached through the host as a router.
      const cols = targets.map((t) => t.label);
      const cell = (o: Outcome | undefined): string =>
        o === undefined ? '' : `${o.ping ? 'P' : '-'}${o.tcp ? 'T' : '-'}${o.arp ? 'A' : '-'}${o.routed ? 'R' : '-'}`;
      const lines = [
        `isolation matrix (${mode.name}): P ping, T tcp connect, A arp, R routed via the host; row = source`,
        ['', ...cols].map((c) => c.padEnd(7)).join(''),
      ];
      for (const src of containers)
        lines.push(
          [src.label, ...targets.map((t) => (t === src ? '.' : cell(results.get(`${src.label}>${t.label}`))))]
            .map((c) => c.padEnd(7))
            .join(''),
        );
      console.log(lines.join('\n'));

      const wrong: string[] = [];
      for (const src of containers) {
        for (const t of targets) {
          if (t === src) continue;
          const o = results.get(`${src.label}>${t.label}`)!;
          const same = t.network === src.network;
          if (same && !(o.ping && o.tcp && o.arp))
            wrong.push(`${src.label} -> ${t.label} (${t.ip}) same network: ${cell(o)}`);
          if (!same && (o.ping || o.tcp || o.arp || o.routed))
            wrong.push(`${src.label} -> ${t.label} (${t.ip}) across networks: ${cell(o)}`);
        }
      }
      expect(wrong).toEqual([]);
    }, 600_000);

    it('a container spoofing a source address of another network reaches nothing there', async () => {
      const r1 = containers.find((c) => c.label === 'r1')!;
      const b1 = containers.find((c) => c.label === 'b1')!;
      const b2 = containers.find((c) => c.label === 'b2')!;
      const w2 = containers.find((c) => c.label === 'w2')!;
      const gw = hostAddrs.find((h) => h.host === r1.host && h.network === 'red')!;
      const icmpIn = async (ns: Namespace): Promise<number> => {
        const snmp = (await lab.execOk(ns, ['cat', '/proc/net/snmp'])).stdout
          .split('\n')
          .filter((l) => l.startsWith('Icmp:'));
        const [head, vals] = [snmp[0]!.split(/\s+/), snmp[1]!.split(/\s+/)];
        return Number(vals[head.indexOf('InMsgs')]);
      };
      // r1 takes an unused blue address and a default-network address as its own, and
      // sends as them: to blue containers through its host, and to its host's red
      // address (whose reply would go to the spoofed network).
      const spoofBlue = BLUE_SUBNET.replace('0/24', '250');
      const spoofDefault = '10.47.255.250';
      await lab.execOk(r1.ns!, ['ip', 'addr', 'add', `${spoofBlue}/32`, 'dev', 'eth0']);
      await lab.execOk(r1.ns!, ['ip', 'addr', 'add', `${spoofDefault}/32`, 'dev', 'eth0']);
      for (const t of [b1, b2, w2])
        await lab.execOk(r1.ns!, ['ip', 'route', 'replace', `${t.ip}/32`, 'via', gw.ip, 'dev', 'eth0']);
      const before = await Promise.all([b1, b2, w2].map((c) => icmpIn(c.ns!)));
      for (const [t, src] of [
        [b1, spoofBlue],
        [b2, spoofBlue],
        [w2, spoofDefault],
      ] as const) {
        const p = await lab.exec(r1.ns!, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '1', '-I', src, t.ip]);
        expect(p.stdout, `${src} -> ${t.label}`).toMatch(/ 0 received/);
      }
      // The host's own red address, from a blue/default source: the reply would cross over.
      for (const src of [spoofBlue, spoofDefault]) {
        const p = await lab.exec(r1.ns!, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '1', '-I', src, gw.ip]);
        expect(p.stdout, `${src} -> ${gw.label}`).toMatch(/ 0 received/);
      }
      const after = await Promise.all([b1, b2, w2].map((c) => icmpIn(c.ns!)));
      expect(after).toEqual(before); // not one ICMP message (request or stray reply) arrived
      // And r1 still reaches its own network.
      expect((await lab.ping(r1.ns!, containers.find((c) => c.label === 'r2')!.ip, { count: 2 })).ok).toBe(true);
    }, 120_000);

    if (mode.name === 'fastdp')
      it('the kernel path carries the peers', async () => {
        const conns = await lab.weavetsJson<{ nickname: string; state: string; datapath: string }[]>(hosts[0]!, [
          'status',
          'connections',
        ]);
        expect(conns.filter((c) => c.state === 'established').map((c) => c.datapath)).toEqual(['fastdp', 'fastdp']);
      });

    if (mode.name === 'sleeve')
      it('every network still works when two hosts reach each other only through the third (relaying)', async () => {
        await lab.block(hosts[0]!, hosts[2]!);
        try {
          for (const n of ['r', 'b', 'w']) {
            const a = containers.find((c) => c.label === `${n}1`)!;
            const c = containers.find((x) => x.label === `${n}3`)!;
            await lab.waitFor(async () => (await lab.ping(a.ns!, c.ip, { count: 1, timeoutS: 1 })).ok, {
              what: `${a.label} to reach ${c.label} through h2`,
              timeoutMs: 45_000,
            });
            expect((await lab.ping(c.ns!, a.ip, { count: 3 })).received).toBe(3);
          }
          // Relayed or not, networks stay apart.
          const r1 = containers.find((c) => c.label === 'r1')!;
          expect(
            (await lab.ping(r1.ns!, containers.find((c) => c.label === 'b3')!.ip, { count: 2, timeoutS: 1 })).ok,
          ).toBe(false);
        } finally {
          await lab.unblock(hosts[0]!, hosts[2]!);
        }
      }, 120_000);

    if (mode.name === 'sleeve')
      it('an address follows its id: reserved after detach, back on another host, refused to others naming the holder, freed by --release', async () => {
        const [h1, h2] = [hosts[0]!, hosts[1]!];
        const m1 = await lab.addContainer(h1, 'm1');
        const m2 = await lab.addContainer(h2, 'm2');
        const other = await lab.addContainer(h2, 'other');
        const ip = await lab.attach(h1, m1, ['--network', 'red'], 'mover');
        // Held by another id, in use: refused, naming the holder.
        const taken = await lab.weavets(h2, [
          'attach',
          '--netns',
          other.netns,
          '--network',
          'red',
          '--ip',
          ip,
          'other',
        ]);
        expect(taken.code).not.toBe(0);
        expect(taken.stderr).toMatch(/in use by mover \(eth0\) on host/);
        await lab.weavetsOk(h1, ['detach', 'mover']);
        // Reserved for mover: still refused to another id, naming who it is kept for.
        const reserved = await lab.weavets(h2, [
          'attach',
          '--netns',
          other.netns,
          '--network',
          'red',
          '--ip',
          ip,
          'other',
        ]);
        expect(reserved.code).not.toBe(0);
        expect(reserved.stderr).toMatch(/reserved for mover \(eth0\)/);
        // The same id on another host: the same address, and it works there.
        expect(await lab.attach(h2, m2, ['--network', 'red'], 'mover')).toBe(ip);
        const r1 = containers.find((c) => c.label === 'r1')!;
        await lab.waitFor(async () => (await lab.ping(m2, r1.ip, { count: 1, timeoutS: 1 })).ok, {
          what: 'the moved container to reach r1',
          timeoutMs: 20_000,
        });
        expect((await lab.ping(r1.ns!, addressOf(ip), { count: 3 })).received).toBe(3);
        // detach --release: free at once, another id may have it.
        await lab.weavetsOk(h2, ['detach', '--release', 'mover']);
        expect(await lab.attach(h2, other, ['--network', 'red', '--ip', ip], 'other')).toBe(ip);
        await lab.weavetsOk(h2, ['detach', '--release', 'other']);
      }, 120_000);

    if (mode.name === 'sleeve')
      it('network rm is refused while endpoints exist (naming hosts and ids), then removes the network everywhere', async () => {
        const [h1, h3] = [hosts[0]!, hosts[2]!];
        await lab.weavetsOk(h1, ['network', 'create', 'tmp']);
        const t3 = await lab.addContainer(h3, 't3');
        await lab.attach(h3, t3, ['--network', 'tmp'], 'tmp-ctr');
        const refused = await lab.weavets(h1, ['network', 'rm', 'tmp']);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toMatch(/tmp-ctr \(\S+\) on host h3/);
        await lab.weavetsOk(h3, ['detach', 'tmp-ctr']); // a reservation does not keep the network
        const st = await lab.weavetsJson<RouterStatus>(h3, ['status']);
        const bridge = st.networks.find((n) => n.name === 'tmp')!.bridge;
        await lab.weavetsOk(h1, ['network', 'rm', 'tmp']);
        for (const h of hosts)
          expect((await lab.weavetsJson<NetworkInfo[]>(h, ['network', 'ls'])).map((n) => n.name)).not.toContain('tmp');
        await lab.waitFor(async () => (await lab.exec(h3, ['ip', 'link', 'show', bridge])).code !== 0, {
          what: `h3 to delete ${bridge}`,
          timeoutMs: 10_000,
        });
        const gone = await lab.weavets(h1, ['network', 'rm', 'tmp']);
        expect(gone.stderr).toMatch(/no network named tmp/);
      });

    it('names resolve only within the asker network; upstream works from every network', async () => {
      // The resolver attach wrote for each container (nsenter does not bind /etc/netns).
      const resolverOf = (c: Member): string =>
        /nameserver (\S+)/.exec(fs.readFileSync(`/etc/netns/${c.ns!.netnsName}/resolv.conf`, 'utf8'))![1]!;
      for (const src of containers) {
        for (const t of containers) {
          if (t === src) continue;
          const r = await lab.exec(
            src.ns!,
            ['dig', `@${resolverOf(src)}`, '+short', '+tries=1', '+time=3', `${t.label}.weavets.local`],
            { timeoutMs: 15_000 },
          );
          expect(r.code, r.stdout + r.stderr).toBe(0);
          const got = r.stdout.trim();
          if (t.network === src.network) expect(got, `${src.label} resolves ${t.label}`).toBe(t.ip);
          else expect(got, `${src.label} must not resolve ${t.label}`).toBe('');
        }
      }
      // Each container's resolver is its own network's host address, never a container's.
      const containerIps = new Set(containers.map((c) => c.ip));
      for (const c of containers) {
        const ns = resolverOf(c);
        expect(containerIps.has(ns), `${c.label} resolver ${ns}`).toBe(false);
        expect(hostAddrs.find((h) => h.host === c.host && h.network === c.network)!.ip).toBe(ns);
      }
      // Upstream (reachable from h1): forwarded from every network.
      for (const c of containers.filter((x) => x.host === hosts[0])) {
        const r = await lab.exec(c.ns!, ['dig', `@${resolverOf(c)}`, '+short', '+tries=1', '+time=4', 'example.com'], {
          timeoutMs: 15_000,
        });
        expect(r.stdout.trim(), `${c.label} upstream`).toBe('198.51.100.7');
      }
    }, 300_000);
  });
}
