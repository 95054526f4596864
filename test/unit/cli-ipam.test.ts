import { describe, expect, it } from 'vitest';
import { formatIpamStatus, parseDurationSeconds } from '../../src/cli/ipam';
import { buildDaemonConfig, type LaunchFlags } from '../../src/cli/launch';
import { childLaunchArgs, decodeConfig, encodeConfig } from '../../src/cli/config-pipe';
import type { DaemonConfig } from '../../src/config';
import type { IpamStatus } from '../../src/ipam/status';

function base(): DaemonConfig {
  return {
    stateDir: '/tmp/wt',
    nickname: 'h1',
    port: 6783,
    bindAddress: '0.0.0.0',
    ipallocRange: '10.32.0.0/12',
    datapath: 'auto',
    peers: [],
    httpAddr: '',
    mtu: 0,
    logLevel: 'info',
    trustedSubnets: [],
    logMaxSize: 0,
    ipamLeaseTtl: 120,
    ipamReclaimGrace: 60,
    addressRetention: 600,
    dns: {
      enabled: true,
      port: 53,
      extraListen: [],
      domain: 'weavets.local.',
      ttl: 30,
      resolvConf: '/etc/resolv.conf',
    },
    dockerPluginSocket: '',
    dockerHost: 'unix:///var/run/docker.sock',
    dockerDnsRedirect: true,
    policyDryRun: false,
    flows: true,
    sleeveExpress: true,
    sleeveThread: true,
  };
}

const LAUNCH_DEFAULTS: LaunchFlags = {
  port: '6783',
  bindAddress: '0.0.0.0',
  ipallocRange: '10.32.0.0/12',
  datapath: 'auto',
  httpAddr: '',
  mtu: '0',
  logLevel: 'info',
};

/** `launch` with these store flags and this environment (never the test's own). */
function launchWith(flags: Partial<LaunchFlags>, env: NodeJS.ProcessEnv = {}): DaemonConfig {
  return buildDaemonConfig('/tmp/wt', [], { ...LAUNCH_DEFAULTS, ...flags }, env);
}

describe('launch store flags', () => {
  it('without --etcd: the embedded store, and etcd-only flags are refused', () => {
    expect(launchWith({}).etcd).toBeUndefined();
    expect(() => launchWith({ etcdCa: '/ca.pem' })).toThrow(/--etcd-ca needs --etcd/);
  });

  it('parses endpoints, TLS and auth; the password never reaches argv', () => {
    const c = launchWith(
      {
        etcd: 'http://10.0.0.5:2379,https://10.0.0.6:2379',
        etcdCa: 'ca',
        etcdCert: 'c',
        etcdKey: 'k',
        etcdUser: 'u',
        ipamLeaseTtl: '30',
        advertiseAddress: '192.0.2.11',
        ipallocBlock: '/24',
      },
      { WEAVETS_ETCD_PASSWORD: 's3cret' },
    );
    expect(c.etcd).toEqual({
      endpoints: ['http://10.0.0.5:2379', 'https://10.0.0.6:2379'],
      caFile: 'ca',
      certFile: 'c',
      keyFile: 'k',
      username: 'u',
      password: 's3cret',
    });
    expect(c.ipamLeaseTtl).toBe(30);
    expect(c.ipallocBlock).toBe(24);
    expect(c.advertiseAddress).toBe('192.0.2.11');
    // The foreground daemon gets this config whole over the pipe; its argv carries none of it.
    expect(childLaunchArgs().join(' ')).not.toContain('s3cret');
    expect(childLaunchArgs().join(' ')).not.toContain('10.0.0.5');
    expect(decodeConfig(encodeConfig(c))).toEqual(c);
    expect(base().dns).toEqual(launchWith({}).dns);
  });

  it('rejects bad values, naming the flag', () => {
    expect(() => launchWith({ etcd: 'etcd:2379' })).toThrow(/--etcd/);
    expect(() => launchWith({ etcd: 'http://u:p@h:2379' })).toThrow(/credentials/);
    expect(() => launchWith({ etcd: 'http://h:2379', etcdPasswordFile: 'f' })).toThrow(/--etcd-user/);
    expect(() => launchWith({ etcd: 'http://h:2379', etcdCert: 'c' })).toThrow(/go together/);
    expect(() => launchWith({ ipamLeaseTtl: '1' })).toThrow(/--ipam-lease-ttl/);
    expect(() => launchWith({ ipamReclaimGrace: '0' })).toThrow(/--ipam-reclaim-grace: '0'/);
    expect(() => launchWith({ advertiseAddress: 'host' })).toThrow(/--advertise-address/);
    expect(() => launchWith({ ipallocBlock: '31' })).toThrow(/--ipalloc-block/);
  });

  it('--address-retention takes a duration and is passed on to the foreground daemon', () => {
    expect(parseDurationSeconds('10m')).toBe(600);
    expect(parseDurationSeconds('90s')).toBe(90);
    expect(parseDurationSeconds('2h')).toBe(7200);
    expect(parseDurationSeconds('0')).toBe(0);
    expect(parseDurationSeconds('ten')).toBeUndefined();
    const c = launchWith({ addressRetention: '5m' });
    expect(c.addressRetention).toBe(300);
    expect(decodeConfig(encodeConfig(c)).addressRetention).toBe(300);
    expect(() => launchWith({ addressRetention: '-1' })).toThrow(/--address-retention: '-1'/);
    expect(() => launchWith({ addressRetention: '8d' })).toThrow(/--address-retention/);
  });

  it('formats status ipam as tables', () => {
    const s: IpamStatus = {
      store: { kind: 'etcd', location: 'http://10.0.0.5:2379' },
      range: '10.32.0.0/12',
      blockPrefix: 26,
      leaseTtlSeconds: 120,
      name: '02:00:00:00:00:01',
      networks: [{ network: 'weavets', blocks: [{ cidr: '10.32.0.0/26', used: 2, free: 61 }], used: 2, free: 61 }],
      hosts: [{ name: '02:00:00:00:00:01', nickname: 'h1', address: '192.0.2.11:6783' }],
      blocks: [
        { network: 'weavets', cidr: '10.32.0.0/26', owner: '02:00:00:00:00:01', nickname: 'h1' },
        { network: 'weavets', cidr: '10.32.0.64/26', owner: '02:00:00:00:00:02', nickname: 'h2' },
      ],
      conflicts: [],
    };
    const text = formatIpamStatus(s);
    expect(text).toContain('10.32.0.0/26');
    expect(text).toMatch(/weavets\s+10\.32\.0\.0\/26\s+2\s+61/);
    expect(text).toContain('(this host)');
    expect(text).toMatch(/weavets\s+10\.32\.0\.64\/26\s+02:00:00:00:00:02\s+h2/);
    expect(text).not.toContain('CONFLICTS');
    const contested = formatIpamStatus({
      ...s,
      conflicts: [{ key: 'ipam/blocks/weavets/0a200040', holders: ['02:00:00:00:00:01', '02:00:00:00:00:02'] }],
    });
    expect(contested).toMatch(
      /CONFLICTS[^\n]*\n.*\n\s+ipam\/blocks\/weavets\/0a200040\s+02:00:00:00:00:01 02:00:00:00:00:02/,
    );
  });
});
