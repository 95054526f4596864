/**
 * IPAM on the command line: the store flags of `launch` checked together, `rmpeer`, and
 * the table of `status ipam`. The password for etcd is never a flag value: a file, or the
 * environment variable WEAVETS_ETCD_PASSWORD (which the background launcher hands its
 * daemon inside the config, over a pipe).
 */
import type { Command } from 'commander';
import {
  DEFAULT_ADDRESS_RETENTION_SECONDS,
  DEFAULT_IPAM_LEASE_TTL_SECONDS,
  DEFAULT_IPAM_RECLAIM_GRACE_SECONDS,
  type DaemonConfig,
  type EtcdConfig,
} from '../config';
import type { IpamStatus, RmpeerResult } from '../ipam/status';
import { isIpv4 } from '../net/ipv4';
import { clientFor, stateDirOf } from './context';
import { UsageError, formatJson, formatTable, out } from './output';

export interface StoreFlags {
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdUser?: string;
  etcdPasswordFile?: string;
  advertiseAddress?: string;
  ipamLeaseTtl?: string;
  ipamReclaimGrace?: string;
  ipallocBlock?: string;
  addressRetention?: string;
}

/** "10m", "90s", "1h", "0" or a number of seconds -> seconds; undefined when malformed. */
export function parseDurationSeconds(text: string): number | undefined {
  const m = /^(\d{1,7})(s|m|h)?$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
}

function parseEtcdUrls(text: string): string[] {
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

/** Fill the store part of the daemon config from the flags and WEAVETS_ETCD_PASSWORD. */
export function applyStoreFlags(config: DaemonConfig, flags: StoreFlags, env: NodeJS.ProcessEnv = process.env): void {
  if (flags.etcd !== undefined) {
    const etcd: EtcdConfig = { endpoints: parseEtcdUrls(flags.etcd) };
    if (flags.etcdCa !== undefined) etcd.caFile = flags.etcdCa;
    if (flags.etcdCert !== undefined) etcd.certFile = flags.etcdCert;
    if (flags.etcdKey !== undefined) etcd.keyFile = flags.etcdKey;
    if ((flags.etcdCert === undefined) !== (flags.etcdKey === undefined)) {
      throw new UsageError('--etcd-cert and --etcd-key go together');
    }
    if (flags.etcdUser !== undefined) etcd.username = flags.etcdUser;
    if (flags.etcdPasswordFile !== undefined) etcd.passwordFile = flags.etcdPasswordFile;
    const fromEnv = env['WEAVETS_ETCD_PASSWORD'];
    if (flags.etcdPasswordFile === undefined && fromEnv !== undefined && fromEnv !== '') etcd.password = fromEnv;
    if ((etcd.passwordFile !== undefined || etcd.password !== undefined) && etcd.username === undefined) {
      throw new UsageError('an etcd password needs --etcd-user');
    }
    config.etcd = etcd;
  } else {
    for (const [flag, v] of [
      ['--etcd-ca', flags.etcdCa],
      ['--etcd-cert', flags.etcdCert],
      ['--etcd-key', flags.etcdKey],
      ['--etcd-user', flags.etcdUser],
      ['--etcd-password-file', flags.etcdPasswordFile],
    ] as const) {
      if (v !== undefined) throw new UsageError(`${flag} needs --etcd`);
    }
  }
  config.ipamLeaseTtl = DEFAULT_IPAM_LEASE_TTL_SECONDS;
  config.ipamReclaimGrace = DEFAULT_IPAM_RECLAIM_GRACE_SECONDS;
  config.addressRetention = DEFAULT_ADDRESS_RETENTION_SECONDS;
  if (flags.advertiseAddress !== undefined) {
    if (!isIpv4(flags.advertiseAddress)) {
      throw new UsageError(
        `--advertise-address: '${flags.advertiseAddress}' is not an IPv4 address; use e.g. 192.0.2.11`,
      );
    }
    config.advertiseAddress = flags.advertiseAddress;
  }
  if (flags.ipamLeaseTtl !== undefined) {
    const n = /^\d{1,6}$/.test(flags.ipamLeaseTtl) ? Number(flags.ipamLeaseTtl) : NaN;
    if (!(n >= 2 && n <= 86400))
      throw new UsageError(`--ipam-lease-ttl: '${flags.ipamLeaseTtl}' is not a number of seconds from 2 to 86400`);
    config.ipamLeaseTtl = n;
  }
  if (flags.addressRetention !== undefined) {
    const n = parseDurationSeconds(flags.addressRetention);
    if (n === undefined || n > 7 * 86400) {
      throw new UsageError(
        `--address-retention: '${flags.addressRetention}' is not a duration up to 7 days (e.g. 10m, 90s, 0)`,
      );
    }
    config.addressRetention = n;
  }
  if (flags.ipamReclaimGrace !== undefined) {
    const n = /^\d{1,6}$/.test(flags.ipamReclaimGrace) ? Number(flags.ipamReclaimGrace) : NaN;
    if (!(n >= 1 && n <= 86400))
      throw new UsageError(
        `--ipam-reclaim-grace: '${flags.ipamReclaimGrace}' is not a number of seconds from 1 to 86400`,
      );
    config.ipamReclaimGrace = n;
  }
  if (flags.ipallocBlock !== undefined) {
    const n = /^\/?\d{1,2}$/.test(flags.ipallocBlock) ? Number(flags.ipallocBlock.replace('/', '')) : NaN;
    if (!(n >= 8 && n <= 30))
      throw new UsageError(`--ipalloc-block: '${flags.ipallocBlock}' is not a prefix length from 8 to 30 (e.g. 26)`);
    config.ipallocBlock = n;
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
