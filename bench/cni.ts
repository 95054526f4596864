/**
 * CNI ADD+DEL round trips: weavets-cni beside the reference bridge + host-local plugins
 * (Debian containernetworking-plugins, /usr/lib/cni), measured in the same run, on the
 * same host namespace, alternating one round of each so machine load hits both alike.
 * Prints round trips per second, p50 latencies and the ratio to the reference.
 *
 *   npx tsx bench/cni.ts [--rounds 40]
 *
 * The lab host runs weavets; the timing loop runs inside the host's namespace (this
 * script re-executed with --inner under nsenter) so the plugins' host-side links land
 * there, never in the root namespace. host-local keeps its state in the lab dir.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, createLab } from '../test/net/harness';

const REF_DIR = '/usr/lib/cni';

interface InnerArgs {
  rounds: number;
  netns: string;
  stateDir: string;
  dataDir: string;
  /** The installed plugin: the native fast path (setup-cni's default). */
  shim: string;
  /** The Node plugin itself (setup-cni --node-plugin). */
  nodeShim: string;
}

interface Samples {
  add: number[];
  del: number[];
  total: number[];
}

interface InnerResult {
  weavets: Samples;
  weavetsNode: Samples;
  bridge: Samples;
  nodeStart: number[];
  pluginVersion: number[];
}

function invoke(argv: string[], env: NodeJS.ProcessEnv, stdin: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { env, input: stdin, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0)
    throw new Error(`${argv.join(' ')} ${env['CNI_COMMAND']} failed (${r.status}): ${r.stdout} ${r.stderr}`);
  return ms;
}

function inner(a: InnerArgs): InnerResult {
  const wtConf = JSON.stringify({ cniVersion: '1.0.0', name: 'benchwt', type: 'weavets-cni', stateDir: a.stateDir });
  const brConf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'benchbr',
    type: 'bridge',
    bridge: 'cnibench0',
    isGateway: true,
    ipam: { type: 'host-local', subnet: '10.99.0.0/16', dataDir: a.dataDir },
  });
  const plugins: { key: 'weavets' | 'weavetsNode' | 'bridge'; argv: string[]; conf: string }[] = [
    { key: 'weavets', argv: [a.shim], conf: wtConf },
    { key: 'weavetsNode', argv: [a.nodeShim], conf: wtConf },
    { key: 'bridge', argv: [path.join(REF_DIR, 'bridge')], conf: brConf },
  ];
  const out: InnerResult = {
    weavets: { add: [], del: [], total: [] },
    weavetsNode: { add: [], del: [], total: [] },
    bridge: { add: [], del: [], total: [] },
    nodeStart: [],
    pluginVersion: [],
  };
  const base = { PATH: process.env['PATH'], CNI_NETNS: a.netns, CNI_IFNAME: 'eth0', CNI_PATH: REF_DIR };
  const warmup = 3;
  for (let i = 0; i < a.rounds + warmup; i++) {
    for (const p of plugins) {
      const env = { ...base, CNI_CONTAINERID: `bench-${p.key}-${i}` };
      const add = invoke(p.argv, { ...env, CNI_COMMAND: 'ADD' }, p.conf);
      const del = invoke(p.argv, { ...env, CNI_COMMAND: 'DEL' }, p.conf);
      if (i < warmup) continue;
      out[p.key].add.push(add);
      out[p.key].del.push(del);
      out[p.key].total.push(add + del);
    }
    if (i >= warmup && i % 2 === 0) {
      out.nodeStart.push(invoke([process.execPath, '-e', '0'], {}, ''));
      out.pluginVersion.push(invoke([a.nodeShim], { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}'));
    }
  }
  return out;
}

function p50(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

function mean(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

function table(r: InnerResult, rounds: number): string {
  const rows: string[][] = [];
  const row = (name: string, s: Samples, ref: Samples | undefined): void => {
    const rps = 1000 / mean(s.total);
    const ratio = ref ? `${(p50(s.total) / p50(ref.total)).toFixed(2)}x` : '1.00x';
    rows.push([name, rps.toFixed(1), p50(s.total).toFixed(1), p50(s.add).toFixed(1), p50(s.del).toFixed(1), ratio]);
  };
  row('weavets-cni (native fast path, logic in the daemon)', r.weavets, r.bridge);
  row('weavets-cni (Node plugin)', r.weavetsNode, r.bridge);
  row('bridge + host-local (reference)', r.bridge, undefined);
  const head = ['plugin', 'ADD+DEL/s', 'p50 ADD+DEL ms', 'p50 ADD ms', 'p50 DEL ms', 'p50 vs reference'];
  const lines = [head, head.map(() => '---'), ...rows].map((c) => `| ${c.join(' | ')} |`);
  lines.push('');
  lines.push(
    `${rounds} rounds each, alternating; floor for any Node plugin here: \`node -e 0\` p50 ${p50(r.nodeStart).toFixed(1)} ms, Node weavets-cni VERSION (no daemon call) p50 ${p50(r.pluginVersion).toFixed(1)} ms`,
  );
  return lines.join('\n');
}

async function outer(rounds: number): Promise<void> {
  for (const bin of ['bridge', 'host-local']) {
    if (!fs.existsSync(path.join(REF_DIR, bin)))
      throw new Error(`${REF_DIR}/${bin} missing: apt-get install containernetworking-plugins`);
  }
  const lab = await createLab();
  try {
    const host = await lab.addHost('h1');
    await lab.launch(host);
    const ctr = await lab.addContainer(host, 'c1');
    const binDir = path.join(lab.dir, 'cni-bin');
    await lab.weavetsOk(host, ['setup-cni', '--bin-dir', binDir, '--conf-dir', path.join(lab.dir, 'net.d')]);
    const nodeBinDir = path.join(lab.dir, 'cni-bin-node');
    await lab.weavetsOk(host, [
      'setup-cni',
      '--node-plugin',
      '--bin-dir',
      nodeBinDir,
      '--conf-dir',
      path.join(lab.dir, 'net.d-node'),
    ]);
    const args: InnerArgs = {
      rounds,
      netns: ctr.netns,
      stateDir: host.stateDir,
      dataDir: path.join(lab.dir, 'host-local'),
      shim: path.join(binDir, 'weavets-cni'),
      nodeShim: path.join(nodeBinDir, 'weavets-cni'),
    };
    const r = await lab.exec(
      host,
      [process.execPath, ...process.execArgv, __filename, '--inner', JSON.stringify(args)],
      {
        timeoutMs: 30 * 60_000,
      },
    );
    if (r.code !== 0) throw new Error(`bench loop failed: ${r.stderr}\n${r.stdout}`);
    const result = JSON.parse(r.stdout) as InnerResult;
    process.stdout.write(`${table(result, rounds)}\n`);
  } finally {
    await lab.destroy();
  }
}

function main(): void {
  const argv = process.argv.slice(2);
  const innerAt = argv.indexOf('--inner');
  if (innerAt >= 0) {
    process.stdout.write(JSON.stringify(inner(JSON.parse(argv[innerAt + 1]!) as InnerArgs)));
    return;
  }
  const ri = argv.indexOf('--rounds');
  const rounds = ri >= 0 ? Number(argv[ri + 1]) : 40;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds wants a positive integer');
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cni', 'main.js'))) throw new Error('build first: npm run build');
  outer(rounds).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}

main();
