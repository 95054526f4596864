import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { DAEMON_NODE_FLAGS, buildDaemonConfig, daemonExecArgv, type LaunchFlags } from '../../src/cli/launch';
import { GROUP_CHECKS, LAUNCH_OPTIONS, longFlag, optionKey } from '../../src/cli/launch-options';
import { decodeConfig, encodeConfig } from '../../src/cli/config-pipe';
import { UsageError } from '../../src/cli/output';
import { DEFAULT_DNS } from '../../src/config';

const flags: LaunchFlags = {
  port: '6783',
  bindAddress: '0.0.0.0',
  ipallocRange: '10.32.0.0/12',
  datapath: 'auto',
  httpAddr: '',
  mtu: '0',
  logLevel: 'info',
};

function launchCommand(): Command {
  const launch = buildProgram().commands.find((c) => c.name() === 'launch');
  if (!launch) throw new Error('no launch command');
  return launch;
}

function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error('no usage error');
}

describe('the launch option table', () => {
  it('is what commander knows and what --help lists, in its order; internal options are hidden', () => {
    const launch = launchCommand();
    expect(launch.options.map((o) => o.flags)).toEqual(LAUNCH_OPTIONS.map((o) => o.flags));
    const help = launch.helpInformation();
    for (const o of LAUNCH_OPTIONS) {
      const long = longFlag(o);
      if (o.hidden) expect(help).not.toContain(long);
      else expect(help).toContain(long);
    }
    // Defaults commander applies are shown; the rest are in the help text itself.
    expect(help).toMatch(/--port <n>\s+TCP control and UDP data port\s+\(default:\s+"6783"\)/);
    expect(help).toContain('--ipam-lease-ttl <seconds>');
    expect(help).toMatch(/\(default 120\)/);
    expect(new Set(LAUNCH_OPTIONS.map(optionKey)).size).toBe(LAUNCH_OPTIONS.length);
  });

  it('resolves every default once: an option left out still gives its field a value', () => {
    const config = buildDaemonConfig('/tmp/wt', [], flags);
    // Ungrouped options each have their own field; the groups' fields are checked below.
    const ungrouped = LAUNCH_OPTIONS.filter(
      (x) => x.group === undefined && !/--(name|docker-driver-name) /.test(x.flags),
    );
    for (const o of ungrouped) expect(config[optionKey(o) as keyof typeof config], o.flags).not.toBeUndefined();
    expect(config.dns).toEqual({ ...DEFAULT_DNS, extraListen: [] });
    expect(config).toMatchObject({ ipamReclaimGrace: 60, addressRetention: 600 });
    expect(config.etcd).toBeUndefined();
    expect(config.password).toBeUndefined();
    expect(config.ipamLeaseTtl).toBe(120);
  });
});

describe('flag and environment', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-options-'));
  afterEach(() => {
    delete process.env.WEAVETS_PASSWORD;
  });

  it('--password-file wins over WEAVETS_PASSWORD, which is taken out of the environment either way', () => {
    const file = path.join(dir, 'password');
    fs.writeFileSync(file, 'from-the-file-0123456789\n', { mode: 0o600 });
    process.env.WEAVETS_PASSWORD = 'from-the-environment-0123';
    const withFile = buildDaemonConfig('/tmp/wt', [], { ...flags, passwordFile: file });
    expect(withFile.password?.toString()).toBe('from-the-file-0123456789');
    expect(withFile.passwordFile).toBe(file);
    expect(process.env.WEAVETS_PASSWORD).toBeUndefined();
    process.env.WEAVETS_PASSWORD = 'from-the-environment-0123';
    const fromEnv = buildDaemonConfig('/tmp/wt', [], flags);
    expect(fromEnv.password?.toString()).toBe('from-the-environment-0123');
    expect(fromEnv.passwordFile).toBeUndefined();
  });

  it('--etcd-password-file wins over WEAVETS_ETCD_PASSWORD', () => {
    const env = { WEAVETS_ETCD_PASSWORD: 'etcd-from-env' };
    const etcd = { ...flags, etcd: 'http://10.0.0.5:2379', etcdUser: 'u' };
    const withFile = buildDaemonConfig('/tmp/wt', [], { ...etcd, etcdPasswordFile: '/etc/pw' }, env);
    expect(withFile.etcd).toMatchObject({ passwordFile: '/etc/pw' });
    expect(withFile.etcd?.password).toBeUndefined();
    expect(buildDaemonConfig('/tmp/wt', [], etcd, env).etcd?.password).toBe('etcd-from-env');
  });

  it('names its environment variable in the row and in the help of the option it stands in for', () => {
    const withEnv = LAUNCH_OPTIONS.filter((o) => o.env !== undefined).map((o) => [longFlag(o), o.env]);
    expect(withEnv).toEqual([
      ['--password-file', 'WEAVETS_PASSWORD'],
      ['--etcd-password-file', 'WEAVETS_ETCD_PASSWORD'],
    ]);
    for (const o of LAUNCH_OPTIONS.filter((x) => x.env !== undefined)) expect(o.help).toContain(o.env);
  });
});

describe('the options of a group, checked together once the table is parsed', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-groups-'));

  it("every row but the launch command's own parses into the config, and every group has its check", () => {
    for (const o of LAUNCH_OPTIONS) {
      if (o.group === 'launch') expect(o.fill, o.flags).toBeUndefined();
      else expect(o.fill, o.flags).toBeDefined();
    }
    const groups = new Set(LAUNCH_OPTIONS.map((o) => o.group).filter((g) => g !== undefined && g !== 'launch'));
    expect([...groups].sort()).toEqual(Object.keys(GROUP_CHECKS).sort());
  });

  it('refuses each contradiction saying what to change', () => {
    const file = path.join(dir, 'password');
    fs.writeFileSync(file, 'group-check-password-0123\n', { mode: 0o600 });
    const cases: [string, Partial<LaunchFlags>, RegExp][] = [
      [
        'password',
        { passwordFile: file, passwordFd: '3' },
        /^--password-file and --password-fd are exclusive: give the password once/,
      ],
      ['store', { etcdUser: 'u' }, /^--etcd-user needs --etcd: give the etcd URLs with --etcd, or drop --etcd-user$/],
      ['store', { etcdPasswordFile: '/pw' }, /^--etcd-password-file needs --etcd: /],
      [
        'store',
        { etcd: 'http://h:2379', etcdKey: 'k' },
        /^--etcd-cert and --etcd-key go together: give the client certificate and its key, or neither$/,
      ],
      [
        'store',
        { etcd: 'http://h:2379', etcdPasswordFile: '/pw' },
        /^an etcd password \(--etcd-password-file\) needs --etcd-user: give the user it belongs to$/,
      ],
      [
        'dns',
        { dns: false, dnsTtl: '10' },
        /^--no-dns turns the DNS off, so --dns-ttl sets nothing: drop --dns-ttl, or drop --no-dns$/,
      ],
      ['dns', { dns: false, dnsListen: '127.0.0.1:5353' }, /^--no-dns turns the DNS off, so --dns-listen sets nothing/],
    ];
    for (const [group, bad, message] of cases) {
      expect(
        usageMessage(() => buildDaemonConfig('/tmp/wt', [], { ...flags, ...bad }, {})),
        group,
      ).toMatch(message);
    }
    // The environment's etcd password needs a user as much as the file does.
    expect(
      usageMessage(() =>
        buildDaemonConfig('/tmp/wt', [], { ...flags, etcd: 'http://h:2379' }, { WEAVETS_ETCD_PASSWORD: 'p' }),
      ),
    ).toMatch(/^an etcd password \(WEAVETS_ETCD_PASSWORD\) needs --etcd-user/);
  });

  it('takes what goes together, and the config goes through the pipe to the foreground daemon unchanged', () => {
    const file = path.join(dir, 'password');
    fs.writeFileSync(file, 'group-check-password-0123\n', { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { WEAVETS_ETCD_PASSWORD: 'etcd-secret', WEAVETS_PASSWORD: 'loses-to-the-file-0123' };
    const config = buildDaemonConfig(
      '/tmp/wt',
      ['192.0.2.7'],
      {
        ...flags,
        passwordFile: file,
        trustedSubnets: '192.0.2.0/24',
        etcd: 'https://10.0.0.5:2379',
        etcdCa: '/ca.pem',
        etcdCert: '/c.pem',
        etcdKey: '/k.pem',
        etcdUser: 'weavets',
        advertiseAddress: '192.0.2.11',
        ipamLeaseTtl: '30',
        ipamReclaimGrace: '5',
        ipallocBlock: '24',
        addressRetention: '90s',
        dnsListen: '5300,127.0.0.1:5353',
        dnsDomain: 'Cluster.Example',
        dnsTtl: '5',
        dnsResolvConf: '/tmp/resolv.conf',
      },
      env,
    );
    expect(config.password?.toString()).toBe('group-check-password-0123');
    expect(env.WEAVETS_PASSWORD).toBeUndefined();
    expect(config.etcd).toEqual({
      endpoints: ['https://10.0.0.5:2379'],
      caFile: '/ca.pem',
      certFile: '/c.pem',
      keyFile: '/k.pem',
      username: 'weavets',
      password: 'etcd-secret',
    });
    expect(config).toMatchObject({ ipamLeaseTtl: 30, ipamReclaimGrace: 5, ipallocBlock: 24, addressRetention: 90 });
    expect(config.dns).toEqual({
      enabled: true,
      port: 5300,
      extraListen: ['127.0.0.1:5353'],
      domain: 'cluster.example.',
      ttl: 5,
      resolvConf: '/tmp/resolv.conf',
    });
    expect(decodeConfig(encodeConfig(config))).toEqual(config);
    const off = buildDaemonConfig('/tmp/wt', [], { ...flags, dns: false }, {});
    expect(off.dns.enabled).toBe(false);
    expect(decodeConfig(encodeConfig(off))).toEqual(off);
  });
});

describe('a bad value', () => {
  it('is refused naming the flag and what it wants', () => {
    const cases: [Partial<LaunchFlags>, RegExp][] = [
      [{ port: '99999' }, /^--port: /],
      [{ bindAddress: 'somewhere' }, /^--bind-address/],
      [{ ipallocRange: '10.32.0.0/33' }, /^--ipalloc-range/],
      [{ httpAddr: '127.0.0.1' }, /^--http-addr: /],
      [{ mtu: 'big' }, /^--mtu/],
      [{ logMaxSize: 'lots' }, /^--log-max-size: want a size such as 10M/],
      [{ trustedSubnets: '192.0.2.1/24' }, /^--trusted-subnets: .*did you mean 192.0.2.0\/24/],
      [{ dockerPluginSocket: 'relative.sock' }, /^--docker-plugin-socket: give an absolute path/],
      [{ dockerDriverName: 'Bad Name' }, /^--docker-driver-name: want a Docker plugin name/],
      [{ dockerHost: 'http://docker' }, /^--docker-host: want unix:\/\/\/path or tcp:\/\/host:port/],
      [{ ipamLeaseTtl: '1' }, /^--ipam-lease-ttl: '1' is not a number of seconds from 2 to 86400/],
      [{ addressRetention: '8d' }, /^--address-retention: '8d' is not a duration/],
      [{ dnsTtl: 'soon' }, /^--dns-ttl: 'soon' is not a number of seconds/],
      [{ passwordFd: 'three' }, /^--password-fd: expected a file descriptor number/],
    ];
    for (const [bad, message] of cases) {
      expect(
        usageMessage(() => buildDaemonConfig('/tmp/wt', [], { ...flags, ...bad })),
        JSON.stringify(bad),
      ).toMatch(message);
    }
  });
});

describe('the daemon node command line', () => {
  it('adds the small young generation and one V8 worker after the caller flags, unless the caller chose them', () => {
    const ours = ['--max-semi-space-size=1', '--v8-pool-size=1'];
    expect(DAEMON_NODE_FLAGS).toEqual(ours);
    expect(daemonExecArgv([])).toEqual(ours);
    expect(daemonExecArgv(['--import', 'tsx'])).toEqual(['--import', 'tsx', ...ours]);
    expect(daemonExecArgv(['--max-semi-space-size=16'])).toEqual(['--max-semi-space-size=16', '--v8-pool-size=1']);
    expect(daemonExecArgv([], '--trace-gc --max-semi-space-size=8')).toEqual(['--v8-pool-size=1']);
    expect(daemonExecArgv([], '--v8-pool-size=4 --max-semi-space-size=8')).toEqual([]);
  });
});
