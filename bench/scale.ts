/**
 * How the mesh scales: real daemons in lab namespaces, and the topology code on a
 * simulated graph. Prints markdown tables with the load average.
 *
 *   npx tsx bench/scale.ts [--sizes 5,15,25] [--simulated 1000] [--degree 6] [--idle-seconds 10]
 *
 * Real hosts, per size N (a fresh lab each): N hosts, the first launched alone, each
 * other one launched pointing at the first, one after the other. Measured:
 *   - convergence: time from the last launch returning until every host's
 *     /status/peers lists all N with a route (target: 5 s);
 *   - idle resident memory per daemon (VmRSS, and its anonymous part) after the mesh has
 *     settled (target: 60 MB);
 *   - idle CPU per daemon (utime + stime over the idle window);
 *   - control traffic per host per second over the idle window: bytes sent on the host's
 *     underlay interface with no workload (gossip, connection keepalives, sleeve
 *     heartbeats).
 *
 * Simulated: a random connected graph of --simulated peers with --degree established
 * connections each, fed to src/router/topology.ts as gossip; the time to merge every
 * entry, and then to compute every root's routes (unicast next hop and broadcast
 * children for all peers: what a fully loaded mesh asks), target < 50 ms. The
 * reference measured in the same run is one BFS over the same graph, the unit of work
 * a route computation costs.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createLab, sleep, type Host, type Lab } from '../test/net/harness';
import { clientFor } from '../src/cli/context';
import type { PeerStatus } from '../src/router/status';
import { Topology, type PeerEntry } from '../src/router/topology';
import type { PeerName } from '../src/net/peername';

function loadAverage(): string {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const CLK_TCK = 100;
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

async function txBytes(lab: Lab, h: Host): Promise<number> {
  // Through netlink: nsenter --net leaves /sys showing another namespace's devices.
  const out = (await lab.execOk(h, ['ip', '-j', '-s', 'link', 'show', 'dev', 'eth0'])).stdout;
  const link = (JSON.parse(out) as { stats64?: { tx?: { bytes?: number } } }[])[0];
  const bytes = link?.stats64?.tx?.bytes;
  if (typeof bytes !== 'number') throw new Error(`no tx byte count for ${h.name}'s eth0: ${out.slice(0, 200)}`);
  return bytes;
}

interface RealResult {
  hosts: number;
  launchSeconds: number;
  convergeSeconds: number | undefined;
  rssMbMedian: number;
  rssMbMax: number;
  anonMbMedian: number;
  cpuPctMedian: number;
  controlBytesPerHostPerSec: number;
}

/** Every host lists all n peers with a route; returns how many hosts do. */
async function hostsConverged(hosts: Host[]): Promise<number> {
  const n = hosts.length;
  const ok = await Promise.all(
    hosts.map(async (h) => {
      try {
        const peers = await clientFor(h.stateDir, 5_000).get<PeerStatus[]>('/status/peers');
        return peers.length === n && peers.every((p) => p.via !== '');
      } catch {
        return false;
      }
    }),
  );
  return ok.filter(Boolean).length;
}

async function measureReal(n: number, idleSeconds: number): Promise<RealResult> {
  const lab = await createLab();
  try {
    lab.requireCli();
    const hosts: Host[] = [];
    for (let i = 0; i < n; i++) hosts.push(await lab.addHost(`h${i + 1}`));
    const t0 = Date.now();
    await lab.launch(hosts[0]!, [], ['--datapath', 'sleeve']);
    for (const h of hosts.slice(1)) await lab.launch(h, [hosts[0]!.ip], ['--datapath', 'sleeve']);
    const lastLaunch = Date.now();
    process.stderr.write(
      `  ${n} hosts launched in ${((lastLaunch - t0) / 1000).toFixed(1)} s; waiting for the mesh ...\n`,
    );
    let convergeSeconds: number | undefined;
    const deadline = lastLaunch + 120_000;
    let got = 0;
    while (Date.now() < deadline) {
      got = await hostsConverged(hosts);
      if (got === n) {
        convergeSeconds = (Date.now() - lastLaunch) / 1000;
        break;
      }
      await sleep(100);
    }
    if (convergeSeconds === undefined) process.stderr.write(`  only ${got}/${n} hosts knew everyone after 120 s\n`);
    // Settle, then the idle window.
    await sleep(5_000);
    const pids = hosts.map((h) => {
      const pid = lab.daemonPid(h);
      if (pid === undefined) throw new Error(`no daemon pid for ${h.name}`);
      return pid;
    });
    const cpu0 = pids.map(cpuSeconds);
    const tx0 = await Promise.all(hosts.map((h) => txBytes(lab, h)));
    const w0 = Date.now();
    await sleep(idleSeconds * 1000);
    const tx1 = await Promise.all(hosts.map((h) => txBytes(lab, h)));
    const secs = (Date.now() - w0) / 1000;
    const cpu1 = pids.map(cpuSeconds);
    const rss = pids.map((p) => statusKb(p, 'VmRSS') / 1024);
    const anon = pids.map((p) => statusKb(p, 'RssAnon') / 1024);
    return {
      hosts: n,
      launchSeconds: (lastLaunch - t0) / 1000,
      convergeSeconds,
      rssMbMedian: median(rss),
      rssMbMax: Math.max(...rss),
      anonMbMedian: median(anon),
      cpuPctMedian: median(cpu1.map((c, i) => ((c - cpu0[i]!) / secs) * 100)),
      controlBytesPerHostPerSec: median(tx1.map((b, i) => (b - tx0[i]!) / secs)),
    };
  } finally {
    await lab.destroy();
  }
}

/** A deterministic pseudo-random generator (xorshift32), so runs compare. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** A connected random graph: a ring (connected) plus random chords up to ~degree per peer. */
function simulatedEntries(n: number, degree: number): PeerEntry[] {
  const rand = rng(0x5eed);
  const names: PeerName[] = [];
  for (let i = 0; i < n; i++) names.push(0x0200_0000_0000 + i * 7919);
  const adj = names.map(() => new Set<number>());
  const link = (a: number, b: number): void => {
    if (a === b) return;
    adj[a]!.add(b);
    adj[b]!.add(a);
  };
  for (let i = 0; i < n; i++) link(i, (i + 1) % n);
  for (let i = 0; i < n; i++) {
    while (adj[i]!.size < degree) link(i, Math.floor(rand() * n));
  }
  return names.map((name, i) => ({
    name,
    nickname: `sim${i}`,
    uid: BigInt(i + 1),
    version: 1,
    connections: [...adj[i]!].map((j) => ({
      peer: names[j]!,
      address: `192.0.2.1:${6783}`,
      outbound: i < j,
      established: true,
    })),
  }));
}

interface SimResult {
  peers: number;
  edges: number;
  mergeMs: number;
  allRoutesMs: number;
  firstRouteMs: number;
  bfsMs: number;
}

function measureSimulated(n: number, degree: number): SimResult {
  const entries = simulatedEntries(n, degree);
  const self = entries[0]!;
  const runs: SimResult[] = [];
  for (let round = 0; round < 5; round++) {
    const topo = new Topology({ name: self.name, nickname: self.nickname, uid: self.uid });
    const t0 = performance.now();
    topo.setLocalConnections(self.connections);
    topo.merge(entries.slice(1));
    const t1 = performance.now();
    topo.unicastNextHop(entries[n - 1]!.name);
    const t2 = performance.now();
    for (const e of entries) {
      topo.unicastNextHop(e.name);
      topo.broadcastNextHops(e.name);
    }
    const t3 = performance.now();
    // Reference: one plain BFS over the same adjacency (arrays of indices).
    const index = new Map(entries.map((e, i) => [e.name, i]));
    const adj = entries.map((e) => e.connections.map((c) => index.get(c.peer)!));
    const b0 = performance.now();
    const dist = new Int32Array(n).fill(-1);
    const queue = new Int32Array(n);
    let head = 0;
    let tail = 0;
    dist[0] = 0;
    queue[tail++] = 0;
    while (head < tail) {
      const u = queue[head++]!;
      for (const v of adj[u]!) {
        if (dist[v]! >= 0) continue;
        dist[v] = dist[u]! + 1;
        queue[tail++] = v;
      }
    }
    const b1 = performance.now();
    runs.push({
      peers: n,
      edges: entries.reduce((a, e) => a + e.connections.length, 0) / 2,
      mergeMs: t1 - t0,
      firstRouteMs: t2 - t1,
      allRoutesMs: t3 - t2 + (t2 - t1),
      bfsMs: b1 - b0,
    });
  }
  // The median round (the first ones include JIT warm-up).
  const pick = (k: keyof SimResult): number => median(runs.map((r) => r[k]));
  return {
    peers: n,
    edges: runs[0]!.edges,
    mergeMs: pick('mergeMs'),
    firstRouteMs: pick('firstRouteMs'),
    allRoutesMs: pick('allRoutesMs'),
    bfsMs: pick('bfsMs'),
  };
}

function parseArgs(argv: string[]): { sizes: number[]; simulated: number; degree: number; idleSeconds: number } {
  let sizes = [5, 15, 25];
  let simulated = 1000;
  let degree = 6;
  let idleSeconds = 10;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (a === '--sizes') sizes = (v ?? '').split(',').filter(Boolean).map(Number);
    else if (a === '--simulated') simulated = Number(v);
    else if (a === '--degree') degree = Number(v);
    else if (a === '--idle-seconds') idleSeconds = Number(v);
    else
      throw new Error(
        `unknown argument ${a}; usage: scale.ts [--sizes 5,15,25] [--simulated 1000] [--degree 6] [--idle-seconds 10]`,
      );
  }
  if (sizes.some((s) => !Number.isInteger(s) || s < 2 || s > 60))
    throw new Error('--sizes wants whole numbers in 2..60 (0 sizes: --sizes "")');
  if (!Number.isInteger(simulated) || simulated < 2) throw new Error('--simulated wants a whole number >= 2');
  if (!Number.isInteger(degree) || degree < 1 || degree >= simulated)
    throw new Error('--degree wants a whole number in 1..simulated-1');
  if (!Number.isFinite(idleSeconds) || idleSeconds < 1) throw new Error('--idle-seconds wants a number >= 1');
  return { sizes, simulated, degree, idleSeconds };
}

async function main(): Promise<void> {
  const { sizes, simulated, degree, idleSeconds } = parseArgs(process.argv.slice(2));
  const sim = measureSimulated(simulated, degree);
  const lines = [
    `simulated topology: ${new Date().toISOString()}, load average ${loadAverage()}`,
    '',
    "| peers | edges | merge all entries ms | first route ms | every root's routes ms (target < 50) | one BFS ms (reference) | routes / BFS |",
    '|---:|---:|---:|---:|---:|---:|---:|',
    `| ${sim.peers} | ${sim.edges} | ${sim.mergeMs.toFixed(2)} | ${sim.firstRouteMs.toFixed(2)} | ${sim.allRoutesMs.toFixed(2)} | ${sim.bfsMs.toFixed(3)} | ${(sim.allRoutesMs / sim.bfsMs).toFixed(0)}x |`,
  ];
  process.stdout.write(`${lines.join('\n')}\n\n`);
  const real: RealResult[] = [];
  for (const n of sizes) {
    process.stderr.write(`real mesh of ${n} hosts ...\n`);
    real.push(await measureReal(n, idleSeconds));
  }
  if (real.length === 0) return;
  const out = [
    `real hosts (sleeve, each launched pointing at the first): ${new Date().toISOString()}, load average ${loadAverage()}; ` +
      `reference: a bare \`node -e 0\` is ${(bareNodeRssKb() / 1024).toFixed(1)} MB resident`,
    '',
    '| hosts | launching all s | every host knows all, s after last launch (target 5) | idle RSS MB median / max (target 60) | of which anonymous MB | idle CPU % per daemon | control bytes/s per host |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...real.map(
      (r) =>
        `| ${r.hosts} | ${r.launchSeconds.toFixed(1)} | ${r.convergeSeconds === undefined ? 'not in 120 s' : r.convergeSeconds.toFixed(1)} | ` +
        `${r.rssMbMedian.toFixed(1)} / ${r.rssMbMax.toFixed(1)} | ${r.anonMbMedian.toFixed(1)} | ${r.cpuPctMedian.toFixed(2)} | ${r.controlBytesPerHostPerSec.toFixed(0)} |`,
    ),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

/** VmRSS of a node process that does nothing: the floor every daemon sits on. */
function bareNodeRssKb(): number {
  const out = execFileSync(
    process.execPath,
    ['-e', "setTimeout(()=>process.stdout.write(require('fs').readFileSync('/proc/self/status','utf8')),100)"],
    {
      encoding: 'utf8',
    },
  );
  const m = /^VmRSS:\s+(\d+) kB/m.exec(out);
  return m ? Number(m[1]) : NaN;
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
