import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { buildDaemonConfig, type LaunchFlags } from '../../src/cli/launch';
import { LAUNCH_OPTIONS, optionKey } from '../../src/cli/launch-options';
import { applyStoreFlags } from '../../src/cli/ipam';
import { UsageError } from '../../src/cli/output';

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
      const long = o.flags.split(' ')[0]!;
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
    for (const o of LAUNCH_OPTIONS.filter((x) => x.fill !== undefined && !/--(name|docker-driver-name) /.test(x.flags)))
      expect(config[optionKey(o) as keyof typeof config], o.flags).not.toBeUndefined();
    expect(config.dns.enabled).toBe(true);
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
    const config = buildDaemonConfig('/tmp/wt', [], flags);
    const env = { WEAVETS_ETCD_PASSWORD: 'etcd-from-env' };
    applyStoreFlags(config, { etcd: 'http://10.0.0.5:2379', etcdUser: 'u', etcdPasswordFile: '/etc/pw' }, env);
    expect(config.etcd).toMatchObject({ passwordFile: '/etc/pw' });
    expect(config.etcd?.password).toBeUndefined();
    applyStoreFlags(config, { etcd: 'http://10.0.0.5:2379', etcdUser: 'u' }, env);
    expect(config.etcd?.password).toBe('etcd-from-env');
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
