/**
 * Policy at scale, with its references measured in the same run:
 *  1. Time from `policy apply` (POST /policy/apply on host 1, the CLI's request) to
 *     enforcement on every host of 8 (each host's /policy/status reports the new
 *     generation in force, i.e. its `nft -f` has returned), with 1,000 rules over 2,000
 *     endpoints. The endpoints are 8 real containers (one per host) plus 1,992 published
 *     in the store as if by other hosts, labelled over 50 apps. Target: under 1 s. Twice
 *     per round: the whole set applied over none (every host creates its stateful table),
 *     and then, with the set in force, one policy changed (a port added to the policy
 *     selecting the iperf3 server: the incremental apply touches one chain on the hosts
 *     it concerns and nothing elsewhere).
 *  2. TCP throughput (iperf3) and ping RTT between two containers on two of those hosts,
 *     with the 1,000 rules in force (the server isolated, the client allowed; the client
 *     is isolated too, for ingress, by the policy selecting its app) against the same path
 *     with no policy, in interleaved rounds (the order flips every round). Every round is
 *     printed with its own ratio rules/none, and the result is the median of those paired
 *     ratios, so one noisy round cannot decide it. Target: at least 95%.
 *     With --split, each round also measures, between those two:
 *       - nfcall: no policy, but the two hosts' bridges with nf_call_iptables on;
 *       - isolation: both ends isolated by two policies with one rule between them (the
 *         bench path) and nothing else, so the stateful table and conntrack are in force
 *         but the sets are tiny.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiClient } from '../src/api/client';
import type { ApplyResult as PolicyApplyResult } from '../src/policy/book';
import type { EnforceTimes, PolicyStatus } from '../src/policy/service';
import { createLab, REPO_ROOT, sleep, type Host, type Lab, type Namespace } from '../test/net/harness';
import { startEtcdIn, type EtcdServer } from '../test/e2e/etcd';

const APPS = 50;
const IPERF_PORT = 5201;

const USAGE = `npx tsx bench/policy.ts [options]   (wrap in: flock /work/notes/bench.lock ...)
  --hosts N        hosts (default 8)
  --endpoints N    endpoints in the store, real containers included (default 2000)
  --rules N        rules, in policies of 10, plus the bench path's (default 1000)
  --time S         seconds per iperf3 run (default 5)
  --rounds N       interleaved rounds (default 7); the ratio is the median of the rounds' own
  --split          also measure nf_call_iptables alone and isolation with one rule, per round
  --datapath D     auto | fastdp | sleeve (default auto)
Faster while iterating: --hosts 2 --endpoints 200 --rules 100 --time 3 --rounds 5`;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function api(h: Host): ApiClient {
  return new ApiClient(path.join(h.stateDir, 'weavets.sock'), { timeoutMs: 30_000 });
}

/** Per-host enforcement times as reported by /policy/status, medians, with the modes seen. */
function times(ws: EnforceTimes[]): string {
  const m = (f: (w: EnforceTimes) => number): string => median(ws.map(f)).toFixed(0);
  const modes = [...new Set(ws.map((w) => w.mode))].join('/');
  return `${m((w) => w.compile)} ms / ${m((w) => w.apply)} ms (${m((w) => w.nft)} ms, ${m((w) => w.bridges)} ms), ${modes}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** `rules` rules in policies of 10: policy i selects app a(i mod 50), rule k allows a(i+k) on tcp/1000+k. */
function policies(rules: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i * 10 < rules; i++) {
    const n = Math.min(10, rules - i * 10);
    out.push({
      name: `p${i}`,
      selector: { app: `a${i % APPS}` },
      ingress: Array.from({ length: n }, (_, k) => ({
        from: [{ selector: { app: `a${(i + k + 1) % APPS}` } }],
        ports: [{ protocol: 'tcp', port: 1000 + k }],
      })),
    });
  }
  // The measured path: the iperf3 server (a0) takes iperf3 and ping from the client (a1).
  out.push({
    name: 'bench-path',
    selector: { app: 'a0' },
    ingress: [
      { from: [{ selector: { app: 'a1' } }], ports: [{ protocol: 'tcp', port: IPERF_PORT }, { protocol: 'icmp' }] },
    ],
  });
  return out;
}

/** Isolation and nothing more: the bench path's policy, and the client isolated with no rule of its own. */
function isolationPolicies(docs: Record<string, unknown>[]): Record<string, unknown>[] {
  return [docs.find((d) => d.name === 'bench-path')!, { name: 'bench-client', selector: { app: 'a1' }, ingress: [] }];
}

type Kind = 'none' | 'nfcall' | 'isolation' | 'rules';

/** Median of each round's own ratio kind/none, with every round's, as printed. */
function pairedRatios(gbps: Map<Kind, number[]>, kind: Kind): { median: number; each: number[] } {
  const none = gbps.get('none')!;
  const each = gbps.get(kind)!.map((g, i) => g / none[i]!);
  return { median: median(each), each };
}

/** The set with one policy changed: bench-path gains a port (a new one each round). */
function changedPolicy(docs: Record<string, unknown>[], round: number): Record<string, unknown>[] {
  return docs.map((d) =>
    d.name === 'bench-path'
      ? {
          ...d,
          ingress: [
            ...(d.ingress as unknown[]),
            { from: [{ selector: { app: 'a2' } }], ports: [{ protocol: 'tcp', port: 9000 + round }] },
          ],
        }
      : d,
  );
}

/** Publish `count` endpoints in the store as other hosts would (a node script in h1's namespace). */
async function publishFakeEndpoints(lab: Lab, h1: Host, etcdUrl: string, count: number): Promise<void> {
  const script = `
const { Etcd3 } = require(${JSON.stringify(path.join(REPO_ROOT, 'node_modules', 'etcd3'))});
const c = new Etcd3({ hosts: ${JSON.stringify(etcdUrl)} });
(async () => {
  const n = ${count};
  for (let start = 0; start < n; start += 100) {
    const ops = [];
    for (let i = start; i < Math.min(n, start + 100); i++) {
      const peer = 'fa:ke:00:00:00:' + String(i % 64).padStart(2, '0');
      const ip = '10.40.' + Math.floor(i / 250) + '.' + (i % 250 + 2);
      const ep = { id: 'fake' + i, network: 'weavets', ip, labels: { app: 'a' + (i % ${APPS}), tier: 't' + (i % 7) }, host: peer, hostNickname: 'fake' + (i % 64) };
      ops.push(c.put('/weavets/policy/endpoints/' + peer + '/fake' + i).value(JSON.stringify(ep)));
    }
    await Promise.all(ops);
  }
  c.close();
})().catch((e) => { console.error(e); process.exit(1); });
`;
  const file = path.join(lab.dir, 'fake-endpoints.js');
  fs.writeFileSync(file, script);
  await lab.execOk(h1, [process.execPath, file], { timeoutMs: 120_000 });
}

async function iperf(
  lab: Lab,
  client: Namespace,
  server: Namespace,
  serverIp: string,
  seconds: number,
): Promise<number> {
  const srv = lab.spawnIn(server, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)]);
  try {
    await lab.waitFor(
      async () =>
        (await lab.exec(server, ['ss', '-Hltn', `sport = :${IPERF_PORT}`])).stdout.includes(String(IPERF_PORT)),
      {
        what: 'iperf3 server',
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
    const r = await lab.exec(
      client,
      ['iperf3', '-c', serverIp, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'],
      { timeoutMs: (seconds + 30) * 1000 },
    );
    const out = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second: number } }; error?: string };
    if (!out.end?.sum_received) throw new Error(`iperf3: ${out.error ?? 'no result'}`);
    return out.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill('SIGKILL');
  }
}

/** CPU seconds the hosts' daemons have used so far (utime + stime, from /proc). */
function daemonCpuSeconds(lab: Lab, hosts: readonly Host[]): number {
  let ticks = 0;
  for (const h of hosts) {
    const pid = lab.daemonPid(h);
    if (pid === undefined) continue;
    try {
      // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      /* gone */
    }
  }
  return ticks / 100;
}

/** The daemons' CPU over `ms`, in cores. */
async function daemonLoad(lab: Lab, hosts: readonly Host[], ms: number): Promise<number> {
  const before = daemonCpuSeconds(lab, hosts);
  await sleep(ms);
  return (daemonCpuSeconds(lab, hosts) - before) / (ms / 1000);
}

/**
 * Before each measurement, whatever came before it (an apply on 8 hosts, a removal) must
 * be over: wait until the daemons together use no more than a tenth of a core above
 * their idle use (measured before the rounds) over half a second, at most 15 s, so
 * neither kind is measured against the other's aftermath.
 */
async function settle(lab: Lab, hosts: readonly Host[], idle: number): Promise<void> {
  const until = performance.now() + 15_000;
  while (performance.now() < until) if ((await daemonLoad(lab, hosts, 500)) <= idle + 0.1) return;
}

async function main(): Promise<void> {
  const hostCount = Number(arg('hosts', '8'));
  const endpointCount = Number(arg('endpoints', '2000'));
  const ruleCount = Number(arg('rules', '1000'));
  const seconds = Number(arg('time', '5'));
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const rounds = Number(arg('rounds', '7'));
  const split = process.argv.includes('--split');
  const datapath = arg('datapath', 'auto');
  const lab = await createLab();
  let etcd: EtcdServer | undefined;
  try {
    lab.requireCli();
    const hosts: Host[] = [];
    for (let i = 1; i <= hostCount; i++) hosts.push(await lab.addHost(`h${i}`));
    const h1 = hosts[0]!;
    etcd = await startEtcdIn(lab, h1);
    const common = ['--datapath', datapath, '--etcd', etcd.url, '--docker-plugin-socket', '', '--no-dns'];
    for (const h of hosts) await lab.launch(h, h === h1 ? [] : [h1.ip], common);
    process.stderr.write(`${hostCount} hosts up\n`);
    // One real container per host; the first two are the measured path (a0 server, a1 client).
    const ctrs: Namespace[] = [];
    const ips: string[] = [];
    for (const [i, h] of hosts.entries()) {
      const c = await lab.addContainer(h, `c${i + 1}`);
      ctrs.push(c);
      ips.push((await lab.attach(h, c, ['--label', `app=a${i % APPS}`])).split('/')[0]!);
    }
    const [client, server] = [ctrs[1]!, ctrs[0]!];
    const serverIp = ips[0]!;
    await lab.waitFor(async () => (await lab.ping(client, serverIp, { count: 1, timeoutS: 1 })).ok, {
      what: 'the measured path',
      timeoutMs: 60_000,
    });
    // The path measured is the one named: with `auto`, fastdp once h2 uses it towards h1
    // (a round measured over sleeve before the switch would be another path).
    const want = datapath === 'auto' ? 'fastdp' : datapath;
    await lab.waitFor(
      async () =>
        (
          await lab.weavetsJson<{ nickname: string; state: string; datapath: string }[]>(hosts[1]!, [
            'status',
            'connections',
          ])
        ).some((x) => x.nickname === h1.name && x.state === 'established' && x.datapath === want),
      { what: `h2 -> h1 over ${want}`, timeoutMs: 60_000 },
    );
    await publishFakeEndpoints(lab, h1, etcd.url, endpointCount - hostCount);
    await lab.waitFor(async () => (await api(h1).get<PolicyStatus>('/policy/status')).endpoints >= endpointCount, {
      what: 'every endpoint known',
      timeoutMs: 60_000,
    });
    process.stderr.write(`${endpointCount} endpoints known\n`);

    const docs = policies(ruleCount);
    const work: EnforceTimes[] = [];
    const changeWork: EnforceTimes[] = [];
    const storedMs: number[] = [];
    const apply = async (
      documents: unknown[],
      sink: EnforceTimes[],
    ): Promise<{ ms: number; perHost: number[]; stored: number }> => {
      const t0 = performance.now();
      const res = await api(h1).post<PolicyApplyResult>('/policy/apply', { documents });
      const stored = performance.now() - t0;
      const done = new Array<number>(hosts.length).fill(0);
      await lab.waitFor(
        async () => {
          await Promise.all(
            hosts.map(async (h, i) => {
              if (done[i]) return;
              const s = await api(h).get<PolicyStatus>('/policy/status');
              if (s.error) throw new Error(`${h.name}: ${s.error}`);
              if (s.enforcedGeneration >= res.generation) {
                done[i] = performance.now() - t0;
                if (s.lastEnforceMs) sink.push(s.lastEnforceMs);
              }
            }),
          );
          return done.every((d) => d > 0);
        },
        { what: 'every host to enforce', timeoutMs: 120_000, intervalMs: 10 },
      );
      return { ms: performance.now() - t0, perHost: done, stored };
    };
    const removeAll = async (documents: Record<string, unknown>[]): Promise<void> => {
      const { generation } = await api(h1).post<{ generation: number }>('/policy/rm', {
        names: documents.map((d) => d.name as string),
      });
      await lab.waitFor(
        async () =>
          (
            await Promise.all(
              hosts.map(
                async (h) => (await api(h).get<PolicyStatus>('/policy/status')).enforcedGeneration >= generation,
              ),
            )
          ).every(Boolean),
        { what: 'policies removed everywhere', timeoutMs: 120_000 },
      );
    };

    const applyTimes: number[] = [];
    const changeTimes: number[] = [];
    const kinds: Kind[] = split ? ['none', 'nfcall', 'isolation', 'rules'] : ['none', 'rules'];
    const gbps = new Map<Kind, number[]>(kinds.map((k) => [k, []]));
    const rtt = new Map<Kind, number[]>(kinds.map((k) => [k, []]));
    const daemonCpu = new Map<Kind, number[]>(kinds.map((k) => [k, []]));
    const measured = [hosts[0]!, hosts[1]!];
    const nfCall = async (on: boolean): Promise<void> => {
      for (const h of measured)
        await lab.execOk(h, [
          'ip',
          'link',
          'set',
          'dev',
          'weavets',
          'type',
          'bridge',
          'nf_call_iptables',
          on ? '1' : '0',
        ]);
    };
    const sysctl = (await lab.exec(hosts[0]!, ['sysctl', '-n', 'net.bridge.bridge-nf-call-iptables'])).stdout.trim();
    const loadAtStart = os.loadavg()[0]!;
    const idle = await daemonLoad(lab, hosts, 3000);
    process.stderr.write(
      `throughput rounds: ${kinds.join(', ')}; load ${loadAtStart.toFixed(2)}; ` +
        `net.bridge.bridge-nf-call-iptables in a host: ${sysctl || 'absent'}; ` +
        `the daemons idle at ${(idle * 100).toFixed(0)}% of a core\n`,
    );
    for (let round = 0; round < rounds; round++) {
      for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
        if (kind === 'rules') {
          const t = await apply(docs, work);
          applyTimes.push(t.ms);
          storedMs.push(t.stored);
          process.stderr.write(
            `round ${round + 1}: apply -> enforced on ${hostCount} hosts in ${t.ms.toFixed(0)} ms\n`,
          );
        } else if (kind === 'isolation') await apply(isolationPolicies(docs), []);
        else if (kind === 'nfcall') await nfCall(true);
        await settle(lab, hosts, idle);
        const p = await lab.ping(client, serverIp, { count: 100, intervalS: 0.01, timeoutS: 1 });
        if (p.avgMs !== undefined) rtt.get(kind)!.push(p.avgMs);
        const cpu0 = daemonCpuSeconds(lab, hosts);
        gbps.get(kind)!.push(await iperf(lab, client, server, serverIp, seconds));
        // The daemons' share of the CPU during the run: what competed with the path.
        daemonCpu.get(kind)!.push((daemonCpuSeconds(lab, hosts) - cpu0) / seconds);
        if (kind === 'rules') {
          const c = await apply(changedPolicy(docs, round), changeWork);
          changeTimes.push(c.ms);
          process.stderr.write(
            `round ${round + 1}: one policy changed -> enforced on ${hostCount} hosts in ${c.ms.toFixed(0)} ms\n`,
          );
          await removeAll(docs);
        } else if (kind === 'isolation') await removeAll(isolationPolicies(docs));
        else if (kind === 'nfcall') await nfCall(false);
      }
      const cells = kinds
        .map(
          (k) => `${k} ${gbps.get(k)!.at(-1)!.toFixed(2)} (daemons ${(daemonCpu.get(k)!.at(-1)! * 100).toFixed(0)}%)`,
        )
        .join(', ');
      const ratios = kinds
        .filter((k) => k !== 'none')
        .map((k) => `${k}/none ${((gbps.get(k)!.at(-1)! / gbps.get('none')!.at(-1)!) * 100).toFixed(1)}%`)
        .join(', ');
      process.stderr.write(
        `round ${round + 1}: Gbit/s (the daemons' CPU, % of a core): ${cells}; ${ratios}; load ${os.loadavg()[0]!.toFixed(2)}\n`,
      );
      await sleep(200);
    }
    const size = docs.reduce((n, d) => n + (d as { ingress: unknown[] }).ingress.length, 0);
    const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
    const rules = pairedRatios(gbps, 'rules');
    const lines = [
      `| measure (${hostCount} hosts, ${endpointCount} endpoints, ${size} rules in ${docs.length} policies, datapath ${datapath}; load ${loadAtStart.toFixed(2)} at the start of the rounds, ${os.loadavg()[0]!.toFixed(2)} at the end) | value |`,
      '|---|---|',
      `| policy apply -> enforced on every host, median of ${applyTimes.length} | ${median(applyTimes).toFixed(0)} ms (each: ${applyTimes.map((t) => t.toFixed(0)).join(', ')}) |`,
      `| of which: the apply call (validate + one store transaction), median | ${median(storedMs).toFixed(0)} ms |`,
      `| per host: compile / apply (of which nft, bridges), median over hosts and rounds | ${times(work)} |`,
      `| one policy changed with the set in force -> enforced on every host, median of ${changeTimes.length} | ${median(changeTimes).toFixed(0)} ms (each: ${changeTimes.map((t) => t.toFixed(0)).join(', ')}) |`,
      `| per host, for the change: compile / apply (of which nft, bridges) | ${times(changeWork)} |`,
      ...kinds.map(
        (k) =>
          `| TCP throughput, ${k === 'rules' ? `${size} rules` : k} (median of ${rounds}; each) | ${median(gbps.get(k)!).toFixed(2)} Gbit/s (${gbps
            .get(k)!
            .map((g) => g.toFixed(2))
            .join(', ')}) |`,
      ),
      ...kinds
        .filter((k) => k !== 'none' && k !== 'rules')
        .map((k) => {
          const r = pairedRatios(gbps, k);
          return `| ratio ${k} / none, median of the rounds' own (each) | ${pct(r.median)} (${r.each.map(pct).join(', ')}) |`;
        }),
      `| **ratio rules / none, median of the rounds' own** (each) | **${pct(rules.median)}** (${rules.each.map(pct).join(', ')}) |`,
      `| ratio of the medians rules / none | ${pct(median(gbps.get('rules')!) / median(gbps.get('none')!))} |`,
      ...kinds.map((k) => `| ping RTT, ${k} (median of round means) | ${median(rtt.get(k)!).toFixed(3)} ms |`),
      `| RTT ratio none / rules | ${pct(median(rtt.get('none')!) / median(rtt.get('rules')!))} |`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await lab.destroy();
    await etcd?.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
