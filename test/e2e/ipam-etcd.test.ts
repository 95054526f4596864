/**
 * IPAM against a real etcd started by the test, and the embedded store under kill -9.
 *
 *  1. Eight hosts (allocator instances with their own etcd clients, registrations and
 *     sweeps, in this process) allocate 2000 addresses concurrently with random
 *     releases and restarts: no address is ever held twice.
 *  2. A host that stops keeping its lease alive: its blocks come back after the TTL.
 *  3. The embedded store: kill -9 during allocation, restart, nothing lost or doubled.
 *  4. Real daemons in namespaces: discovery through etcd, distinct addresses, a range
 *     conflict refused, etcd stopped for 30 s while containers keep pinging and
 *     allocation fails fast then resumes, and rmpeer of a killed host.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterIpam } from '../../src/ipam/cluster';
import { FileStore } from '../../src/store/file';
import { EtcdStore } from '../../src/store/etcd';
import { BlockAllocator } from '../../src/ipam/allocator';
import { formatIpv4, parseCidr } from '../../src/net/ipv4';
import { ADDRS_PREFIX, BLOCKS_PREFIX, HANDLES_PREFIX } from '../../src/ipam/blocks';
import { silentLogger } from '../../src/log';
import type { IpamStatus } from '../../src/ipam/status';
import { ETCD_TOOLS, startEtcd, startEtcdIn, type EtcdServer } from './etcd';
import { describeWithTools } from '../require-tools';
import { createLab, type Host, type Lab, type Namespace } from '../net/harness';

const RANGE = parseCidr('10.32.0.0/12');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const describeEtcd = describeWithTools(ETCD_TOOLS);

function peerName(i: number): string {
  return `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`;
}

async function startHost(url: string, i: number, prefix: string, ttl: number): Promise<ClusterIpam> {
  return ClusterIpam.start({
    stateDir: '/nonexistent',
    etcd: { endpoints: [url] },
    name: peerName(i),
    nickname: `h${i}`,
    range: RANGE,
    port: 6783,
    advertiseAddress: `127.0.${prefix}.${i}`,
    leaseTtlSeconds: ttl,
    ownLinks: [],
    log: silentLogger,
  });
}

describeEtcd('IPAM on a real etcd (in-process hosts)', () => {
  let etcd: EtcdServer;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it('eight hosts, 2000 allocations with random releases and restarts: never a duplicate', async () => {
    const HOSTS = 8;
    const TOTAL = 2000;
    const WORKERS = 4;
    interface HostState {
      ipam: ClusterIpam;
      gate: Promise<void>;
      /** Set synchronously when a restart begins: a worker resuming from an old gate must wait. */
      restarting: boolean;
      inflight: number;
      held: { id: string; ip: number }[];
    }
    const hosts: HostState[] = [];
    for (let i = 1; i <= HOSTS; i++)
      hosts.push({
        ipam: await startHost(etcd.url, i, '1', 30),
        gate: Promise.resolve(),
        restarting: false,
        inflight: 0,
        held: [],
      });
    const holder = new Map<number, string>(); // ip -> id, what every host has been told
    const duplicates: string[] = [];
    let started = 0;
    let releases = 0;
    let restarts = 0;

    const restart = async (h: HostState, i: number): Promise<void> => {
      let open!: () => void;
      h.restarting = true;
      h.gate = new Promise<void>((r) => (open = r));
      while (h.inflight > 0) await sleep(5);
      await h.ipam.close(false);
      h.ipam = await startHost(etcd.url, i + 1, '1', 30);
      restarts++;
      h.restarting = false;
      open();
    };

    const worker = async (h: HostState, i: number, w: number): Promise<void> => {
      for (;;) {
        await h.gate;
        if (h.restarting) continue;
        if (started >= TOTAL) return;
        // Now and then a host restarts (same peer name) while the others keep allocating.
        if (w === 0 && (Math.random() < 0.012 || (restarts === 0 && started > TOTAL / 2))) await restart(h, i);
        const n = started++;
        h.inflight++;
        try {
          const id = `h${i}-c${n}`;
          const a = await h.ipam.allocator.allocate({ id, ifname: 'eth0', network: 'weavets' });
          const other = holder.get(a.ip);
          if (other !== undefined) duplicates.push(`${formatIpv4(a.ip)}: ${other} and ${id}`);
          holder.set(a.ip, id);
          h.held.push({ id, ip: a.ip });
          if (Math.random() < 0.3 && h.held.length > 0) {
            const [victim] = h.held.splice(Math.floor(Math.random() * h.held.length), 1);
            // Forget it first: from the moment the release commits, another host may take it.
            holder.delete(victim!.ip);
            await h.ipam.allocator.release(victim!.id, 'eth0');
            releases++;
          }
        } finally {
          h.inflight--;
        }
      }
    };
    const t0 = Date.now();
    await Promise.all(hosts.flatMap((h, i) => Array.from({ length: WORKERS }, (_, w) => worker(h, i, w))));
    const elapsed = Date.now() - t0;
    expect(duplicates).toEqual([]);
    expect(restarts).toBeGreaterThan(0);

    // The store agrees: one address per handle, one handle per address, and exactly what we hold.
    const store = new EtcdStore({ endpoints: [etcd.url], log: silentLogger });
    try {
      const addrs = (await store.list(ADDRS_PREFIX)).entries;
      const handles = (await store.list(HANDLES_PREFIX)).entries;
      const held = hosts.flatMap((h) => h.held);
      expect(addrs.length).toBe(held.length);
      expect(handles.length).toBe(held.length);
      const fromHandles = new Set(handles.map((h) => (JSON.parse(h.value) as { ip: string }).ip));
      expect(fromHandles.size).toBe(held.length);
      for (const h of held) expect(fromHandles.has(formatIpv4(h.ip))).toBe(true);
      // Blocks never overlap: one key per block, each owned by one host.
      const blocks = (await store.list(BLOCKS_PREFIX)).entries;
      expect(new Set(blocks.map((b) => b.key)).size).toBe(blocks.length);
    } finally {
      await store.close();
    }
    console.log(`2000 allocations, ${releases} releases, ${restarts} restarts on 8 hosts in ${elapsed} ms`);
    await Promise.all(hosts.map((h) => h.ipam.close(false)));
  }, 90_000);

  it('a host that stopped keeping its lease alive: its blocks come back after the TTL', async () => {
    const dead = await startHost(etcd.url, 20, '2', 2);
    const survivor = await startHost(etcd.url, 21, '2', 2);
    const a = await dead.allocator.allocate({ id: 'victim', ifname: 'eth0', network: 'ttltest' });
    const block = dead.status().networks.find((n) => n.network === 'ttltest')!.blocks[0]!.cidr;
    await dead.close(false); // no revoke: what kill -9 leaves behind
    const store = new EtcdStore({ endpoints: [etcd.url], log: silentLogger });
    try {
      const t0 = Date.now();
      for (;;) {
        const blocks = (await store.list(BLOCKS_PREFIX)).entries.filter(
          (e) => (JSON.parse(e.value) as { network?: string }).network === 'ttltest',
        );
        if (blocks.length === 0) break;
        if (Date.now() - t0 > 15_000) throw new Error(`block ${block} still held after 15 s`);
        await sleep(250);
      }
      // Not before the TTL: the registration had to expire first.
      expect(Date.now() - t0).toBeGreaterThan(1000);
      const again = await survivor.allocator.allocate({ id: 'newcomer', ifname: 'eth0', network: 'ttltest' });
      expect(again.ip).toBe(a.ip); // the lowest block is free again
      expect(survivor.status().networks.find((n) => n.network === 'ttltest')!.blocks[0]!.cidr).toBe(block);
    } finally {
      await store.close();
      await survivor.close(false);
    }
  }, 30_000);
});

describe('embedded store: kill -9 during allocation', () => {
  it('loses no durable allocation and doubles none', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-kill9-'));
    try {
      const worker = path.join(__dirname, 'fixtures', 'file-alloc-worker.ts');
      const printed = new Map<string, string>();
      for (const round of [0, 1]) {
        const child = spawn(
          process.execPath,
          ['--require', require.resolve('tsx/cjs'), worker, dir, peerName(1), `r${round}-`],
          {
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let buf = '';
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const exited = new Promise<void>((r) => child.on('exit', () => r()));
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (d: Buffer) => {
            buf += d.toString();
            const lines = buf.split('\n');
            buf = lines.pop()!;
            for (const l of lines) {
              const m = /^ALLOC (\S+) (\S+)$/.exec(l);
              if (m) printed.set(m[1]!, m[2]!);
            }
            if (printed.size >= 150 * (round + 1)) {
              child.kill('SIGKILL');
              resolve();
            }
          });
          child.on('exit', (code) => reject(new Error(`worker exited early (${code}): ${err}`)));
        });
        await exited;
      }
      const store = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
      try {
        const addrs = (await store.list(ADDRS_PREFIX)).entries;
        const byId = new Map<string, string>();
        for (const e of addrs) {
          const rec = JSON.parse(e.value) as { id: string };
          byId.set(rec.id, formatIpv4(parseInt(e.key.slice(-8), 16)));
        }
        for (const [id, ip] of printed) expect(byId.get(id), `allocation ${id} ${ip} lost`).toBe(ip);
        const handles = (await store.list(HANDLES_PREFIX)).entries;
        expect(handles.length).toBe(addrs.length); // every address has its handle, atomically
        // A restart on the same store keeps going without reusing anything.
        const alloc = await BlockAllocator.open({
          store,
          self: peerName(1),
          nickname: 'w',
          range: RANGE,
          log: silentLogger,
        });
        const taken = new Set(byId.values());
        for (let i = 0; i < 50; i++) {
          const a = await alloc.allocate({ id: `after${i}`, ifname: 'eth0', network: 'weavets' });
          expect(taken.has(formatIpv4(a.ip))).toBe(false);
          taken.add(formatIpv4(a.ip));
        }
      } finally {
        await store.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describeEtcd('IPAM with real daemons in namespaces', () => {
  let lab: Lab;
  let etcd: EtcdServer;
  let host1: Host;
  let host2: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';
  let etcdUrl = '';
  const ttl = 4;

  beforeAll(async () => {
    lab = await createLab();
    lab.requireCli();
    host1 = await lab.addHost('host1');
    host2 = await lab.addHost('host2');
    c1 = await lab.addContainer(host1, 'c1');
    c2 = await lab.addContainer(host2, 'c2');
    // etcd lives in host1's namespace, on its underlay address: every host reaches it.
    etcd = await startEtcdIn(lab, host1);
    etcdUrl = etcd.url;
    const common = ['--datapath', 'sleeve', '--etcd', etcdUrl, '--ipam-lease-ttl', String(ttl)];
    try {
      await lab.launch(host1, [], common);
      await lab.launch(host2, [], common); // no peer given: it finds host1 in etcd
      ip1 = await lab.attach(host1, c1);
      ip2 = await lab.attach(host2, c2);
    } catch (err) {
      lab.dumpLogs();
      throw err;
    }
  }, 120_000);

  afterAll(async () => {
    await lab?.destroy();
    await etcd?.destroy();
  });

  it('host2 finds host1 through etcd; containers get distinct addresses and ping', async () => {
    expect(ip1.split('/')[0]).not.toBe(ip2.split('/')[0]);
    await lab.waitFor(async () => (await lab.ping(c1, ip2.split('/')[0]!, { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to ping c2 across hosts that met through etcd',
      timeoutMs: 30_000,
    });
    const s = await lab.weavetsJson<IpamStatus>(host1, ['status', 'ipam']);
    expect(s.store.kind).toBe('etcd');
    expect(s.blockPrefix).toBe(26);
    expect(s.hosts.map((h) => h.nickname).sort()).toEqual(['host1', 'host2']);
    expect(s.networks[0]!.used).toBeGreaterThanOrEqual(1);
    const metrics = await lab.http(host1, '/metrics');
    expect(metrics.body).toMatch(/^weavets_ipam_addresses\{network="weavets",state="used"\} [1-9]/m);
  });

  it('a host launched with a conflicting range refuses to start, naming both', async () => {
    const host3 = await lab.addHost('host3');
    const r = await lab.weavets(
      host3,
      ['launch', '--nickname', 'host3', '--datapath', 'sleeve', '--etcd', etcdUrl, '--ipalloc-range', '10.99.0.0/16'],
      {
        timeoutMs: 45_000,
      },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr + lab.logTail(host3)).toMatch(/10\.99\.0\.0\/16.*10\.32\.0\.0\/12/);
  });

  it('etcd stopped for 30 s: ping never stops, allocation fails fast, then resumes', async () => {
    const target = ip2.split('/')[0]!;
    const c3 = await lab.addContainer(host1, 'c3');
    // 35 s of pings at 10/s, started before etcd goes away.
    const pinging = lab.ping(c1, target, { count: 350, intervalS: 0.1, timeoutS: 1 });
    await sleep(1000);
    await etcd.stop();
    const t0 = Date.now();
    const failed = await lab.weavets(host1, ['attach', '--netns', c3.netns, 'c3'], { timeoutMs: 30_000 });
    const took = Date.now() - t0;
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/store .*unavailable/);
    expect(took).toBeLessThan(8000);
    await sleep(Math.max(0, 30_000 - (Date.now() - t0)));
    await etcd.start();
    const ping = await pinging;
    expect(ping.received, ping.output.slice(-400)).toBe(ping.sent);
    const ip3 = await lab.waitFor(
      async () => {
        const r = await lab.weavets(host1, ['attach', '--netns', c3.netns, 'c3']);
        return r.code === 0 ? r.stdout.trim() : undefined;
      },
      { what: 'attach to work again once etcd is back', timeoutMs: 30_000, intervalMs: 1000 },
    );
    expect(ip3).toMatch(/^10\.\d+\.\d+\.\d+\/12$/);
    expect([ip1, ip2]).not.toContain(ip3);
  }, 90_000);

  it("rmpeer releases a killed host's blocks at once", async () => {
    const pid = lab.daemonPid(host2)!;
    process.kill(pid, 'SIGKILL');
    const out = await lab.weavetsOk(host1, ['rmpeer', 'host2', '--json']);
    const r = JSON.parse(out) as { blocks: string[]; addresses: number };
    expect(r.blocks.length).toBeGreaterThanOrEqual(1);
    expect(r.addresses).toBeGreaterThanOrEqual(1);
    // c2's address is free for anyone now, e.g. a container that moved to host1.
    const c4 = await lab.addContainer(host1, 'c4');
    expect(await lab.attach(host1, c4, ['--ip', ip2])).toBe(ip2);
  });
});
