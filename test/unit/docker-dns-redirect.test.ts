/**
 * The redirect of Docker containers' external DNS to weavets DNS (src/docker/dns-redirect.ts):
 * the nft scripts (checked by the real nft in a throwaway namespace when we can), the
 * table's life (fresh at start, rewritten only on change, gone on clear), and the flag.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DNS_REDIRECT_TABLE, DnsRedirect, mapScript, tableScript } from '../../src/docker/dns-redirect';
import { buildDaemonConfig } from '../../src/cli/launch';
import { decodeConfig, encodeConfig } from '../../src/cli/config-pipe';
import { itWithTools } from '../require-tools';

const itWithNft = itWithTools({
  commands: ['nft', 'unshare'],
  other: () =>
    process.getuid?.() === 0 && spawnSync('unshare', ['--net', 'true']).status === 0
      ? undefined
      : 'root (unshare --net)',
});

/** The real nft on a new, empty network namespace that goes away with the process. */
function nftCheck(script: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('unshare', ['--net', 'sh', '-c', 'nft -f /dev/stdin'], (err, _stdout, stderr) => {
      resolve({ code: err ? 1 : 0, stderr });
    });
    child.stdin?.end(script);
  });
}

describe('DNS redirect scripts', () => {
  const resolvers = [
    { bridge: 'wtb5263cf', address: '10.32.0.64', port: 53 },
    { bridge: 'weavets', address: '10.32.0.65', port: 5353 },
  ];

  it('rewrites the whole map in one transaction, sorted by bridge', () => {
    expect(mapScript(resolvers)).toBe(
      `flush map ip ${DNS_REDIRECT_TABLE} resolvers\nadd element ip ${DNS_REDIRECT_TABLE} resolvers { "weavets" : 10.32.0.65 . 5353, "wtb5263cf" : 10.32.0.64 . 53 }\n`,
    );
    expect(mapScript([])).toBe(`flush map ip ${DNS_REDIRECT_TABLE} resolvers\n`);
  });

  it('replaces a leftover table in the same transaction, and catches only DNS to servers neither local nor in the overlay', () => {
    const t = tableScript('10.32.0.0/12');
    expect(t.startsWith(`table ip ${DNS_REDIRECT_TABLE} {}\ndelete table ip ${DNS_REDIRECT_TABLE}\n`)).toBe(true);
    expect(t).toContain(
      'th dport 53 ip daddr != 10.32.0.0/12 fib daddr type != local dnat ip to iifname map @resolvers',
    );
    expect(t).toContain('meta l4proto { tcp, udp }');
  });

  itWithNft('is accepted by the real nft, twice over (a leftover table is replaced)', async () => {
    const all =
      tableScript('10.32.0.0/12') +
      mapScript(resolvers) +
      tableScript('10.32.0.0/12') +
      mapScript(resolvers.slice(1)) +
      mapScript([]);
    const r = await nftCheck(all);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('DnsRedirect', () => {
  function fake(): { calls: string[]; redirect: DnsRedirect; fail: { next: boolean } } {
    const calls: string[] = [];
    const fail = { next: false };
    const redirect = new DnsRedirect(async (args, input) => {
      calls.push([...args, input ?? ''].join(' ').trim());
      if (fail.next) {
        fail.next = false;
        throw new Error('nft: boom');
      }
      return '';
    });
    return { calls, redirect, fail };
  }
  const r1 = { bridge: 'wtb000001', address: '10.32.0.1', port: 53 };
  const r2 = { bridge: 'wtb000002', address: '10.32.0.1', port: 53 };

  it('makes the table with the first bridge, writes the map only when it changes, deletes it with the last bridge and on clear', async () => {
    const { calls, redirect } = fake();
    const del = `delete table ip ${DNS_REDIRECT_TABLE}`;
    await redirect.set([r1]); // before start: nothing
    expect(calls).toEqual([]);
    await redirect.start('10.32.0.0/12');
    expect(calls).toEqual([del]); // a leftover goes; no table (no conntrack) without a bridge
    await redirect.set([]);
    expect(calls).toHaveLength(1);
    await redirect.set([r1]);
    expect(calls.at(-1)).toBe(`-f - ${tableScript('10.32.0.0/12')}${mapScript([r1])}`.trim());
    await redirect.set([r1]);
    await redirect.set([r2, r1]);
    await redirect.set([r1, r2]);
    expect(calls.slice(2)).toEqual([`-f - ${mapScript([r1, r2])}`.trim()]);
    await redirect.set([]);
    expect(calls.at(-1)).toBe(del);
    await redirect.set([r2]);
    expect(calls.at(-1)).toBe(`-f - ${tableScript('10.32.0.0/12')}${mapScript([r2])}`.trim());
    await redirect.clear();
    expect(calls.at(-1)).toBe(del);
    await redirect.set([r1]); // cleared: nothing until the next start
    expect(calls).toHaveLength(6);
  });

  it('retries a map nft refused on the next set, and clear never throws', async () => {
    const { calls, redirect, fail } = fake();
    await redirect.start('10.32.0.0/12');
    fail.next = true;
    await expect(redirect.set([r1])).rejects.toThrow(/boom/);
    await redirect.set([r1]);
    expect(calls.filter((c) => c.includes('add element'))).toHaveLength(2);
    expect(calls.at(-1)).toContain(tableScript('10.32.0.0/12').trim());
    fail.next = true;
    await expect(redirect.set([])).rejects.toThrow(/boom/);
    await redirect.set([]); // the delete is retried
    expect(calls.at(-1)).toBe(`delete table ip ${DNS_REDIRECT_TABLE}`);
    fail.next = true;
    await expect(redirect.clear()).resolves.toBeUndefined();
  });
});

describe('--no-docker-dns-redirect', () => {
  const flags = {
    port: '6783',
    bindAddress: '0.0.0.0',
    ipallocRange: '10.32.0.0/12',
    datapath: 'auto' as const,
    httpAddr: '',
    mtu: '0',
    logLevel: 'info' as const,
  };

  it('is on unless turned off, and the background launcher passes the choice on', () => {
    const on = buildDaemonConfig('/tmp/wt', [], { ...flags, dockerDnsRedirect: true });
    expect(on.dockerDnsRedirect).toBe(true);
    expect(decodeConfig(encodeConfig(on)).dockerDnsRedirect).toBe(true);
    const off = buildDaemonConfig('/tmp/wt', [], { ...flags, dockerDnsRedirect: false });
    expect(off.dockerDnsRedirect).toBe(false);
    expect(decodeConfig(encodeConfig(off)).dockerDnsRedirect).toBe(false);
  });

  it('is in launch --help', async () => {
    const root = path.resolve(__dirname, '..', '..');
    const out = await new Promise<string>((resolve) =>
      execFile(
        process.execPath,
        ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'launch', '--help'],
        { cwd: root, timeout: 30_000 },
        (_e, stdout) => resolve(stdout),
      ),
    );
    expect(out).toMatch(/--no-docker-dns-redirect/);
  });
});
