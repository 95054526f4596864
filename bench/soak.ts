/**
 * Does a daemon's memory stay flat under traffic and container churn?
 *
 *   npx tsx bench/soak.ts [--minutes 30] [--sample-seconds 60] [--warmup-minutes 5] [--rate 200M]
 *
 * Three hosts in a lab (sleeve, encrypted), launched pointing at the first. Traffic the
 * whole time: iperf3 from a container on host1 to one on host2 (capped at --rate, so a
 * shared machine keeps breathing) and a ping every 10 ms from host3's container to
 * host1's. Churn the whole time, on every host in turn: four containers attached (with a
 * DNS name, a fresh id per cycle) and detached again.
 *
 * Every --sample-seconds each daemon's resident memory (VmRSS, RssAnon) and V8 heap in
 * use (weavets_nodejs_heap_size_used_bytes from its /metrics) are sampled. The table
 * shows every sample; the verdict compares the last sample with the first one after
 * --warmup-minutes (default: a sixth of the run, at least one sample in).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, sleep, type Host, type Lab, type Namespace } from '../test/net/harness';
import { clientFor } from '../src/cli/context';

interface Sample {
  minute: number;
  rssMb: number[];
  anonMb: number[];
  heapMb: number[];
  attachCycles: number;
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function heapUsedMb(h: Host): Promise<number> {
  const res = await clientFor(h.stateDir, 10_000).raw('GET', '/metrics');
  const m = /^weavets_nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+]+)$/m.exec(res.body);
  return m ? Number(m[1]) / 2 ** 20 : NaN;
}

function loadAverage(): string {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function parseArgs(argv: string[]): {
  minutes: number;
  sampleSeconds: number;
  warmupMinutes: number | undefined;
  rate: string;
} {
  let minutes = 30;
  let sampleSeconds = 60;
  let warmupMinutes: number | undefined;
  let rate = '200M';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (a === '--minutes') minutes = Number(v);
    else if (a === '--sample-seconds') sampleSeconds = Number(v);
    else if (a === '--warmup-minutes') warmupMinutes = Number(v);
    else if (a === '--rate') rate = v ?? '';
    else
      throw new Error(
        `unknown argument ${a}; usage: soak.ts [--minutes 30] [--sample-seconds 60] [--warmup-minutes N] [--rate 200M]`,
      );
  }
  if (!Number.isFinite(minutes) || minutes <= 0) throw new Error('--minutes wants a number > 0');
  if (!Number.isFinite(sampleSeconds) || sampleSeconds < 5) throw new Error('--sample-seconds wants a number >= 5');
  if (warmupMinutes !== undefined && !(warmupMinutes >= 0 && warmupMinutes < minutes))
    throw new Error('--warmup-minutes wants 0 <= N < --minutes');
  if (!/^\d+[KMG]?$/.test(rate)) throw new Error('--rate wants an iperf3 bandwidth such as 200M');
  return { minutes, sampleSeconds, warmupMinutes, rate };
}

async function main(): Promise<void> {
  const { minutes, sampleSeconds, warmupMinutes, rate } = parseArgs(process.argv.slice(2));
  const lab: Lab = await createLab();
  const children: import('node:child_process').ChildProcess[] = [];
  let stop = false;
  try {
    lab.requireCli();
    const password = path.join(lab.dir, 'password');
    fs.writeFileSync(password, 'soak password, long and random enough\n', { mode: 0o600 });
    const args = ['--datapath', 'sleeve', '--password-file', password];
    const hosts = [await lab.addHost('host1'), await lab.addHost('host2'), await lab.addHost('host3')];
    await lab.launch(hosts[0]!, [], args);
    for (const h of hosts.slice(1)) await lab.launch(h, [hosts[0]!.ip], args);
    const c = [
      await lab.addContainer(hosts[0]!, 'c1'),
      await lab.addContainer(hosts[1]!, 'c2'),
      await lab.addContainer(hosts[2]!, 'c3'),
    ];
    const ips: string[] = [];
    for (const [i, h] of hosts.entries()) ips.push((await lab.attach(h, c[i]!)).split('/')[0]!);
    for (const target of [ips[1]!, ips[0]!]) {
      const from = target === ips[1] ? c[0]! : c[2]!;
      await lab.waitFor(async () => (await lab.ping(from, target, { count: 1, timeoutS: 1 })).ok, {
        what: `${target} to answer`,
        timeoutMs: 30_000,
      });
    }
    const seconds = Math.ceil(minutes * 60) + 30;
    const server = lab.spawnIn(c[1]!, ['iperf3', '-s', '-p', '5201']);
    children.push(server);
    await lab.waitFor(async () => (await lab.exec(c[1]!, ['ss', '-Hltn', 'sport = :5201'])).stdout.includes('5201'), {
      what: 'iperf3 server to listen',
      timeoutMs: 10_000,
    });
    children.push(lab.spawnIn(c[0]!, ['iperf3', '-c', ips[1]!, '-p', '5201', '-t', String(seconds), '-b', rate]));
    children.push(lab.spawnIn(c[2]!, ['ping', '-q', '-i', '0.01', '-w', String(seconds), ips[0]!]));

    // Churn: per host, four namespaces attached under fresh ids and names, then detached.
    const pools: Namespace[][] = [];
    for (const [i, h] of hosts.entries()) {
      const pool: Namespace[] = [];
      for (let k = 0; k < 4; k++) pool.push(await lab.addContainer(h, `k${i + 1}${k}`));
      pools.push(pool);
    }
    let cycles = 0;
    let churnError: Error | undefined;
    const churn = (async () => {
      while (!stop) {
        for (const [i, h] of hosts.entries()) {
          if (stop) break;
          const ids = pools[i]!.map((_, k) => `churn-${i + 1}-${cycles}-${k}`);
          for (const [k, ns] of pools[i]!.entries()) await lab.attach(h, ns, ['--name', ids[k]!], ids[k]);
          for (const id of ids) await lab.weavetsOk(h, ['detach', id]);
        }
        cycles++;
      }
    })().catch((err: unknown) => {
      churnError = err as Error;
    });

    const pids = hosts.map((h) => {
      const pid = lab.daemonPid(h);
      if (pid === undefined) throw new Error(`no daemon pid for ${h.name}`);
      return pid;
    });
    const samples: Sample[] = [];
    const t0 = Date.now();
    const end = t0 + minutes * 60_000;
    for (;;) {
      const heap = await Promise.all(hosts.map((h) => heapUsedMb(h).catch(() => NaN)));
      samples.push({
        minute: (Date.now() - t0) / 60_000,
        rssMb: pids.map((p) => statusKb(p, 'VmRSS') / 1024),
        anonMb: pids.map((p) => statusKb(p, 'RssAnon') / 1024),
        heapMb: heap,
        attachCycles: cycles,
      });
      const s = samples[samples.length - 1]!;
      process.stderr.write(
        `t=${s.minute.toFixed(1)} min rss ${s.rssMb.map((v) => v.toFixed(1)).join('/')} heap ${s.heapMb.map((v) => v.toFixed(1)).join('/')} cycles ${cycles}\n`,
      );
      if (churnError) throw churnError;
      if (Date.now() >= end) break;
      await sleep(Math.min(sampleSeconds * 1000, Math.max(0, end - Date.now())));
    }
    stop = true;
    await churn;

    const warm = warmupMinutes ?? minutes / 6;
    const base = samples.find((s) => s.minute >= warm) ?? samples[Math.min(1, samples.length - 1)]!;
    const last = samples[samples.length - 1]!;
    const fmt = (v: number[]): string => v.map((x) => x.toFixed(1)).join(' / ');
    const lines = [
      `soak: ${minutes} min, 3 hosts (sleeve, encrypted), iperf3 -b ${rate} host1->host2, ping 100/s host3->host1, ` +
        `churn of 4 attach+detach per host per cycle; ${new Date().toISOString()}, load average ${loadAverage()}`,
      '',
      '| minute | RSS MB host1 / host2 / host3 | anonymous MB | V8 heap used MB | churn cycles so far |',
      '|---:|---:|---:|---:|---:|',
      ...samples.map(
        (s) => `| ${s.minute.toFixed(1)} | ${fmt(s.rssMb)} | ${fmt(s.anonMb)} | ${fmt(s.heapMb)} | ${s.attachCycles} |`,
      ),
      '',
      `after warm-up (minute ${base.minute.toFixed(1)} -> ${last.minute.toFixed(1)}): RSS ${last.rssMb
        .map((v, i) => `${v - base.rssMb[i]! >= 0 ? '+' : ''}${(v - base.rssMb[i]!).toFixed(1)}`)
        .join(
          ' / ',
        )} MB, heap ${last.heapMb.map((v, i) => `${v - base.heapMb[i]! >= 0 ? '+' : ''}${(v - base.heapMb[i]!).toFixed(1)}`).join(' / ')} MB`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    stop = true;
    for (const child of children) child.kill('SIGKILL');
    await lab.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
