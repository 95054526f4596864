/**
 * DNS queries per second and latency: weavets DNS against dnsmasq serving the same names,
 * in the same run, on the same path. One lab host runs weavets (embedded store); dnsmasq
 * runs in the same host namespace on the same bridge address, port 5353, from a hosts
 * file holding the same records. dnsperf runs in an attached container namespace and
 * queries each server in turn, alternating rounds so machine load hits both alike.
 *
 *   npx tsx bench/dns.ts [--names 40] [--seconds 8] [--rounds 2] [--clients 4] [--outstanding 100]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DnsStatus } from '../src/dns/status';
import { createLab, type Lab, type Namespace } from '../test/net/harness';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

interface PerfResult {
  qps: number;
  avgMs: number;
  lost: number;
  completed: number;
}

async function dnsperf(
  lab: Lab,
  from: Namespace,
  server: string,
  port: number,
  file: string,
  seconds: number,
  clients: number,
  outstanding: number,
): Promise<PerfResult> {
  const r = await lab.execOk(
    from,
    [
      'dnsperf',
      '-s',
      server,
      '-p',
      String(port),
      '-d',
      file,
      '-l',
      String(seconds),
      '-c',
      String(clients),
      '-q',
      String(outstanding),
      '-t',
      '2',
    ],
    { timeoutMs: (seconds + 30) * 1000 },
  );
  const num = (re: RegExp): number => {
    const m = re.exec(r.stdout);
    if (!m) throw new Error(`dnsperf output lacks ${re}: ${r.stdout}`);
    return Number(m[1]);
  };
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    lost: num(/Queries lost:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
  };
}

async function main(): Promise<void> {
  const names = arg('names', 40);
  const seconds = arg('seconds', 8);
  const rounds = arg('rounds', 2);
  const clients = arg('clients', 4);
  const outstanding = arg('outstanding', 100);
  const lab = await createLab();
  try {
    lab.requireCli();
    const h = await lab.addHost('h1');
    const c = await lab.addContainer(h, 'c1');
    const resolv = path.join(lab.dir, 'resolv.conf');
    fs.writeFileSync(resolv, '# no upstream in the benchmark\n');
    await lab.launch(h, [], ['--datapath', 'sleeve', '--dns-resolv-conf', resolv, '--log-level', 'warn']);
    await lab.attach(h, c, ['--name', 'client']);
    const status = await lab.weavetsJson<DnsStatus>(h, ['status', 'dns']);
    const server = status.listen[0]!.split(':')[0]!;

    // The same records for both: name<i> with one or two addresses.
    const hosts: string[] = [];
    const queries: string[] = [];
    for (let i = 0; i < names; i++) {
      const ips = [`10.40.${i >> 8}.${(i & 255) + 1}`];
      if (i % 2 === 0) ips.push(`10.41.${i >> 8}.${(i & 255) + 1}`);
      await lab.weavetsOk(h, ['dns-add', `name${i}`, ...ips]);
      for (const ip of ips) hosts.push(`${ip} name${i}.weavets.local`);
      queries.push(`name${i}.weavets.local A`);
    }
    const hostsFile = path.join(lab.dir, 'bench.hosts');
    fs.writeFileSync(hostsFile, hosts.join('\n') + '\n');
    const queryFile = path.join(lab.dir, 'queries.txt');
    fs.writeFileSync(queryFile, queries.join('\n') + '\n');

    const dnsmasq = lab.spawnIn(h, [
      'dnsmasq',
      '--keep-in-foreground',
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${hostsFile}`,
      '--local=/weavets.local/',
      `--listen-address=${server}`,
      '--bind-interfaces',
      '--port=5353',
      '--cache-size=10000',
      '--user=root',
      `--pid-file=${path.join(lab.dir, 'dnsmasq.pid')}`,
      '--log-facility=-',
    ]);
    let dmLog = '';
    dnsmasq.stderr!.on('data', (d: Buffer) => (dmLog += d.toString()));
    await lab.waitFor(
      async () =>
        (
          await lab.exec(c, ['dig', `@${server}`, '-p', '5353', '+short', '+tries=1', '+time=1', 'name0.weavets.local'])
        ).stdout.includes('10.40.'),
      {
        what: `dnsmasq to answer (${dmLog})`,
        timeoutMs: 10_000,
      },
    );
    const check = (await lab.execOk(c, ['dig', `@${server}`, '+short', 'name0.weavets.local'])).stdout;
    if (!check.includes('10.40.')) throw new Error(`weavets DNS does not answer name0: ${check}`);

    const results: Record<'weavets' | 'dnsmasq', PerfResult[]> = { weavets: [], dnsmasq: [] };
    for (let r = 0; r < rounds; r++) {
      results.weavets.push(await dnsperf(lab, c, server, 53, queryFile, seconds, clients, outstanding));
      results.dnsmasq.push(await dnsperf(lab, c, server, 5353, queryFile, seconds, clients, outstanding));
    }
    dnsmasq.kill('SIGTERM');
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const row = (k: 'weavets' | 'dnsmasq'): PerfResult => ({
      qps: mean(results[k].map((x) => x.qps)),
      avgMs: mean(results[k].map((x) => x.avgMs)),
      lost: results[k].reduce((a, x) => a + x.lost, 0),
      completed: results[k].reduce((a, x) => a + x.completed, 0),
    });
    const w = row('weavets');
    const d = row('dnsmasq');
    const lines = [
      `DNS: ${names} names, A queries, dnsperf -c ${clients} -q ${outstanding}, ${rounds} x ${seconds} s per server, alternating`,
      '',
      'server          queries/s   avg latency ms   completed   lost',
      `weavets DNS   ${w.qps.toFixed(0).padStart(11)}   ${w.avgMs.toFixed(3).padStart(14)}   ${String(w.completed).padStart(9)}   ${String(w.lost).padStart(4)}`,
      `dnsmasq       ${d.qps.toFixed(0).padStart(11)}   ${d.avgMs.toFixed(3).padStart(14)}   ${String(d.completed).padStart(9)}   ${String(d.lost).padStart(4)}`,
      '',
      `weavets / dnsmasq: ${(w.qps / d.qps).toFixed(2)}x queries/s, ${(w.avgMs / d.avgMs).toFixed(2)}x latency`,
      `per round (weavets, dnsmasq qps): ${results.weavets.map((x, i) => `${x.qps.toFixed(0)}/${results.dnsmasq[i]!.qps.toFixed(0)}`).join(', ')}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await lab.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
