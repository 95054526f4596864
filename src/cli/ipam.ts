/**
 * IPAM on the command line: the parsers of `launch`'s store options and their check
 * together (the rows are in launch-options.ts), `rmpeer`, and
 * the table of `status ipam`. The password for etcd is never a flag value: a file, or the
 * environment variable WEAVETS_ETCD_PASSWORD (which the background launcher hands its
 * daemon inside the config, over a pipe).
 */
import type { Command } from 'commander';
import type { DaemonConfig } from '../config';
import type { IpamStatus, RmpeerResult } from '../ipam/status';
import { isIpv4 } from '../net/ipv4';
import { clientFor, stateDirOf } from './context';
import { UsageError, formatJson, formatTable, out } from './output';

/** "10m", "90s", "1h", "0" or a number of seconds -> seconds; undefined when malformed. */
export function parseDurationSeconds(text: string): number | undefined {
  const m = /^(\d{1,7})(s|m|h)?$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
}

/** --etcd: comma-separated http(s) URLs without credentials. */
export function parseEtcdUrls(text: string): string[] {
  const urls = text
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (urls.length === 0) throw new UsageError(`--etcd: '${text}' names no URL; use e.g. http://10.0.0.5:2379`);
  for (const u of urls) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new UsageError(`--etcd: '${u}' is not a URL; use e.g. http://10.0.0.5:2379`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new UsageError(`--etcd: '${u}' must start with http:// or https://`);
    }
    if (parsed.username || parsed.password) {
      throw new UsageError('--etcd: do not put credentials in the URL; use --etcd-user and --etcd-password-file');
    }
  }
  return urls;
}

/** --advertise-address: an IPv4 address. */
export function parseAdvertiseAddress(text: string): string {
  if (!isIpv4(text)) throw new UsageError(`--advertise-address: '${text}' is not an IPv4 address; use e.g. 192.0.2.11`);
  return text;
}

/** A whole number of seconds from `min` to 86400 for `flag`. */
function parseSeconds(flag: string, text: string, min: number): number {
  const n = /^\d{1,6}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= 86400))
    throw new UsageError(`${flag}: '${text}' is not a number of seconds from ${min} to 86400`);
  return n;
}

export const parseIpamLeaseTtl = (text: string): number => parseSeconds('--ipam-lease-ttl', text, 2);
export const parseIpamReclaimGrace = (text: string): number => parseSeconds('--ipam-reclaim-grace', text, 1);

/** --address-retention: a duration up to 7 days. */
export function parseAddressRetention(text: string): number {
  const n = parseDurationSeconds(text);
  if (n === undefined || n > 7 * 86400)
    throw new UsageError(`--address-retention: '${text}' is not a duration up to 7 days (e.g. 10m, 90s, 0)`);
  return n;
}

/** --ipalloc-block: a prefix length from 8 to 30, with or without its slash. */
export function parseIpallocBlock(text: string): number {
  const n = /^\/?\d{1,2}$/.test(text) ? Number(text.replace('/', '')) : NaN;
  if (!(n >= 8 && n <= 30))
    throw new UsageError(`--ipalloc-block: '${text}' is not a prefix length from 8 to 30 (e.g. 26)`);
  return n;
}

/** The flags that only mean something with --etcd. */
export const ETCD_ONLY_FLAGS = [
  '--etcd-ca',
  '--etcd-cert',
  '--etcd-key',
  '--etcd-user',
  '--etcd-password-file',
] as const;

/**
 * The store options checked together, once the table has filled config.etcd: the
 * etcd-only flags need --etcd, a client certificate needs its key, and a password (the
 * file, else WEAVETS_ETCD_PASSWORD) needs the user it belongs to.
 */
export function checkStoreOptions(
  config: DaemonConfig,
  given: (flag: string) => boolean,
  env: NodeJS.ProcessEnv,
): void {
  const etcd = config.etcd;
  if (etcd === undefined) {
    const stray = ETCD_ONLY_FLAGS.find(given);
    if (stray !== undefined)
      throw new UsageError(`${stray} needs --etcd: give the etcd URLs with --etcd, or drop ${stray}`);
    return;
  }
  if ((etcd.certFile === undefined) !== (etcd.keyFile === undefined)) {
    throw new UsageError('--etcd-cert and --etcd-key go together: give the client certificate and its key, or neither');
  }
  const fromEnv = env['WEAVETS_ETCD_PASSWORD'];
  if (etcd.passwordFile === undefined && fromEnv !== undefined && fromEnv !== '') etcd.password = fromEnv;
  if ((etcd.passwordFile !== undefined || etcd.password !== undefined) && etcd.username === undefined) {
    throw new UsageError(
      `an etcd password (${etcd.passwordFile !== undefined ? '--etcd-password-file' : 'WEAVETS_ETCD_PASSWORD'}) needs --etcd-user: give the user it belongs to`,
    );
  }
}

export function formatIpamStatus(s: IpamStatus): string {
  let text = `Store: ${s.store.kind} ${s.store.location}\nRange: ${s.range}, blocks of /${s.blockPrefix}, lease TTL ${s.leaseTtlSeconds} s\n`;
  const rows: string[][] = [];
  for (const n of s.networks) {
    for (const b of n.blocks) rows.push([n.network, b.cidr, String(b.used), String(b.free)]);
  }
  text += '\nBlocks owned by this host:\n';
  text +=
    rows.length === 0
      ? '  (none yet)\n'
      : formatTable(['NETWORK', 'BLOCK', 'USED', 'FREE'], rows).replace(/^(?=.)/gm, '  ');
  if (s.networks.length > 0) {
    text += '\nPer network:\n';
    text += formatTable(
      ['NETWORK', 'BLOCKS', 'USED', 'FREE'],
      s.networks.map((n) => [n.network, String(n.blocks.length), String(n.used), String(n.free)]),
    ).replace(/^(?=.)/gm, '  ');
  }
  text += '\nBlocks of every host:\n';
  text +=
    s.blocks.length === 0
      ? '  (none yet)\n'
      : formatTable(
          ['NETWORK', 'BLOCK', 'OWNER', 'NICKNAME'],
          s.blocks.map((b) => [b.network, b.cidr, b.owner + (b.owner === s.name ? ' (this host)' : ''), b.nickname]),
        ).replace(/^(?=.)/gm, '  ');
  if (s.conflicts.length > 0) {
    text += '\nCONFLICTS (held by several hosts; nothing new is allocated from a contested block):\n';
    text += formatTable(
      ['KEY', 'HOLDERS'],
      s.conflicts.map((c) => [c.key, c.holders.join(' ')]),
    ).replace(/^(?=.)/gm, '  ');
  }
  text += '\nRegistered hosts:\n';
  text += formatTable(
    ['NAME', 'NICKNAME', 'ADDRESS'],
    s.hosts.map((h) => [h.name + (h.name === s.name ? ' (this host)' : ''), h.nickname, h.address]),
  ).replace(/^(?=.)/gm, '  ');
  return text;
}

/** `rmpeer`; the store flags of `launch` are in its option table (launch-options.ts). */
export function registerIpam(program: Command): void {
  program
    .command('rmpeer')
    .description("release a dead host's address blocks and addresses now, instead of after its lease TTL")
    .argument('<name>', 'peer name (7e:21:0a:b4:19:c2) or nickname of the host that is gone')
    .option('--json', 'print JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => {
      const r = await clientFor(stateDirOf(cmd)).post<RmpeerResult>('/ipam/rmpeer', { name });
      out(
        flags.json ? formatJson(r) : `${r.name}: released ${r.blocks.length} block(s) and ${r.addresses} address(es)`,
      );
    });
}
