/**
 * Every option of `weavets launch`, once: its flag, its help, the default commander shows,
 * the environment variable that may stand in for it, and how its text becomes a field of
 * DaemonConfig. commander's options and `launch --help` are made from this table, and
 * configFromOptions fills the config from it: every row's parser first, then, once, the
 * checks between the options of each group (the password, the store, DNS), which also
 * read what a group takes from outside its flags (the password, WEAVETS_ETCD_PASSWORD).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import {
  DEFAULT_ADDRESS_RETENTION_SECONDS,
  DEFAULT_DOCKER_HOST,
  DEFAULT_DOCKER_PLUGIN_SOCKET,
  DEFAULT_HTTP_ADDR,
  DEFAULT_IPALLOC_RANGE,
  DEFAULT_IPAM_LEASE_TTL_SECONDS,
  DEFAULT_IPAM_RECLAIM_GRACE_SECONDS,
  DEFAULT_DNS,
  DEFAULT_PORT,
  type DaemonConfig,
} from '../config';
import { DEFAULT_LOG_MAX_SIZE, parseLogSize } from '../log';
import { formatCidr, parseCidr } from '../net/ipv4';
import { UsageError } from './output';
import { readPasswordFd, readPasswordFile, takePasswordFromEnv } from './secrets';
import {
  checkStoreOptions,
  parseAddressRetention,
  parseAdvertiseAddress,
  parseEtcdUrls,
  parseIpallocBlock,
  parseIpamLeaseTtl,
  parseIpamReclaimGrace,
} from './ipam';
import { checkDnsOptions, dnsOf, parseDnsDomain, parseDnsListen, parseDnsTtl } from './dns';
import {
  parseBindAddress,
  parseHttpAddr,
  parseMtu,
  parseNickname,
  parsePeerNameFlag,
  parsePort,
  parseRangeCidr,
} from './validate';

/** What commander hands over for one option: its text, true/false for a switch, undefined when absent. */
export type FlagValue = string | boolean | undefined;

export interface LaunchOption {
  /** commander's spec: "--port <n>", "--no-flows". */
  readonly flags: string;
  readonly help: string;
  /** The default commander applies and `--help` shows; absent: the option's parser resolves it. */
  readonly shownDefault?: string;
  readonly choices?: readonly string[];
  /** An environment variable read when the flag is not given (the flag wins). */
  readonly env?: string;
  /** Internal options the background launcher passes; not in --help. */
  readonly hidden?: boolean;
  /** Options checked together (GROUP_CHECKS); `launch`: the launch command's own, not config. */
  readonly group?: OptionGroup;
  /** Set this option's field of the config from its value (defaults resolved here, once). */
  readonly fill?: (config: DaemonConfig, value: FlagValue) => void;
}

export type OptionGroup = 'password' | 'store' | 'dns' | 'launch';

/** The flag's long name as commander keys its value: "--docker-dns-redirect" -> "dockerDnsRedirect". */
export function optionKey(o: LaunchOption): string {
  const long = /--(?:no-)?([a-z0-9-]+)/.exec(o.flags)?.[1] ?? '';
  return long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const text = (v: FlagValue): string | undefined => (typeof v === 'string' ? v : undefined);

/** The config's etcd settings, once --etcd (filled first) made them; absent without --etcd (GROUP_CHECKS refuses). */
function etcdSetting(
  c: DaemonConfig,
  v: FlagValue,
  set: (etcd: NonNullable<DaemonConfig['etcd']>, t: string) => void,
): void {
  const t = text(v);
  if (t !== undefined && c.etcd !== undefined) set(c.etcd, t);
}

function parsePasswordFd(v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError('--password-fd: expected a file descriptor number');
  return Number(v);
}

function parseLogMaxSize(v: string | undefined): number {
  if (v === undefined) return DEFAULT_LOG_MAX_SIZE;
  const size = parseLogSize(v);
  if (size === undefined || (size > 0 && size < 4096)) {
    throw new UsageError(
      `--log-max-size: want a size such as 10M, 512K or 0 (no cap), at least 4K; got ${JSON.stringify(v)}`,
    );
  }
  return size;
}

function parseTrustedSubnets(v: string | undefined): string[] {
  if (v === undefined || v.trim() === '') return [];
  return v.split(',').map((c) => {
    try {
      return formatCidr(parseCidr(c.trim()));
    } catch (err) {
      throw new UsageError(`--trusted-subnets: ${(err as Error).message}`, { cause: err });
    }
  });
}

function parseDockerPluginSocket(v: string | undefined): string {
  if (v === undefined) return DEFAULT_DOCKER_PLUGIN_SOCKET;
  if (v !== '' && !v.startsWith('/'))
    throw new UsageError('--docker-plugin-socket: give an absolute path (or "" to turn the Docker plugin off)');
  return v;
}

function parseDockerDriverName(v: string): string {
  // Docker's own rule for plugin references: [host/]name[:tag], lower case.
  if (!/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$/.test(v))
    throw new UsageError('--docker-driver-name: want a Docker plugin name such as weavets/net:0.2.0');
  return v;
}

function parseDockerHost(v: string | undefined): string {
  if (v === undefined) return DEFAULT_DOCKER_HOST;
  if (!/^(unix:\/\/\/.+|tcp:\/\/[^:/]+:\d+)$/.test(v))
    throw new UsageError('--docker-host: want unix:///path or tcp://host:port');
  return v;
}

export const LAUNCH_OPTIONS: readonly LaunchOption[] = [
  { flags: '--foreground', help: 'stay in the foreground (systemd, containers)', group: 'launch' },
  {
    flags: '--name <name>',
    help: 'peer name, six hex bytes like 7e:21:0a:b4:19:c2 (default: persisted or random)',
    fill: (c, v) => {
      const t = text(v);
      if (t !== undefined) c.name = parsePeerNameFlag(t);
    },
  },
  {
    flags: '--nickname <nickname>',
    help: 'human-friendly peer name (default: hostname)',
    fill: (c, v) => (c.nickname = parseNickname(text(v) ?? os.hostname())),
  },
  {
    flags: '--port <n>',
    help: 'TCP control and UDP data port',
    shownDefault: String(DEFAULT_PORT),
    fill: (c, v) => (c.port = parsePort(text(v) ?? String(DEFAULT_PORT), '--port')),
  },
  {
    flags: '--bind-address <ip>',
    help: 'address to bind the control and data ports to',
    shownDefault: '0.0.0.0',
    fill: (c, v) => (c.bindAddress = parseBindAddress(text(v) ?? '0.0.0.0')),
  },
  {
    flags: '--ipalloc-range <cidr>',
    help: 'range container addresses come from',
    shownDefault: DEFAULT_IPALLOC_RANGE,
    fill: (c, v) => (c.ipallocRange = parseRangeCidr(text(v) ?? DEFAULT_IPALLOC_RANGE)),
  },
  {
    flags: '--datapath <mode>',
    help: 'data path',
    choices: ['auto', 'sleeve', 'fastdp'],
    shownDefault: 'auto',
    fill: (c, v) => (c.datapath = (text(v) ?? 'auto') as DaemonConfig['datapath']),
  },
  {
    flags: '--http-addr <host:port>',
    help: 'status and metrics listener; "" turns it off',
    shownDefault: DEFAULT_HTTP_ADDR,
    fill: (c, v) => (c.httpAddr = parseHttpAddr(text(v) ?? DEFAULT_HTTP_ADDR)),
  },
  {
    flags: '--mtu <n>',
    help: 'container MTU; 0 derives it from the underlay',
    shownDefault: '0',
    fill: (c, v) => (c.mtu = parseMtu(text(v) ?? '0')),
  },
  {
    flags: '--log-level <level>',
    help: 'log level',
    choices: ['debug', 'info', 'warn', 'error'],
    shownDefault: 'info',
    fill: (c, v) => (c.logLevel = (text(v) ?? 'info') as DaemonConfig['logLevel']),
  },
  {
    flags: '--log-max-size <size>',
    help: 'when the log is a file (background launch): rotate it at this size, keeping 2 old copies (10M default; K, M, G; 0 = no cap)',
    fill: (c, v) => (c.logMaxSize = parseLogMaxSize(text(v))),
  },
  {
    flags: '--password-file <file>',
    help: 'network password (root-only file); or set WEAVETS_PASSWORD. Encrypts and authenticates all peer traffic',
    env: 'WEAVETS_PASSWORD',
    group: 'password',
    // The file is read by the group's check, after --password-fd is known not to be given too.
    fill: (c, v) => {
      const t = text(v);
      if (t === '') throw new UsageError('--password-file: give the path of a root-only file holding the password');
      if (t !== undefined) c.passwordFile = t;
    },
  },
  {
    flags: '--password-fd <fd>',
    help: '',
    hidden: true,
    group: 'password',
    fill: (_, v) => {
      const t = text(v);
      if (t !== undefined) parsePasswordFd(t);
    },
  },
  { flags: '--config-fd <fd>', help: '', hidden: true, group: 'launch' },
  {
    flags: '--trusted-subnets <cidrs>',
    help: 'comma-separated CIDRs of peers whose data may go unencrypted (control stays sealed)',
    fill: (c, v) => (c.trustedSubnets = parseTrustedSubnets(text(v))),
  },
  {
    flags: '--docker-plugin-socket <path>',
    help: 'Docker network + IPAM plugin socket; the driver name is its base name; "" turns it off (default /run/docker/plugins/weavets.sock)',
    fill: (c, v) => (c.dockerPluginSocket = parseDockerPluginSocket(text(v))),
  },
  {
    flags: '--docker-driver-name <name>',
    help: "the driver name Docker knows this daemon by: a managed plugin's name (weavets/net:0.2.0); default: the plugin socket's base name",
    fill: (c, v) => {
      const t = text(v);
      if (t !== undefined) c.dockerDriverName = parseDockerDriverName(t);
    },
  },
  {
    flags: '--docker-host <url>',
    help: 'Docker API, for network and container names (default unix:///var/run/docker.sock)',
    fill: (c, v) => (c.dockerHost = parseDockerHost(text(v))),
  },
  {
    flags: '--policy-dry-run',
    help: 'policies log what they would drop (policy drops) and drop nothing',
    fill: (c, v) => (c.policyDryRun = v === true),
  },
  {
    flags: '--no-docker-dns-redirect',
    help: "leave Docker containers' external DNS queries alone (by default they go to weavets DNS, which knows every host's containers)",
    fill: (c, v) => (c.dockerDnsRedirect = v !== false),
  },
  {
    flags: '--no-flows',
    help: 'do not count traffic per container pair (`weavets flows`); the data path then does no per-frame accounting',
    fill: (c, v) => (c.flows = v !== false),
  },
  {
    flags: '--no-sleeve-express',
    help: "keep every sleeve frame on the daemon's JavaScript path instead of forwarding plain unicast frames in C (for comparison; slower)",
    fill: (c, v) => (c.sleeveExpress = v !== false),
  },
  {
    flags: '--no-sleeve-thread',
    help: "run the sleeve's express path on the event loop thread instead of a data path thread of its own",
    fill: (c, v) => (c.sleeveThread = v !== false),
  },
  {
    flags: '--etcd <urls>',
    help: 'cluster store: comma-separated etcd URLs (http://10.0.0.5:2379); default: the embedded store in the state dir',
    group: 'store',
    fill: (c, v) => {
      const t = text(v);
      if (t !== undefined) c.etcd = { endpoints: parseEtcdUrls(t) };
    },
  },
  {
    flags: '--etcd-ca <file>',
    help: 'CA certificate (PEM) to verify etcd with',
    group: 'store',
    fill: (c, v) => etcdSetting(c, v, (e, t) => (e.caFile = t)),
  },
  {
    flags: '--etcd-cert <file>',
    help: 'client certificate (PEM) for etcd; needs --etcd-key',
    group: 'store',
    fill: (c, v) => etcdSetting(c, v, (e, t) => (e.certFile = t)),
  },
  {
    flags: '--etcd-key <file>',
    help: 'client key (PEM) for etcd; needs --etcd-cert',
    group: 'store',
    fill: (c, v) => etcdSetting(c, v, (e, t) => (e.keyFile = t)),
  },
  {
    flags: '--etcd-user <name>',
    help: 'etcd user; the password comes from --etcd-password-file or WEAVETS_ETCD_PASSWORD',
    group: 'store',
    fill: (c, v) => etcdSetting(c, v, (e, t) => (e.username = t)),
  },
  {
    flags: '--etcd-password-file <file>',
    help: 'file holding the etcd password (needs --etcd-user); or set WEAVETS_ETCD_PASSWORD',
    env: 'WEAVETS_ETCD_PASSWORD',
    group: 'store',
    fill: (c, v) => etcdSetting(c, v, (e, t) => (e.passwordFile = t)),
  },
  {
    flags: '--advertise-address <ip>',
    help: 'address other hosts reach this one at (registered in the store); default: first non-loopback IPv4',
    group: 'store',
    fill: (c, v) => {
      const t = text(v);
      if (t !== undefined) c.advertiseAddress = parseAdvertiseAddress(t);
    },
  },
  {
    flags: '--ipam-lease-ttl <seconds>',
    help: `seconds after which a dead host's address blocks return to the pool (default ${DEFAULT_IPAM_LEASE_TTL_SECONDS})`,
    group: 'store',
    fill: (c, v) => (c.ipamLeaseTtl = parseIpamLeaseTtl(text(v) ?? String(DEFAULT_IPAM_LEASE_TTL_SECONDS))),
  },
  {
    flags: '--ipam-reclaim-grace <seconds>',
    help: `seconds an address this host holds may go unused by any endpoint before it is released (default ${DEFAULT_IPAM_RECLAIM_GRACE_SECONDS})`,
    group: 'store',
    fill: (c, v) => {
      const t = text(v);
      c.ipamReclaimGrace = t === undefined ? DEFAULT_IPAM_RECLAIM_GRACE_SECONDS : parseIpamReclaimGrace(t);
    },
  },
  {
    flags: '--ipalloc-block <prefix>',
    help: 'block size when this host creates the cluster config, as a prefix length (default 26: 64 addresses)',
    group: 'store',
    fill: (c, v) => {
      const t = text(v);
      if (t !== undefined) c.ipallocBlock = parseIpallocBlock(t);
    },
  },
  {
    flags: '--address-retention <duration>',
    help: `how long a detached container's address stays reserved for its id, e.g. 10m, 90s, 0 (default ${DEFAULT_ADDRESS_RETENTION_SECONDS / 60}m)`,
    group: 'store',
    fill: (c, v) => {
      const t = text(v);
      c.addressRetention = t === undefined ? DEFAULT_ADDRESS_RETENTION_SECONDS : parseAddressRetention(t);
    },
  },
  {
    flags: '--no-dns',
    help: 'turn the embedded DNS off (no other --dns-* option goes with it)',
    group: 'dns',
    fill: (c, v) => (dnsOf(c).enabled = v !== false),
  },
  {
    flags: '--dns-listen <listen>',
    help: "DNS port on the host's bridge addresses (default 53), then optional loopback listeners: 53,127.0.0.1:5353",
    group: 'dns',
    fill: (c, v) => {
      const t = text(v);
      const dns = dnsOf(c);
      const listen = t === undefined ? undefined : parseDnsListen(t);
      dns.port = listen?.port ?? DEFAULT_DNS.port;
      dns.extraListen = listen?.extraListen ?? [];
    },
  },
  {
    flags: '--dns-domain <domain>',
    help: `domain of container names (default ${DEFAULT_DNS.domain})`,
    group: 'dns',
    fill: (c, v) => (dnsOf(c).domain = parseDnsDomain(text(v) ?? DEFAULT_DNS.domain)),
  },
  {
    flags: '--dns-ttl <seconds>',
    help: `TTL of the answers (default ${DEFAULT_DNS.ttl})`,
    group: 'dns',
    fill: (c, v) => (dnsOf(c).ttl = parseDnsTtl(text(v) ?? String(DEFAULT_DNS.ttl))),
  },
  {
    flags: '--dns-resolv-conf <file>',
    help: `where the upstream nameservers come from (default ${DEFAULT_DNS.resolvConf})`,
    group: 'dns',
    fill: (c, v) => (dnsOf(c).resolvConf = path.resolve(text(v) ?? DEFAULT_DNS.resolvConf)),
  },
];

/** What a group's check sees of the command line: an option's value by its long flag ("--etcd-ca"). */
export type GivenOption = (flag: string) => FlagValue;

/**
 * The checks between the options of a group, run once after every row has filled the
 * config; each refusal says what to change. They also take what the group reads from
 * outside its flags: the network password (file, fd, or WEAVETS_PASSWORD, always taken
 * out of the environment) and WEAVETS_ETCD_PASSWORD.
 */
export const GROUP_CHECKS: Record<
  Exclude<OptionGroup, 'launch'>,
  (c: DaemonConfig, given: GivenOption, env: NodeJS.ProcessEnv) => void
> = {
  password: (c, given, env) => {
    const fd = text(given('--password-fd'));
    if (c.passwordFile !== undefined && fd !== undefined) {
      throw new UsageError(
        '--password-file and --password-fd are exclusive: give the password once (--password-fd is what a background launch passes its daemon)',
      );
    }
    if (c.passwordFile !== undefined) c.password = readPasswordFile(c.passwordFile);
    else if (fd !== undefined) c.password = readPasswordFd(parsePasswordFd(fd));
    // Taken out of our environment whether or not it is used, so nothing we start inherits it.
    const fromEnv = takePasswordFromEnv(env);
    if (c.password === undefined && fromEnv !== undefined) c.password = fromEnv;
  },
  store: (c, given, env) => checkStoreOptions(c, (flag) => given(flag) !== undefined, env),
  dns: (c, given) => checkDnsOptions(c, (flag) => given(flag) !== undefined),
};

/**
 * Fill `base` (the state dir and peers) from the values commander parsed, keyed as
 * optionKey says: every row, then every group's check once. Throws UsageError naming the
 * option on the first bad value.
 */
export function configFromOptions(
  base: Partial<DaemonConfig>,
  values: Readonly<Record<string, FlagValue>>,
  env: NodeJS.ProcessEnv,
): Partial<DaemonConfig> {
  const config: Partial<DaemonConfig> = { ...base };
  for (const o of LAUNCH_OPTIONS) o.fill?.(config as DaemonConfig, values[optionKey(o)]);
  const byFlag = new Map(LAUNCH_OPTIONS.map((o) => [longFlag(o), values[optionKey(o)]] as const));
  const given: GivenOption = (flag) => byFlag.get(flag);
  for (const check of Object.values(GROUP_CHECKS)) check(config as DaemonConfig, given, env);
  return config;
}

/** "--no-dns", "--etcd-ca": the flag as typed, without its argument. */
export function longFlag(o: LaunchOption): string {
  return o.flags.split(' ')[0]!;
}
/** Register every option of the table on `launch`, in its order (the order of --help). */
export function addLaunchOptions(cmd: Command): Command {
  for (const o of LAUNCH_OPTIONS) {
    const option = new Option(o.flags, o.help);
    if (o.choices !== undefined) option.choices(o.choices);
    if (o.shownDefault !== undefined) option.default(o.shownDefault);
    if (o.hidden === true) option.hideHelp();
    cmd.addOption(option);
  }
  return cmd;
}
