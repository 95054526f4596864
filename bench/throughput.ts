/**
 * Throughput between two containers on two hosts (network namespaces), beside references
 * measured in the same run: iperf3 TCP for N seconds, CPU seconds of the weavets daemons
 * per Gbit moved, their V8 garbage collections during iperf3 (count and time, from each
 * daemon's /metrics), ping RTT, for the sleeve the share of the super-frames the
 * sender's express path cut in C that the receiver's rebuilt in C (the rest took its JS
 * path), and how busy each daemon's event loop thread and data path thread were during
 * iperf3 (share of a core, from each thread's schedstat). Prints a markdown table.
 *
 *   npx tsx bench/throughput.ts [--time 10] [--rows veth,vxlan,sleeve] [--ping-rounds 10] [--iperf-rounds 3]
 *
 * A row is one entry of ROWS: a name and a setup() that builds its own lab and returns the
 * two endpoints (and, for weavets rows, the hosts whose daemons' CPU time is measured).
 * Every row gets its own lab; all labs are built first, then the pings run in rounds
 * interleaved across the rows (100 pings per row per round, the order rotating), then
 * iperf3 likewise in rounds (a row's Gbit/s is the median of its rounds), then the labs
 * are torn down.
 *
 * Rows: the references (veth, hand-made kernel VXLAN, and `c-forwarder`: the smallest
 * TAP-UDP forwarder, bench/ref/tap-udp-forwarder.c, the floor of userspace), weavets container to container
 * (sleeve, fastdp, sleeve encrypted, and sleeve/fastdp with iperf3 -P 4; `sleeve-js` and
 * `sleeve-enc-js` are the sleeve without its express path, `sleeve-loop`, `sleeve-enc-loop`
 * and `sleeve-p4-loop` the express path on the event loop, without its data path thread),
 * and host to host
 * the overlays a user would pick instead, built in the same run from the Debian packages:
 * `nebula` (nebula + nebula-cert, a CA made in the lab directory) and `wireguard-go`
 * (wireguard-go + wg), beside weavets host to host (`expose`, `expose-enc`: each host's
 * own address from `weavets expose`). CPU seconds count the weavets daemons, or the
 * Nebula / wireguard-go processes. Interleaving matters on a
 * shared machine: the load moves the RTT by tens of microseconds within a minute, which
 * is the size of the differences compared, so rows pinged minutes apart are not
 * comparable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, run, sleep, type Host, type Lab, type Namespace } from '../test/net/harness';
import { clientFor } from '../src/cli/context';

interface Endpoints {
  client: Namespace | Host;
  server: Namespace | Host;
  serverIp: string;
  /** Hosts whose weavets daemon CPU time counts for this row; none: "n/a". */
  daemonHosts: Host[];
  /** Other processes whose CPU time counts (a Nebula or wireguard-go per host). */
  otherPids?: number[];
  /** iperf3 -P: parallel streams (default 1). */
  parallel?: number;
}

interface RowSpec {
  key: string;
  title: string;
  setup(lab: Lab): Promise<Endpoints>;
}

interface RowResult {
  title: string;
  /** Median of the iperf3 rounds. */
  gbps?: number;
  /** Every round's Gbit/s, in the order run. */
  runs?: number[];
  cpuSecPerGbit?: number;
  /** Share of a core each thread was busy during iperf3: sender loop, sender data path, receiver loop, receiver data path. */
  threadBusy?: number[];
  /** Median RTT of all of the row's pings (every round), ms. */
  pingAvgMs?: number;
  /**
   * Of the super-frames the client's express path cut and sent in C, the share the
   * server's express path rebuilt in C (the rest it left to JS); undefined when C cut none.
   */
  rebuiltInC?: number;
  /** V8 garbage collections per daemon during iperf3, scaled to 5 s: count and milliseconds. */
  gcPer5s?: { count: number; ms: number };
  error?: string;
}

const IPERF_PORT = 5201;

/**
 * Two hosts with a bridge br0 each, a container on each plugged into it by a veth (at
 * `${net}.1` and `${net}.2`/24, this MTU), and a tunnel port towards the other host that
 * addPort makes (returning its name) and this puts on br0: the hand-made references.
 */
async function bridgedPair(
  lab: Lab,
  what: string,
  net: string,
  mtu: number,
  addPort: (h: Host, peer: Host) => Promise<string>,
): Promise<Endpoints> {
  const hosts = [await lab.addHost('host1'), await lab.addHost('host2')];
  const ctrs: Namespace[] = [];
  for (const [i, h] of hosts.entries()) {
    const c = await lab.addContainer(h, `c${i + 1}`);
    ctrs.push(c);
    await lab.execOk(h, ['ip', 'link', 'add', 'br0', 'type', 'bridge']);
    const port = await addPort(h, hosts[1 - i]!);
    await lab.execOk(h, ['ip', 'link', 'set', port, 'master', 'br0', 'up']);
    await lab.execOk(h, ['ip', 'link', 'set', 'br0', 'up']);
    await lab.execOk(h, ['ip', 'link', 'add', 'vc', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.netnsName]);
    await lab.execOk(h, ['ip', 'link', 'set', 'vc', 'master', 'br0', 'up']);
    await lab.execOk(c, ['ip', 'link', 'set', 'eth0', 'mtu', String(mtu)]);
    await lab.execOk(c, ['ip', 'addr', 'add', `${net}.${i + 1}/24`, 'dev', 'eth0']);
    await lab.execOk(c, ['ip', 'link', 'set', 'eth0', 'up']);
  }
  await lab.waitFor(async () => (await lab.ping(ctrs[0]!, `${net}.2`, { count: 1, timeoutS: 1 })).ok, {
    what: `the ${what} containers to reach each other`,
  });
  return { client: ctrs[0]!, server: ctrs[1]!, serverIp: `${net}.2`, daemonHosts: [] };
}

/** Two hosts running weavets with the given launch flags, one container attached on each. */
function weavetsRow(
  key: string,
  title: string,
  launchArgs: string[],
  opts: { password?: boolean; datapath?: 'fastdp'; parallel?: number; hostToHost?: boolean; conntrack?: boolean } = {},
): RowSpec {
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
      await lab.launch(h1, [], launchArgs);
      await lab.launch(h2, [h1.ip], launchArgs);
      if (opts.conntrack) {
        // What counting flows with conntrack would cost: a ct expression turns connection
        // tracking on for the host namespace (outer VXLAN packets, and through br_netfilter
        // every bridged container frame).
        for (const h of [h1, h2]) {
          await lab.execOk(h, ['nft', 'add', 'table', 'inet', 'bench_ct']);
          await lab.execOk(h, [
            'nft',
            'add',
            'chain',
            'inet',
            'bench_ct',
            'pre',
            '{ type filter hook prerouting priority -150 ; }',
          ]);
          await lab.execOk(h, ['nft', 'add', 'rule', 'inet', 'bench_ct', 'pre', 'ct', 'state', 'new', 'counter']);
        }
      }
      // Host to host: each host's own address on the network (`weavets expose`), the
      // same shape as the Nebula and WireGuard rows; else one container on each host.
      let client: Namespace | Host;
      let server: Namespace | Host;
      let ip2: string;
      if (opts.hostToHost === true) {
        await lab.weavetsOk(h1, ['expose']);
        ip2 = (await lab.weavetsOk(h2, ['expose'])).trim().split('/')[0]!;
        [client, server] = [h1, h2];
      } else {
        const c1 = await lab.addContainer(h1, 'c1');
        const c2 = await lab.addContainer(h2, 'c2');
        await lab.attach(h1, c1);
        ip2 = (await lab.attach(h2, c2)).split('/')[0]!;
        [client, server] = [c1, c2];
      }
      await lab.waitFor(async () => (await lab.ping(client, ip2, { count: 1, timeoutS: 1 })).ok, {
        what: `host1 side to reach ${ip2} through weavets`,
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
      const ep: Endpoints = { client, server, serverIp: ip2, daemonHosts: [h1, h2] };
      if (opts.parallel !== undefined) ep.parallel = opts.parallel;
      return ep;
    },
  };
}

/** Processes a row started (Nebula, wireguard-go); killed when the run ends. */
const spawned: import('node:child_process').ChildProcess[] = [];
/** Files they leave behind outside the lab directory (wireguard-go's UAPI sockets). */
const leftovers: string[] = [];

/** Start argv in a host's namespace and keep it for the end-of-run kill; returns its pid. */
function spawnKept(lab: Lab, host: Host, argv: string[]): number {
  // nsenter and env exec, so the pid is the program's own.
  const child = lab.spawnIn(host, argv);
  spawned.push(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  child.on('exit', (code) => {
    if (code !== null && code !== 0) process.stderr.write(`${argv[0]} in ${host.name} exited ${code}: ${err}\n`);
  });
  if (child.pid === undefined) throw new Error(`cannot start ${argv[0]}`);
  return child.pid;
}

async function waitForLink(lab: Lab, host: Host, dev: string): Promise<void> {
  await lab.waitFor(async () => (await lab.exec(host, ['ip', 'link', 'show', dev])).code === 0, {
    what: `${dev} to appear in ${host.name}`,
    timeoutMs: 15_000,
    intervalMs: 100,
  });
}

/**
 * Userspace WireGuard (Debian's wireguard-go + wg) host to host: keys generated into the
 * lab's own directory (never argv), endpoints the hosts' lab underlay addresses.
 */
const wireguardRow: RowSpec = {
  key: 'wireguard-go',
  title: 'wireguard-go, host to host',
  async setup(lab) {
    const hosts = [await lab.addHost('host1'), await lab.addHost('host2')];
    const pubs: string[] = [];
    const keyFiles: string[] = [];
    for (const h of hosts) {
      const file = path.join(lab.dir, `${h.name}.wgkey`);
      const key = (await lab.execOk(h, ['wg', 'genkey'])).stdout.trim();
      fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
      keyFiles.push(file);
      pubs.push((await lab.execOk(h, ['wg', 'pubkey'], { input: `${key}\n` })).stdout.trim());
    }
    const pids: number[] = [];
    for (const [i, h] of hosts.entries()) {
      const peer = hosts[1 - i]!;
      // wg finds a device through /var/run/wireguard/<name>.sock, shared by every
      // namespace: each device needs a name of its own (the lab prefix keeps runs apart).
      const dev = `${lab.prefix}wg${i + 1}`;
      leftovers.push(`/var/run/wireguard/${dev}.sock`);
      // Debian's wireguard-go refuses to start where the kernel has WireGuard unless told
      // that userspace is wanted (it is: userspace WireGuard is the row).
      pids.push(
        spawnKept(lab, h, ['env', 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'wireguard-go', '-f', dev]),
      );
      await waitForLink(lab, h, dev);
      await lab.execOk(h, [
        'wg',
        'set',
        dev,
        'private-key',
        keyFiles[i]!,
        'listen-port',
        '51820',
        'peer',
        pubs[1 - i]!,
        'allowed-ips',
        `10.97.0.${2 - i}/32`,
        'endpoint',
        `${peer.ip}:51820`,
      ]);
      await lab.execOk(h, ['ip', 'addr', 'add', `10.97.0.${i + 1}/24`, 'dev', dev]);
      await lab.execOk(h, ['ip', 'link', 'set', dev, 'up']);
    }
    await lab.waitFor(async () => (await lab.ping(hosts[0]!, '10.97.0.2', { count: 1, timeoutS: 1 })).ok, {
      what: 'the WireGuard hosts to reach each other',
      timeoutMs: 20_000,
    });
    return { client: hosts[0]!, server: hosts[1]!, serverIp: '10.97.0.2', daemonHosts: [], otherPids: pids };
  },
};

/** Nebula (Debian's nebula + nebula-cert) host to host: a CA and two certificates made in the lab's directory, no lighthouse (static host map). */
const nebulaRow: RowSpec = {
  key: 'nebula',
  title: 'Nebula, host to host',
  async setup(lab) {
    const hosts = [await lab.addHost('host1'), await lab.addHost('host2')];
    const dir = path.join(lab.dir, 'nebula');
    fs.mkdirSync(dir, { mode: 0o700 });
    const f = (name: string): string => path.join(dir, name);
    await lab.execOk(hosts[0]!, [
      'nebula-cert',
      'ca',
      '-name',
      'weavets bench',
      '-out-crt',
      f('ca.crt'),
      '-out-key',
      f('ca.key'),
    ]);
    const pids: number[] = [];
    for (const [i, h] of hosts.entries()) {
      const peer = hosts[1 - i]!;
      await lab.execOk(h, [
        'nebula-cert',
        'sign',
        '-ca-crt',
        f('ca.crt'),
        '-ca-key',
        f('ca.key'),
        '-name',
        h.name,
        '-ip',
        `10.96.0.${i + 1}/24`,
        '-out-crt',
        f(`${h.name}.crt`),
        '-out-key',
        f(`${h.name}.key`),
      ]);
      // JSON is YAML: no YAML writer needed.
      const config = {
        pki: { ca: f('ca.crt'), cert: f(`${h.name}.crt`), key: f(`${h.name}.key`) },
        static_host_map: { [`10.96.0.${2 - i}`]: [`${peer.ip}:4242`] },
        lighthouse: { am_lighthouse: false, interval: 60, hosts: [] },
        listen: { host: h.ip, port: 4242 },
        punchy: { punch: false },
        tun: { disabled: false, dev: `${lab.prefix}neb`, mtu: 1300 },
        logging: { level: 'warning' },
        firewall: {
          outbound: [{ port: 'any', proto: 'any', host: 'any' }],
          inbound: [{ port: 'any', proto: 'any', host: 'any' }],
        },
      };
      fs.writeFileSync(f(`${h.name}.yml`), JSON.stringify(config), { mode: 0o600 });
      pids.push(spawnKept(lab, h, ['nebula', '-config', f(`${h.name}.yml`)]));
      await waitForLink(lab, h, `${lab.prefix}neb`);
    }
    await lab.waitFor(async () => (await lab.ping(hosts[0]!, '10.96.0.2', { count: 1, timeoutS: 1 })).ok, {
      what: 'the Nebula hosts to reach each other',
      timeoutMs: 30_000,
    });
    return { client: hosts[0]!, server: hosts[1]!, serverIp: '10.96.0.2', daemonHosts: [], otherPids: pids };
  },
};

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
    setup: (lab) =>
      bridgedPair(lab, 'VXLAN', '10.98.0', 1450, async (h, peer) => {
        await lab.execOk(h, [
          'ip',
          'link',
          'add',
          'vx0',
          'type',
          'vxlan',
          'id',
          '42',
          'local',
          h.ip,
          'remote',
          peer.ip,
          'dstport',
          '4789',
          'dev',
          'eth0',
        ]);
        return 'vx0';
      }),
  },
  {
    key: 'c-forwarder',
    title: 'minimal C TAP-UDP forwarder (reference)',
    // bench/ref/tap-udp-forwarder.c in place of VXLAN: the floor of any TAP-based
    // userspace overlay on this machine (a frame crosses a process on each host).
    async setup(lab) {
      const bin = path.join(lab.dir, 'tap-udp-forwarder');
      const cc = await run(['cc', '-O2', '-o', bin, path.join(__dirname, 'ref', 'tap-udp-forwarder.c')]);
      if (cc.code !== 0) throw new Error(`cc: ${cc.stderr}`);
      return bridgedPair(lab, 'forwarder', '10.95.0', 1400, async (h, peer) => {
        lab.spawnIn(h, [bin, 'fw0', h.ip, peer.ip, '6799']);
        await lab.waitFor(async () => (await lab.exec(h, ['ip', 'link', 'show', 'fw0'])).code === 0, {
          what: `the forwarder's TAP on ${h.name}`,
        });
        return 'fw0';
      });
    },
  },
  weavetsRow('sleeve', 'weavets sleeve', ['--datapath', 'sleeve']),
  weavetsRow('fastdp', 'weavets fastdp', ['--datapath', 'fastdp'], { datapath: 'fastdp' }),
  weavetsRow('sleeve-enc', 'weavets sleeve, encrypted', ['--datapath', 'sleeve'], { password: true }),
  weavetsRow('sleeve-p4', 'weavets sleeve, iperf3 -P 4', ['--datapath', 'sleeve'], { parallel: 4 }),
  weavetsRow('fastdp-p4', 'weavets fastdp, iperf3 -P 4', ['--datapath', 'fastdp'], { datapath: 'fastdp', parallel: 4 }),
  weavetsRow('expose', 'weavets sleeve, host to host (expose)', ['--datapath', 'sleeve'], { hostToHost: true }),
  weavetsRow('expose-enc', 'weavets sleeve, host to host (expose), encrypted', ['--datapath', 'sleeve'], {
    hostToHost: true,
    password: true,
  }),
  nebulaRow,
  wireguardRow,
  // The express path (native/src/express.c, on by default) against the JS path alone.
  weavetsRow('sleeve-js', 'weavets sleeve, --no-sleeve-express', ['--datapath', 'sleeve', '--no-sleeve-express']),
  weavetsRow(
    'sleeve-enc-js',
    'weavets sleeve, encrypted, --no-sleeve-express',
    ['--datapath', 'sleeve', '--no-sleeve-express'],
    { password: true },
  ),
  // The data path thread (native/src/iothread.c, on by default) against the express path
  // on the event loop thread.
  weavetsRow('sleeve-loop', 'weavets sleeve, --no-sleeve-thread', ['--datapath', 'sleeve', '--no-sleeve-thread']),
  weavetsRow(
    'sleeve-enc-loop',
    'weavets sleeve, encrypted, --no-sleeve-thread',
    ['--datapath', 'sleeve', '--no-sleeve-thread'],
    { password: true },
  ),
  weavetsRow(
    'sleeve-p4-loop',
    'weavets sleeve, iperf3 -P 4, --no-sleeve-thread',
    ['--datapath', 'sleeve', '--no-sleeve-thread'],
    {
      parallel: 4,
    },
  ),
  // The cost of `weavets flows` (on by default): the same paths without per-pair counting.
  weavetsRow('sleeve-noflows', 'weavets sleeve, --no-flows', ['--datapath', 'sleeve', '--no-flows']),
  weavetsRow('fastdp-noflows', 'weavets fastdp, --no-flows', ['--datapath', 'fastdp', '--no-flows'], {
    datapath: 'fastdp',
  }),
  weavetsRow('fastdp-conntrack', 'weavets fastdp, --no-flows, conntrack on', ['--datapath', 'fastdp', '--no-flows'], {
    datapath: 'fastdp',
    conntrack: true,
  }),
];

/** utime + stime of a process, seconds (all its threads). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64 and arm64

/**
 * CPU seconds of a daemon's event loop thread (the main thread) and of its data path
 * thread (named weavets-dp, native/src/iothread.c; 0 without one), from each thread's
 * schedstat (nanoseconds on a CPU).
 */
function threadSeconds(pid: number): { loop: number; dataPath: number } {
  const ns = (tid: string): number =>
    Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  let dataPath = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === 'weavets-dp') dataPath += ns(tid);
    } catch {
      // the thread ended meanwhile
    }
  }
  return { loop: ns(String(pid)), dataPath };
}

/**
 * A daemon's totals so far: GC (weavets_nodejs_gc_duration_seconds, every kind) and the
 * super-frames its express path cut and sent, and rebuilt and delivered
 * (weavets_sleeve_express_superframes_total; 0 without the sleeve's express path).
 */
async function daemonTotals(
  h: Host,
): Promise<{ count: number; seconds: number; superSent: number; superDelivered: number }> {
  const res = await clientFor(h.stateDir, 10_000).raw('GET', '/metrics');
  let count = 0;
  let seconds = 0;
  for (const m of res.body.matchAll(/^weavets_nodejs_gc_duration_seconds_(count|sum)\{[^}]*\} ([\d.e+-]+)$/gm)) {
    if (m[1] === 'count') count += Number(m[2]);
    else seconds += Number(m[2]);
  }
  const superframes = (direction: string): number =>
    Number(
      new RegExp(`^weavets_sleeve_express_superframes_total\\{direction="${direction}"\\} (\\d+)$`, 'm').exec(
        res.body,
      )?.[1] ?? 0,
    );
  return { count, seconds, superSent: superframes('sent'), superDelivered: superframes('delivered') };
}

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
      async () =>
        (await lab.exec(ep.server, ['ss', '-Hltn', `sport = :${IPERF_PORT}`])).stdout.includes(String(IPERF_PORT)),
      { what: 'iperf3 server to listen', timeoutMs: 10_000, intervalMs: 100 },
    );
    const streams = ep.parallel === undefined ? [] : ['-P', String(ep.parallel)];
    const r = await lab.exec(
      ep.client,
      ['iperf3', '-c', ep.serverIp, '-p', String(IPERF_PORT), '-t', String(seconds), '-J', ...streams],
      {
        timeoutMs: (seconds + 30) * 1000,
      },
    );
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

interface LiveRow {
  spec: RowSpec;
  lab: Lab;
  ep?: Endpoints;
  result: RowResult;
  /** RTTs of every ping round, ms. */
  rtts: number[];
}

function failed(row: LiveRow, what: string, err: unknown): void {
  const msg = (err as Error).message;
  process.stderr.write(`row "${row.spec.title}" failed (${what}): ${msg}\n`);
  row.result = { title: row.spec.title, error: msg.split('\n')[0]! };
  delete row.ep;
}

function median(sorted: number[]): number | undefined {
  return sorted.length === 0 ? undefined : sorted[Math.floor((sorted.length - 1) / 2)];
}

const PINGS_PER_ROUND = 100;

async function measureAll(
  specs: RowSpec[],
  seconds: number,
  pingRounds: number,
  iperfRounds: number,
): Promise<RowResult[]> {
  const rows: LiveRow[] = [];
  try {
    for (const spec of specs) {
      process.stderr.write(`setting up: ${spec.title} ...\n`);
      const row: LiveRow = { spec, lab: await createLab(), result: { title: spec.title }, rtts: [] };
      rows.push(row);
      try {
        row.ep = await spec.setup(row.lab);
      } catch (err) {
        failed(row, 'setup', err);
      }
    }
    // Pings first, interleaved: every row sees the same machine. 10 ms apart, so the
    // median is not an idle-wakeup artefact of one slow row.
    for (let round = 0; round < pingRounds; round++) {
      process.stderr.write(`ping round ${round + 1}/${pingRounds} ...\n`);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[(i + round) % rows.length]!;
        if (row.ep === undefined) continue;
        const ping = await row.lab.ping(row.ep.client, row.ep.serverIp, {
          count: PINGS_PER_ROUND,
          intervalS: 0.01,
          timeoutS: 2,
        });
        row.rtts.push(...[...ping.output.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])));
      }
    }
    // iperf3 in rounds too, the order rotating, each row's figure the median of its rounds:
    // a 10 s run moves by ±5% with the machine's load, the size of the 95% target's margin.
    const gbpsOf = new Map<LiveRow, number[]>();
    const cpuOf = new Map<LiveRow, number>();
    const gcOf = new Map<LiveRow, { count: number; seconds: number; daemonRuns: number }>();
    const superOf = new Map<LiveRow, { sent: number; delivered: number }>();
    // Per round, summed: [sender loop, sender data path, receiver loop, receiver data
    // path] CPU seconds per second of iperf3.
    const threadBusyOf = new Map<LiveRow, number[]>();
    for (let round = 0; round < iperfRounds; round++) {
      for (let i = 0; i < rows.length; i++) {
        const row = rows[(i + round) % rows.length]!;
        if (row.ep === undefined) continue;
        const ep = row.ep;
        process.stderr.write(`iperf3 round ${round + 1}/${iperfRounds}: ${row.spec.title} ...\n`);
        try {
          const pids = [...daemonPids(row.lab, ep.daemonHosts), ...(ep.otherPids ?? [])];
          const gcBefore = await Promise.all(ep.daemonHosts.map(daemonTotals));
          const cpuBefore = pids.map(cpuSeconds);
          const daemonPidsNow = daemonPids(row.lab, ep.daemonHosts);
          const threadsBefore = daemonPidsNow.map(threadSeconds);
          const gbps = await iperf(row.lab, ep, seconds);
          const cpu = pids.map(cpuSeconds).reduce((a, v) => a + v, 0) - cpuBefore.reduce((a, v) => a + v, 0);
          if (daemonPidsNow.length === 2) {
            const busy = threadBusyOf.get(row) ?? [0, 0, 0, 0];
            daemonPidsNow.forEach((pid, k) => {
              const now = threadSeconds(pid);
              busy[2 * k] = busy[2 * k]! + (now.loop - threadsBefore[k]!.loop) / seconds;
              busy[2 * k + 1] = busy[2 * k + 1]! + (now.dataPath - threadsBefore[k]!.dataPath) / seconds;
            });
            threadBusyOf.set(row, busy);
          }
          const gcAfter = await Promise.all(ep.daemonHosts.map(daemonTotals));
          if (gcAfter.length === 2) {
            // iperf3's client sends: its host's C cuts, the server's host's C rebuilds.
            const sup = superOf.get(row) ?? { sent: 0, delivered: 0 };
            sup.sent += gcAfter[0]!.superSent - gcBefore[0]!.superSent;
            sup.delivered += gcAfter[1]!.superDelivered - gcBefore[1]!.superDelivered;
            superOf.set(row, sup);
          }
          if (gcAfter.length > 0) {
            const g = gcOf.get(row) ?? { count: 0, seconds: 0, daemonRuns: 0 };
            gcAfter.forEach((a, k) => {
              g.count += a.count - gcBefore[k]!.count;
              g.seconds += a.seconds - gcBefore[k]!.seconds;
            });
            g.daemonRuns += gcAfter.length;
            gcOf.set(row, g);
          }
          gbpsOf.set(row, [...(gbpsOf.get(row) ?? []), gbps]);
          if (pids.length > 0) cpuOf.set(row, (cpuOf.get(row) ?? 0) + cpu);
        } catch (err) {
          failed(row, 'iperf3', err);
        }
        await sleep(500);
      }
    }
    for (const row of rows) {
      if (row.ep === undefined) continue;
      const runs = gbpsOf.get(row) ?? [];
      const gbps = median([...runs].sort((a, b) => a - b)) ?? 0;
      const res: RowResult = { title: row.spec.title, gbps, runs };
      const p50 = median([...row.rtts].sort((a, b) => a - b));
      if (p50 !== undefined) res.pingAvgMs = p50;
      const total = runs.reduce((a, v) => a + v, 0);
      const cpu = cpuOf.get(row);
      if (cpu !== undefined && total > 0) res.cpuSecPerGbit = cpu / (total * seconds);
      const gc = gcOf.get(row);
      if (gc !== undefined && gc.daemonRuns > 0) {
        const per5s = 5 / (seconds * gc.daemonRuns);
        res.gcPer5s = { count: gc.count * per5s, ms: gc.seconds * 1000 * per5s };
      }
      const sup = superOf.get(row);
      if (sup !== undefined && sup.sent > 0) res.rebuiltInC = sup.delivered / sup.sent;
      const busy = threadBusyOf.get(row);
      if (busy !== undefined && runs.length > 0) res.threadBusy = busy.map((b) => b / runs.length);
      row.result = res;
    }
    return rows.map((r) => r.result);
  } finally {
    for (const child of spawned) child.kill('SIGKILL');
    for (const file of leftovers) fs.rmSync(file, { force: true });
    for (const row of rows) await row.lab.destroy();
  }
}

/** "61 + 34, 48 + 40": each daemon's event loop thread + data path thread, % of a core. */
function threadBusyText(b: number[]): string {
  const pct = (v: number): string => (v * 100).toFixed(0);
  return `${pct(b[0]!)} + ${pct(b[1]!)}, ${pct(b[2]!)} + ${pct(b[3]!)}`;
}

function table(results: RowResult[], seconds: number, pingRounds: number, iperfRounds: number): string {
  const ref = results.find((r) => r.title.startsWith('direct veth'))?.gbps;
  const vx = results.find((r) => r.title.startsWith('kernel VXLAN'));
  const lines = [
    `iperf3 TCP: median of ${iperfRounds} rounds x ${seconds} s per row, interleaved; ping: ${pingRounds} rounds x ${PINGS_PER_ROUND} per row, interleaved; ` +
      `${new Date().toISOString()}, kernel ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, ` +
      `load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    '',
    '| path | Gbit/s | vs veth | vs hand-made VXLAN | rounds (Gbit/s) | CPU s per Gbit (daemons, Nebula, wireguard-go) | ping p50 ms | ping vs VXLAN | GC per daemon per 5 s of iperf3: count, ms | super-frames C cut that C rebuilt | threads busy, % of a core: sender loop + data path, receiver loop + data path |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.error !== undefined) {
      lines.push(`| ${r.title} | failed: ${r.error.replace(/\|/g, '/').slice(0, 120)} | | | | | | | | | |`);
      continue;
    }
    const ratio = ref !== undefined && r.gbps !== undefined ? `${((r.gbps / ref) * 100).toFixed(1)}%` : 'n/a';
    const vsVx = vx?.gbps !== undefined && r.gbps !== undefined ? `${((r.gbps / vx.gbps) * 100).toFixed(1)}%` : 'n/a';
    const pingVx =
      vx?.pingAvgMs !== undefined && r.pingAvgMs !== undefined
        ? `${((r.pingAvgMs / vx.pingAvgMs) * 100).toFixed(0)}%`
        : 'n/a';
    lines.push(
      `| ${r.title} | ${r.gbps!.toFixed(2)} | ${ratio} | ${vsVx} | ${(r.runs ?? []).map((g) => g.toFixed(2)).join(' ')} | ${r.cpuSecPerGbit !== undefined ? r.cpuSecPerGbit.toFixed(3) : 'n/a'} | ` +
        `${r.pingAvgMs !== undefined ? r.pingAvgMs.toFixed(3) : 'n/a'} | ${pingVx} | ` +
        `${r.gcPer5s !== undefined ? `${r.gcPer5s.count.toFixed(1)}, ${r.gcPer5s.ms.toFixed(1)}` : 'n/a'} | ` +
        `${r.rebuiltInC !== undefined ? `${(r.rebuiltInC * 100).toFixed(1)}%` : 'n/a'} | ` +
        `${r.threadBusy !== undefined ? threadBusyText(r.threadBusy) : 'n/a'} |`,
    );
  }
  return lines.join('\n');
}

function parseArgs(argv: string[]): { seconds: number; rows: RowSpec[]; pingRounds: number; iperfRounds: number } {
  let seconds = 10;
  let pingRounds = 10;
  let iperfRounds = 3;
  let keys = ROWS.map((r) => r.key);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--time') seconds = Number(argv[++i]);
    else if (a === '--rows') keys = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--ping-rounds') pingRounds = Number(argv[++i]);
    else if (a === '--iperf-rounds') iperfRounds = Number(argv[++i]);
    else {
      throw new Error(
        `unknown argument ${a}; usage: throughput.ts [--time SECONDS] [--rows ${ROWS.map((r) => r.key).join(',')}] [--ping-rounds N] [--iperf-rounds N]`,
      );
    }
  }
  if (!Number.isFinite(seconds) || seconds < 1) throw new Error('--time wants a number of seconds >= 1');
  if (!Number.isInteger(pingRounds) || pingRounds < 1) throw new Error('--ping-rounds wants a whole number >= 1');
  if (!Number.isInteger(iperfRounds) || iperfRounds < 1) throw new Error('--iperf-rounds wants a whole number >= 1');
  const rows = keys.map((k) => {
    const spec = ROWS.find((r) => r.key === k);
    if (!spec) throw new Error(`unknown row "${k}"; rows: ${ROWS.map((r) => r.key).join(', ')}`);
    return spec;
  });
  return { seconds, rows, pingRounds, iperfRounds };
}

async function main(): Promise<void> {
  const { seconds, rows, pingRounds, iperfRounds } = parseArgs(process.argv.slice(2));
  const results = await measureAll(rows, seconds, pingRounds, iperfRounds);
  process.stdout.write(`${table(results, seconds, pingRounds, iperfRounds)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
