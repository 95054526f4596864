/**
 * Throughput between two containers on two hosts (network namespaces), beside references
 * measured in the same run: iperf3 TCP for N seconds, CPU seconds of the weavets daemons
 * per Gbit moved, and ping RTT. Prints a markdown table.
 *
 *   npx tsx bench/throughput.ts [--time 10] [--rows veth,vxlan,sleeve]
 *
 * A row is one entry of ROWS: a name and a setup() that builds its own lab and returns the
 * two endpoints (and, for weavets rows, the hosts whose daemons' CPU time is measured).
 * Each row gets a fresh lab, torn down before the next row runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, sleep, type Host, type Lab, type Namespace } from '../test/net/harness';

interface Endpoints {
  client: Namespace | Host;
  server: Namespace | Host;
  serverIp: string;
  /** Hosts whose weavets daemon CPU time counts for this row; none: "n/a". */
  daemonHosts: Host[];
}

interface RowSpec {
  key: string;
  title: string;
  setup(lab: Lab): Promise<Endpoints>;
}

interface RowResult {
  title: string;
  gbps?: number;
  cpuSecPerGbit?: number;
  /** Median RTT of 200 pings, ms. */
  pingAvgMs?: number;
  error?: string;
}

const IPERF_PORT = 5201;

/** Two hosts running weavets with the given launch flags, one container attached on each. */
function weavetsRow(key: string, title: string, launchArgs: string[], opts: { password?: boolean; datapath?: 'fastdp' } = {}): RowSpec {
  return {
    key,
    title,
    async setup(lab) {
      lab.requireCli();
      if (opts.password) {
        const file = path.join(lab.dir, 'password');
        fs.writeFileSync(file, 'bench password, long and random enough\n', { mode: 0o600 });
        launchArgs = [...launchArgs, '--password-file', file];
      }
      const h1 = await lab.addHost('host1');
      const h2 = await lab.addHost('host2');
      const c1 = await lab.addContainer(h1, 'c1');
      const c2 = await lab.addContainer(h2, 'c2');
      await lab.launch(h1, [], launchArgs);
      await lab.launch(h2, [h1.ip], launchArgs);
      await lab.attach(h1, c1);
      const ip2 = (await lab.attach(h2, c2)).split('/')[0]!;
      await lab.waitFor(async () => (await lab.ping(c1, ip2, { count: 1, timeoutS: 1 })).ok, {
        what: `c1 to reach c2 (${ip2}) through weavets`,
        timeoutMs: 30_000,
      });
      if (opts.datapath !== undefined) {
        // Measure the path the row is named after, not the sleeve it starts on.
        const want = opts.datapath;
        await lab.waitFor(
          async () =>
            (await lab.weavetsJson<{ datapath: string; state: string }[]>(h1, ['status', 'connections'])).some(
              (c) => c.state === 'established' && c.datapath === want,
            ),
          { what: `the connection to be on ${want}`, timeoutMs: 20_000 },
        );
      }
      return { client: c1, server: c2, serverIp: ip2, daemonHosts: [h1, h2] };
    },
  };
}

const ROWS: RowSpec[] = [
  {
    key: 'veth',
    title: 'direct veth (reference)',
    async setup(lab) {
      const a = await lab.addNamespace('va');
      const b = await lab.addNamespace('vb');
      await lab.link(a, 'eth0', '10.99.0.1/24', b, 'eth0', '10.99.0.2/24');
      return { client: a, server: b, serverIp: '10.99.0.2', daemonHosts: [] };
    },
  },
  {
    key: 'vxlan',
    title: 'kernel VXLAN, hand-made (reference)',
    async setup(lab) {
      const hosts = [await lab.addHost('host1'), await lab.addHost('host2')];
      const ctrs: Namespace[] = [];
      for (const [i, h] of hosts.entries()) {
        const peer = hosts[1 - i]!;
        const c = await lab.addContainer(h, `c${i + 1}`);
        ctrs.push(c);
        const ip = (argv: string[]): Promise<unknown> => lab.execOk(h, ['ip', ...argv]);
        await ip(['link', 'add', 'br0', 'type', 'bridge']);
        await ip(['link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'local', h.ip, 'remote', peer.ip, 'dstport', '4789', 'dev', 'eth0']);
        await ip(['link', 'set', 'vx0', 'master', 'br0', 'up']);
        await ip(['link', 'set', 'br0', 'up']);
        await lab.execOk(h, ['ip', 'link', 'add', 'vc', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.netnsName]);
        await ip(['link', 'set', 'vc', 'master', 'br0', 'up']);
        await lab.execOk(c, ['ip', 'link', 'set', 'eth0', 'mtu', '1450']);
        await lab.execOk(c, ['ip', 'addr', 'add', `10.98.0.${i + 1}/24`, 'dev', 'eth0']);
        await lab.execOk(c, ['ip', 'link', 'set', 'eth0', 'up']);
      }
      await lab.waitFor(async () => (await lab.ping(ctrs[0]!, '10.98.0.2', { count: 1, timeoutS: 1 })).ok, {
        what: 'the VXLAN containers to reach each other',
      });
      return { client: ctrs[0]!, server: ctrs[1]!, serverIp: '10.98.0.2', daemonHosts: [] };
    },
  },
  weavetsRow('sleeve', 'weavets sleeve', ['--datapath', 'sleeve']),
  weavetsRow('fastdp', 'weavets fastdp', ['--datapath', 'fastdp'], { datapath: 'fastdp' }),
  weavetsRow('sleeve-enc', 'weavets sleeve, encrypted', ['--datapath', 'sleeve'], { password: true }),
];

/** utime + stime of a process, seconds (all its threads). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64 and arm64

function daemonPids(lab: Lab, hosts: Host[]): number[] {
  return hosts.map((h) => {
    const pid = lab.daemonPid(h);
    if (pid === undefined) throw new Error(`no weavets.pid for ${h.name}`);
    return pid;
  });
}

async function iperf(lab: Lab, ep: Endpoints, seconds: number): Promise<number> {
  const server = lab.spawnIn(ep.server, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)]);
  let serverErr = '';
  server.stderr?.on('data', (d: Buffer) => (serverErr += d.toString()));
  try {
    await lab.waitFor(
      async () => (await lab.exec(ep.server, ['ss', '-Hltn', `sport = :${IPERF_PORT}`])).stdout.includes(String(IPERF_PORT)),
      { what: 'iperf3 server to listen', timeoutMs: 10_000, intervalMs: 100 },
    );
    const r = await lab.exec(ep.client, ['iperf3', '-c', ep.serverIp, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], {
      timeoutMs: (seconds + 30) * 1000,
    });
    let out: { end?: { sum_received?: { bits_per_second: number } }; error?: string };
    try {
      out = JSON.parse(r.stdout) as typeof out;
    } catch {
      throw new Error(`iperf3 printed no JSON (code ${r.code}): ${r.stderr || r.stdout.slice(0, 300)} ${serverErr}`);
    }
    if (out.error || !out.end?.sum_received) throw new Error(`iperf3: ${out.error ?? 'no result'} ${serverErr}`);
    return out.end.sum_received.bits_per_second / 1e9;
  } finally {
    server.kill('SIGKILL');
  }
}

async function measure(spec: RowSpec, seconds: number): Promise<RowResult> {
  const lab = await createLab();
  try {
    const ep = await spec.setup(lab);
    // 200 samples and the median: on a shared 2-core machine a 20-ping average moves by
    // tens of microseconds with whatever else runs, which is the size of what we compare.
    const ping = await lab.ping(ep.client, ep.serverIp, { count: 200, intervalS: 0.01, timeoutS: 2 });
    const pids = daemonPids(lab, ep.daemonHosts);
    const cpuBefore = pids.map(cpuSeconds);
    const gbps = await iperf(lab, ep, seconds);
    const cpu = pids.map(cpuSeconds).reduce((a, v) => a + v, 0) - cpuBefore.reduce((a, v) => a + v, 0);
    const res: RowResult = { title: spec.title, gbps };
    const times = [...ping.output.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
    if (times.length > 0) res.pingAvgMs = times[Math.floor((times.length - 1) / 2)]!;
    if (pids.length > 0 && gbps > 0) res.cpuSecPerGbit = cpu / (gbps * seconds);
    return res;
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0]!;
    process.stderr.write(`row "${spec.title}" failed: ${(err as Error).message}\n`);
    return { title: spec.title, error: msg };
  } finally {
    await lab.destroy();
  }
}

function table(results: RowResult[], seconds: number): string {
  const ref = results.find((r) => r.title.startsWith('direct veth'))?.gbps;
  const vx = results.find((r) => r.title.startsWith('kernel VXLAN'));
  const lines = [
    `iperf3 TCP, ${seconds} s per row, ${new Date().toISOString()}, kernel ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`,
    '',
    '| path | Gbit/s | vs veth | vs hand-made VXLAN | CPU s per Gbit (daemons) | ping p50 ms | ping vs VXLAN |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.error !== undefined) {
      lines.push(`| ${r.title} | failed: ${r.error.replace(/\|/g, '/').slice(0, 120)} | | | | | |`);
      continue;
    }
    const ratio = ref !== undefined && r.gbps !== undefined ? `${((r.gbps / ref) * 100).toFixed(1)}%` : 'n/a';
    const vsVx = vx?.gbps !== undefined && r.gbps !== undefined ? `${((r.gbps / vx.gbps) * 100).toFixed(1)}%` : 'n/a';
    const pingVx = vx?.pingAvgMs !== undefined && r.pingAvgMs !== undefined ? `${((r.pingAvgMs / vx.pingAvgMs) * 100).toFixed(0)}%` : 'n/a';
    lines.push(
      `| ${r.title} | ${r.gbps!.toFixed(2)} | ${ratio} | ${vsVx} | ${r.cpuSecPerGbit !== undefined ? r.cpuSecPerGbit.toFixed(3) : 'n/a'} | ` +
        `${r.pingAvgMs !== undefined ? r.pingAvgMs.toFixed(3) : 'n/a'} | ${pingVx} |`,
    );
  }
  return lines.join('\n');
}

function parseArgs(argv: string[]): { seconds: number; rows: RowSpec[] } {
  let seconds = 10;
  let keys = ROWS.map((r) => r.key);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--time') seconds = Number(argv[++i]);
    else if (a === '--rows') keys = (argv[++i] ?? '').split(',').filter(Boolean);
    else throw new Error(`unknown argument ${a}; usage: throughput.ts [--time SECONDS] [--rows ${ROWS.map((r) => r.key).join(',')}]`);
  }
  if (!Number.isFinite(seconds) || seconds < 1) throw new Error('--time wants a number of seconds >= 1');
  const rows = keys.map((k) => {
    const spec = ROWS.find((r) => r.key === k);
    if (!spec) throw new Error(`unknown row "${k}"; rows: ${ROWS.map((r) => r.key).join(', ')}`);
    return spec;
  });
  return { seconds, rows };
}

async function main(): Promise<void> {
  const { seconds, rows } = parseArgs(process.argv.slice(2));
  const results: RowResult[] = [];
  for (const spec of rows) {
    process.stderr.write(`measuring: ${spec.title} ...\n`);
    results.push(await measure(spec, seconds));
    await sleep(500);
  }
  process.stdout.write(`${table(results, seconds)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
