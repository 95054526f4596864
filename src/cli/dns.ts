/**
 * DNS on the command line: the parsers of the launch options (--dns-listen, --dns-domain,
 * --dns-ttl, --no-dns; the rows are in launch-options.ts) and their check together,
 * `dns-add`, `dns-remove`, `dns-lookup`, the table of `status dns`, and the resolv.conf
 * `attach` writes for a named namespace.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_DNS, type DaemonConfig } from '../config';
import type { DnsLookupResult, DnsRecordView, DnsStatus } from '../dns/status';
import type { EndpointStatus } from '../endpoint/types';
import { clientFor, stateDirOf } from './context';
import { UsageError, formatJson, formatTable, out } from './output';
import { WeavetsError } from '../errors';

function parsePortText(text: string, what: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    throw new UsageError(`${what}: '${text}' is not a port (1-65535)`);
  return Number(text);
}

/** config.dns, made with the defaults the first time a DNS option fills it. */
export function dnsOf(config: DaemonConfig): DaemonConfig['dns'] {
  const partial: Partial<DaemonConfig> = config;
  partial.dns ??= { ...DEFAULT_DNS, extraListen: [] };
  return partial.dns;
}

/** --dns-listen: the port on the host's bridge addresses, then optional loopback listeners. */
export function parseDnsListen(text: string): { port: number | undefined; extraListen: string[] } {
  let port: number | undefined;
  const extraListen: string[] = [];
  for (const p of text
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')) {
    const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(p);
    if (!m) {
      port = parsePortText(p, '--dns-listen');
      continue;
    }
    if (!/^127\.\d+\.\d+\.\d+$/.test(m[1]!)) {
      throw new UsageError(
        `--dns-listen ${p}: only loopback addresses may be given; the DNS also listens on the host's bridge addresses, never on the underlay`,
      );
    }
    extraListen.push(`${m[1]}:${parsePortText(m[2]!, '--dns-listen')}`);
  }
  return { port, extraListen };
}

/** --dns-domain: a domain name, stored absolute (with its final dot). */
export function parseDnsDomain(text: string): string {
  const d = text.toLowerCase().replace(/\.$/, '');
  if (
    !/^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/.test(d) ||
    d.length > 200
  ) {
    throw new UsageError(`--dns-domain: '${text}' is not a domain name such as weavets.local`);
  }
  return d + '.';
}

/** --dns-ttl: seconds from 0 to 86400. */
export function parseDnsTtl(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 86400)
    throw new UsageError(`--dns-ttl: '${text}' is not a number of seconds from 0 to 86400`);
  return Number(text);
}

/** The DNS options that only mean something with the DNS on. */
export const DNS_SETTING_FLAGS = ['--dns-listen', '--dns-domain', '--dns-ttl', '--dns-resolv-conf'] as const;

/** The DNS options checked together: --no-dns with a DNS setting is a contradiction, not a choice. */
export function checkDnsOptions(config: DaemonConfig, given: (flag: string) => boolean): void {
  if (config.dns.enabled) return;
  const setting = DNS_SETTING_FLAGS.find(given);
  if (setting !== undefined)
    throw new UsageError(`--no-dns turns the DNS off, so ${setting} sets nothing: drop ${setting}, or drop --no-dns`);
}

export function formatDnsStatus(s: DnsStatus): string {
  const pairs: [string, string][] = [
    ['Domain', s.domain],
    ['TTL', `${s.ttl} s`],
    ['Listen', s.listen.join(', ') || '(nothing yet)'],
    ['Records', `${s.records} (${s.names} names; ${s.local} from this host)`],
    ['Upstream', `${s.upstream.join(', ') || '(none)'} from ${s.resolvConf}`],
    [
      'Queries',
      `${s.queries.answered} answered, ${s.queries.nxdomain} nxdomain, ${s.queries.forwarded} forwarded, ${s.queries.servfail} servfail, ${s.queries.formerr} formerr, ${s.queries.dropped} dropped`,
    ],
  ];
  const width = Math.max(...pairs.map(([k]) => k.length));
  let text = pairs.map(([k, v]) => `${k.padStart(width)}: ${v}`).join('\n') + '\n';
  if (s.entries.length > 0) {
    text +=
      '\n' +
      formatTable(
        ['NAME', 'ADDRESS', 'HOST'],
        s.entries.map((e) => [e.name, e.ip, e.host]),
      ).replace(/^(?=.)/gm, '  ');
  }
  return text;
}

/**
 * `ip netns exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf, so a
 * container that is a named namespace gets weavets DNS there. Other namespaces (a
 * /proc/PID/ns/net path) are the runtime's business: nothing is written.
 */
export function resolvConfPathFor(netns: string): string | undefined {
  const m = /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(netns);
  return m ? path.join('/etc/netns', m[1]!, 'resolv.conf') : undefined;
}

const RESOLV_CONF_MARK = '# written by weavets attach';

export function resolvConfText(dns: { nameservers: string[]; search: string[] }): string {
  return `${RESOLV_CONF_MARK}\n${dns.nameservers.map((n) => `nameserver ${n}`).join('\n')}\nsearch ${dns.search.join(' ')}\noptions ndots:1\n`;
}

export type ResolvConfOutcome = { written: string } | { kept: string };

/**
 * Write the container's resolv.conf when its namespace is a named one. Only a file that
 * is absent, or that we wrote (it starts with our mark), is written: a resolv.conf the
 * user put there is theirs and is kept as it is (`kept`), never overwritten; so is
 * anything that is not a regular file (a symlink is not followed). undefined: nothing
 * to do (no DNS, or not a named namespace).
 */
export function writeContainerResolvConf(ep: EndpointStatus): ResolvConfOutcome | undefined {
  if (!ep.dns) return undefined;
  const file = resolvConfPathFor(ep.netns);
  if (!file) return undefined;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const text = resolvConfText(ep.dns);
  const { O_WRONLY, O_CREAT, O_EXCL, O_TRUNC, O_NOFOLLOW } = fs.constants;
  let fd: number;
  try {
    // O_EXCL: created by us now, or not at all (an existing file or symlink fails).
    fd = fs.openSync(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!isOurResolvConf(file)) return { kept: file };
    fd = fs.openSync(file, O_WRONLY | O_TRUNC | O_NOFOLLOW);
  }
  try {
    fs.writeSync(fd, text);
  } finally {
    fs.closeSync(fd);
  }
  return { written: file };
}

/** A regular file (not a symlink) that starts with the mark attach writes. */
function isOurResolvConf(file: string): boolean {
  try {
    if (!fs.lstatSync(file).isFile()) return false;
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const head = Buffer.alloc(RESOLV_CONF_MARK.length);
      const n = fs.readSync(fd, head, 0, head.length, 0);
      return head.subarray(0, n).toString('utf8') === RESOLV_CONF_MARK;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/**
 * Remove the resolv.conf writeContainerResolvConf wrote (and its /etc/netns/NAME directory
 * when that leaves it empty). A file someone else wrote there is left alone.
 */
export function removeContainerResolvConf(ep: EndpointStatus): void {
  const file = resolvConfPathFor(ep.netns);
  if (!file) return;
  try {
    if (!isOurResolvConf(file)) return;
    fs.rmSync(file);
    fs.rmdirSync(path.dirname(file));
  } catch {
    // Gone already, or the directory holds other files: both fine.
  }
}

function formatLookup(r: DnsLookupResult): string {
  return 'addresses' in r ? r.addresses.join('\n') : r.names.join('\n');
}

/** `dns-add`, `dns-remove`, `dns-lookup`; the DNS flags of `launch` are in its option table (launch-options.ts). */
export function registerDns(program: Command): void {
  program
    .command('dns-add')
    .description('add DNS records NAME -> IP on this host (kept across restarts; gone with the host)')
    .argument('<name>', 'name, e.g. db (answered as db.weavets.local)')
    .argument('<ips...>', 'IPv4 addresses')
    .action(async (name: string, ips: string[], _flags: unknown, cmd: Command) => {
      await clientFor(stateDirOf(cmd)).post<DnsRecordView[]>('/dns/add', { name, ips });
    });

  program
    .command('dns-remove')
    .description('remove records added with dns-add on this host: all of NAME, or only the given IPs')
    .argument('<name>', 'name')
    .argument('[ips...]', 'IPv4 addresses')
    .action(async (name: string, ips: string[], _flags: unknown, cmd: Command) => {
      await clientFor(stateDirOf(cmd)).post<DnsRecordView[]>('/dns/remove', ips.length > 0 ? { name, ips } : { name });
    });

  program
    .command('dns-lookup')
    .description("print a name's addresses (or an address's names) as every host's DNS serves them")
    .argument('<name>', 'name, NAME.DOMAIN, or an IPv4 address')
    .option('--json', 'print JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => {
      const r = await clientFor(stateDirOf(cmd)).post<DnsLookupResult>('/dns/lookup', { name });
      if (flags.json) out(formatJson(r));
      else if (('addresses' in r ? r.addresses : r.names).length === 0)
        throw new WeavetsError('EWEAVETS_NOT_FOUND', `no record for ${'name' in r ? r.name : r.address}`);
      else out(formatLookup(r));
    });
}
