/**
 * The incremental apply (src/policy/nft-script.ts): from the tables of ruleset A, the
 * incremental script to B must leave the kernel exactly as the full script of B does.
 * Checked with the real nft in throwaway network namespaces: a chain of states applied
 * one after another incrementally, against each state applied whole, compared as
 * `nft -j list ruleset` lists them (handles and element order aside).
 */
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileRuleset, type CompileInput, type CompiledRuleset } from '../../src/policy/nft';
import { fullScript, incrementalScript } from '../../src/policy/nft-script';
import { validatePolicy } from '../../src/policy/model';
import { CompileCache, EndpointIndex } from '../../src/policy/endpoint-index';
import { selectorMatches } from '../../src/policy/labels';
import { itWithTools } from '../require-tools';

const itWithNft = itWithTools({
  commands: ['nft', 'unshare'],
  other: () =>
    process.getuid?.() === 0 && spawnSync('unshare', ['--net', 'true']).status === 0
      ? undefined
      : 'root (unshare --net)',
});

const P = (d: unknown) => validatePolicy(d, { defaultNetwork: 'weavets' });

const base: CompileInput = {
  policies: [],
  endpoints: [
    { id: 'w', network: 'weavets', ip: '10.32.0.2', labels: { app: 'web' }, host: 'h1' },
    { id: 'd', network: 'weavets', ip: '10.32.0.3', labels: { app: 'db' }, host: 'h1' },
    { id: 'x', network: 'weavets', ip: '10.32.0.4', labels: { app: 'x' }, host: 'h2' },
    { id: 'y', network: 'weavets', ip: '10.32.0.5', labels: { app: 'web' }, host: 'h2' },
    { id: 'b', network: 'blue', ip: '10.33.0.2', labels: { app: 'web' }, host: 'h1' },
    { id: 'b2', network: 'blue', ip: '10.33.0.3', labels: { app: 'db' }, host: 'h2' },
  ],
  localPorts: [
    { network: 'weavets', hostVeth: 'vwt0000aaaa', mac: '02:00:00:00:00:02', ip: '10.32.0.2' },
    { network: 'weavets', hostVeth: 'vwt0000bbbb', mac: '02:00:00:00:00:03', ip: '10.32.0.3' },
  ],
  bridges: [
    {
      network: 'weavets',
      id: 0x123456,
      bridge: 'weavets',
      resolver: { ip: '10.32.0.1', port: 53 },
      addresses: '10.32.0.0/16',
    },
    { network: 'blue', id: 0xabcdef, bridge: 'wtbabcdef', addresses: '10.33.0.0/16' },
  ],
  dryRun: false,
  logGroup: 6783,
  logRate: 10,
  // As the daemon compiles (fastdp possible): the real nft must take the tunnel rules too.
  tunnelPort: 6784,
};

const DB = P({
  name: 'db-ingress',
  selector: { app: 'db' },
  ingress: [
    {
      from: [{ selector: { app: 'web' } }, { cidr: '10.40.0.0/16', except: ['10.40.9.0/24'] }],
      ports: [{ protocol: 'tcp', port: 5432 }],
    },
  ],
});
const DB2 = P({
  name: 'db-ingress',
  selector: { app: 'db' },
  ingress: [
    {
      from: [{ selector: { app: 'web' } }, { cidr: '10.40.0.0/16', except: ['10.40.8.0/23'] }],
      ports: [
        { protocol: 'tcp', port: 5432 },
        { protocol: 'udp', port: 8000, endPort: 8080 },
      ],
    },
  ],
});
const WEB_EGRESS = P({
  name: 'web-egress',
  policyTypes: ['egress'],
  selector: { app: 'web' },
  egress: [
    { to: [{ selector: { app: 'db' } }], ports: [{ protocol: 'tcp', port: 5432 }] },
    { ports: [{ protocol: 'icmp' }] },
  ],
});
const BLUE = P({ name: 'blue-all', network: 'blue', selector: {}, ingress: [{ from: [{ selector: { app: 'db' } }] }] });
const AUDIT = P({ name: 'web-audit', selector: { app: 'web' }, ingress: [], mode: 'audit' });

const bluePort = { network: 'blue', hostVeth: 'vwt0000cccc', mac: '02:00:00:00:01:02', ip: '10.33.0.2' };
const newEndpoint = { id: 'z', network: 'weavets', ip: '10.32.0.9', labels: { app: 'web' }, host: 'h3' };
/** A third local container, relabelled from db to web: one selector set loses it, another gains it. */
const thirdPort = { network: 'weavets', hostVeth: 'vwt0000dddd', mac: '02:00:00:00:00:06', ip: '10.32.0.6' };
const third = (app: string) => ({ id: 'e', network: 'weavets', ip: '10.32.0.6', labels: { app }, host: 'h1' });

/** A walk through the kinds of change: tables appearing and going, sets, chains, ports, audit. */
const states: CompileInput[] = [
  base,
  { ...base, policies: [DB] },
  { ...base, policies: [DB, WEB_EGRESS] },
  { ...base, policies: [DB2, WEB_EGRESS], endpoints: [...base.endpoints, newEndpoint] },
  {
    ...base,
    policies: [DB2, WEB_EGRESS],
    endpoints: [...base.endpoints, newEndpoint, third('db')],
    localPorts: [...base.localPorts, thirdPort],
  },
  {
    ...base,
    policies: [DB2, WEB_EGRESS],
    endpoints: [...base.endpoints, newEndpoint, third('web')],
    localPorts: [...base.localPorts, thirdPort],
  },
  { ...base, policies: [DB2, WEB_EGRESS, BLUE], localPorts: [...base.localPorts, bluePort] },
  { ...base, policies: [DB2, AUDIT, BLUE], localPorts: [...base.localPorts, bluePort] },
  { ...base, policies: [DB2, AUDIT], dryRun: true },
  { ...base, policies: [BLUE], localPorts: [base.localPorts[0]!, bluePort] },
  { ...base, policies: [] },
];

function tmpScripts(scripts: string[]): { dir: string; files: string[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-nft-inc-'));
  const files = scripts.map((s, i) => {
    const f = path.join(dir, `s${i}.nft`);
    fs.writeFileSync(f, s);
    return f;
  });
  return { dir, files };
}

/**
 * Runs the scripts in order in one new network namespace (`fresh`: the ruleset flushed
 * before each) and returns `nft -j list ruleset` after each; rejects naming the script nft refused.
 */
function listingsAfter(scripts: string[], fresh: boolean): Promise<string[]> {
  const { dir, files } = tmpScripts(scripts);
  const marker = '----8<----';
  const sh = files
    .map(
      (f, i) =>
        `${fresh ? 'nft flush ruleset && ' : ''}nft -f ${f} || { echo "script ${i} refused" >&2; exit 1; }; nft -j list ruleset; echo '${marker}'`,
    )
    .join('\n');
  return new Promise((resolve, reject) => {
    execFile('unshare', ['--net', 'sh', '-c', sh], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      fs.rmSync(dir, { recursive: true, force: true });
      if (err) reject(new Error(`${stderr}\n${err.message}`));
      else resolve(stdout.split(`${marker}\n`).slice(0, scripts.length));
    });
  });
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The ruleset as a comparable value: per table, sets (elements sorted) and chains (rules in order), no handles. */
function normalize(listing: string): Record<string, unknown> {
  const items = (JSON.parse(listing) as { nftables: Record<string, Record<string, Json>>[] }).nftables;
  const out: Record<string, { sets: Record<string, Json>; chains: Record<string, { def: Json; rules: Json[] }> }> = {};
  const text = (v: Json | undefined): string => (typeof v === 'string' ? v : JSON.stringify(v));
  const table = (family: Json | undefined, name: Json | undefined) =>
    (out[`${text(family)} ${text(name)}`] ??= { sets: {}, chains: {} });
  for (const item of items) {
    const [kind, body] = Object.entries(item)[0]!;
    const { handle: _h, ...rest } = body;
    if (kind === 'table') table(rest['family'], rest['name']);
    else if (kind === 'set') {
      const elem = Array.isArray(rest['elem']) ? [...rest['elem']].map((e) => JSON.stringify(e)).sort() : [];
      table(rest['family'], rest['table']).sets[text(rest['name'])] = { ...rest, elem };
    } else if (kind === 'chain') {
      table(rest['family'], rest['table']).chains[text(rest['name'])] = { def: rest, rules: [] };
    } else if (kind === 'rule') {
      table(rest['family'], rest['table']).chains[text(rest['chain'])]!.rules.push(rest['expr']!);
    }
  }
  return out;
}

describe('incremental nft scripts', () => {
  const compiled: CompiledRuleset[] = states.map(compileRuleset);

  it('send nothing when nothing changed, and only what changed otherwise', () => {
    for (const c of compiled) expect(incrementalScript(c.tables, c.tables)).toBe('');
    // One policy's port list: only that network's ingress chain (and interval set), not the bridge table.
    const a = compileRuleset({ ...base, policies: [DB] });
    const b = compileRuleset({ ...base, policies: [DB2] });
    const script = incrementalScript(a.tables, b.tables)!;
    expect(script).not.toContain('bridge');
    expect(script).not.toContain('delete table');
    expect(script).toContain('flush chain inet weavets_policy n123456_ingress\n');
    expect(script).not.toContain('n123456_egress');
    // A new local port: its chain and the dispatch map, nothing in the inet table.
    const c = compileRuleset({ ...base, policies: [DB], localPorts: [...base.localPorts, bluePort] });
    const portScript = incrementalScript(a.tables, c.tables)!;
    expect(portScript.split('\n').filter((l) => l.startsWith('add chain'))).toEqual([
      'add chain bridge weavets_policy port_vwt0000cccc',
    ]);
    expect(portScript).toContain('flush chain bridge weavets_policy prerouting\n');
    expect(portScript).not.toContain('inet');
    // The full script is what compileRuleset hands the enforcer for start and recovery.
    for (const x of compiled) expect(fullScript(x.tables)).toBe(x.script);
  });

  itWithNft('leave the kernel as the full script of the new state does, step after step', async () => {
    const incremental = [compiled[0]!.script];
    for (let i = 1; i < compiled.length; i++) {
      const s = incrementalScript(compiled[i - 1]!.tables, compiled[i]!.tables);
      expect(s, `state ${i - 1} -> ${i}`).toBeDefined();
      expect(s, `state ${i - 1} -> ${i}`).not.toBe('');
      incremental.push(s!);
    }
    const [stepwise, whole] = await Promise.all([
      listingsAfter(incremental, false),
      listingsAfter(
        compiled.map((c) => c.script),
        true,
      ),
    ]);
    expect(stepwise).toHaveLength(compiled.length);
    for (let i = 0; i < compiled.length; i++) {
      const want = normalize(whole[i]!);
      expect(Object.keys(want).length, `state ${i} has tables`).toBeGreaterThan(0);
      expect(normalize(stepwise[i]!), `after state ${i}`).toEqual(want);
    }
    // And every pair, not only neighbours, for the first few states (from any to any).
    const pairs: string[] = [];
    for (let i = 0; i < 5; i++)
      for (let j = 0; j < 5; j++) {
        if (i === j) continue;
        pairs.push(`nft flush ruleset`);
        pairs.push(compiled[i]!.script + incrementalScript(compiled[i]!.tables, compiled[j]!.tables)!);
      }
    const pairScripts = pairs.filter((_, k) => k % 2 === 1);
    const got = await Promise.all(pairScripts.map((s) => listingsAfter([s], true)));
    let k = 0;
    for (let i = 0; i < 5; i++)
      for (let j = 0; j < 5; j++) {
        if (i === j) continue;
        expect(normalize(got[k++]![0]!), `${i} -> ${j}`).toEqual(normalize(whole[j]!));
      }
  });
});

describe('compile cache', () => {
  it('gives the same ruleset as compiling afresh, across changes of policies and endpoints', () => {
    const cache = new CompileCache();
    let lastEndpoints: unknown;
    let stamp = 0;
    for (const [i, state] of states.entries()) {
      // The caller's stamp changes exactly when the endpoints do.
      if (JSON.stringify(state.endpoints) !== JSON.stringify(lastEndpoints)) stamp++;
      lastEndpoints = state.endpoints;
      const cached = compileRuleset({ ...state, cache: { store: cache, stamp: String(stamp) } });
      expect(cached.script, `state ${i}`).toBe(compileRuleset(state).script);
      // Twice with the same stamp: the second reuses resolved peers and still agrees.
      expect(compileRuleset({ ...state, cache: { store: cache, stamp: String(stamp) } }).script).toBe(cached.script);
    }
  });

  it('the label index selects exactly what a scan of every endpoint selects', () => {
    const endpoints = Array.from({ length: 300 }, (_, i) => ({
      id: `e${i}`,
      network: 'weavets',
      ip: `10.32.${i >> 8}.${i & 255}`,
      labels: { app: `a${i % 7}`, tier: `t${i % 3}`, ...(i % 5 === 0 ? { canary: 'yes' } : {}) },
      host: 'h',
    }));
    const index = new EndpointIndex(endpoints);
    const selectors = [
      {},
      { app: 'a3' },
      { app: 'a3', tier: 't1' },
      { app: 'nobody' },
      { matchLabels: { tier: 't2' }, matchExpressions: [{ key: 'canary', operator: 'Exists' }] },
      { matchExpressions: [{ key: 'app', operator: 'In', values: ['a1', 'a2'] }] },
      { matchLabels: { app: 'a4' }, matchExpressions: [{ key: 'canary', operator: 'DoesNotExist' }] },
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['t0'] }] },
    ];
    for (const sel of selectors) {
      const policy = P({ name: 'p', selector: sel });
      const want = endpoints.filter((e) => selectorMatches(policy.selector, e.labels));
      expect(index.matching(policy.selector), JSON.stringify(sel)).toEqual(want);
    }
  });
});
