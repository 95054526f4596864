import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../src/api/server';
import type { DaemonControl } from '../../src/api/types';
import type { AttachRequest, EndpointStatus, ExposeResult } from '../../src/endpoint/types';
import type { ConnectionStatus, PeerStatus, RouterStatus, TargetStatus } from '../../src/router/status';
import { buildDaemonConfig, type LaunchFlags } from '../../src/cli/launch';
import { childLaunchArgs, decodeConfig, encodeConfig } from '../../src/cli/config-pipe';
import { UsageError, formatTable } from '../../src/cli/output';
import { formatConnections } from '../../src/cli/status';
import {
  parseAddressCidr,
  parseHttpAddr,
  parseMtu,
  parsePeerAddress,
  parsePeerNameFlag,
  parsePort,
  parseRangeCidr,
} from '../../src/cli/validate';
import { silentLogger } from '../../src/log';

const ROOT = path.resolve(__dirname, '../..');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI from source (tsx), asynchronously so a server in this process can answer it. */
function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args],
      { cwd: ROOT, env: { ...process.env, WEAVETS_DEBUG: '', ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('argument validators', () => {
  it('checks the allocation range and suggests the network address', () => {
    expect(parseRangeCidr('10.32.0.0/12')).toBe('10.32.0.0/12');
    expect(usage(() => parseRangeCidr('10.32.0.1/12'))).toBe(
      '--ipalloc-range: 10.32.0.1/12 has host bits set; did you mean 10.32.0.0/12?',
    );
    expect(usage(() => parseRangeCidr('10.0.0.0/31'))).toMatch(
      /prefix \/31 is out of range; use a prefix from \/8 to \/30/,
    );
    expect(usage(() => parseRangeCidr('10.0.0.0/7'))).toMatch(/\/7 is out of range/);
    expect(usage(() => parseRangeCidr('10.300.0.0/16'))).toMatch(/not an IPv4 CIDR; write it like 10\.32\.0\.0\/12/);
    expect(usage(() => parseRangeCidr('fd00::/64'))).toMatch(/not an IPv4 CIDR/);
  });

  it('checks ports, MTUs, names and addresses', () => {
    expect(parsePort('6783', '--port')).toBe(6783);
    for (const bad of ['0', '65536', 'abc', '-1', '1.5', '']) {
      expect(usage(() => parsePort(bad, '--port'))).toMatch(/^--port: .* is not a port number; use 1-65535$/);
    }
    expect(parseMtu('0')).toBe(0);
    expect(parseMtu('1376')).toBe(1376);
    expect(usage(() => parseMtu('100'))).toMatch(/use 0 .* or 576-65535/);
    expect(parsePeerNameFlag('7E:21:0a:b4:19:c2')).toBe('7e:21:0a:b4:19:c2');
    expect(usage(() => parsePeerNameFlag('7e:21:0a'))).toMatch(/six hex bytes like 7e:21:0a:b4:19:c2/);
    expect(parseAddressCidr('10.32.1.5/12', '--ip')).toBe('10.32.1.5/12');
    expect(usage(() => parseAddressCidr('10.32.1.5', '--ip'))).toMatch(/^--ip: .*write it like 10\.32\.1\.5\/12/);
  });

  it('accepts host, host:port, IPv4 and [IPv6]:port peers', () => {
    for (const ok of [
      'host2',
      'host2:6783',
      '192.0.2.2',
      '192.0.2.2:7000',
      'a.example.org',
      '[fd00::2]:6783',
      'fd00::2',
    ]) {
      expect(parsePeerAddress(ok)).toBe(ok);
    }
    for (const bad of ['bad host', 'host:', 'host:99999', '-host', '[fd00::2', 'host/1', '']) {
      expect(usage(() => parsePeerAddress(bad))).toMatch(/peer '/);
    }
  });

  it('accepts an empty --http-addr (listener off) and rejects a missing port', () => {
    expect(parseHttpAddr('')).toBe('');
    expect(parseHttpAddr('127.0.0.1:6782')).toBe('127.0.0.1:6782');
    expect(parseHttpAddr('[::1]:6782')).toBe('[::1]:6782');
    expect(usage(() => parseHttpAddr('127.0.0.1'))).toMatch(/^--http-addr: /);
  });

  it('builds the daemon config and the foreground command line that reproduces it', () => {
    const flags: LaunchFlags = {
      port: '7000',
      bindAddress: '0.0.0.0',
      ipallocRange: '10.40.0.0/16',
      datapath: 'sleeve',
      httpAddr: '',
      mtu: '0',
      logLevel: 'info',
      nickname: 'h1',
    };
    const config = buildDaemonConfig('/tmp/wt', ['192.0.2.2', 'host3:7000'], flags);
    expect(config).toEqual({
      stateDir: '/tmp/wt',
      nickname: 'h1',
      port: 7000,
      bindAddress: '0.0.0.0',
      ipallocRange: '10.40.0.0/16',
      datapath: 'sleeve',
      peers: ['192.0.2.2', 'host3:7000'],
      httpAddr: '',
      mtu: 0,
      logLevel: 'info',
      trustedSubnets: [],
      // Every default resolved here, once: nothing below the CLI falls back to one.
      logMaxSize: 10 * 1024 * 1024,
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
      dockerPluginSocket: '/run/docker/plugins/weavets.sock',
      dockerHost: 'unix:///var/run/docker.sock',
      dockerDnsRedirect: true,
      policyDryRun: false,
      flows: true,
      sleeveExpress: true,
      sleeveThread: true,
    });
    // The background launch hands the foreground child exactly this config, over a pipe.
    expect(childLaunchArgs()).toEqual(['launch', '--foreground', '--config-fd', '3']);
    const handed = decodeConfig(encodeConfig(config));
    expect(handed).toEqual(config);
    expect(handed.httpAddr).toBe('');
    expect(handed.peers).toEqual(['192.0.2.2', 'host3:7000']);
    expect(usage(() => buildDaemonConfig('/tmp/wt', ['bad peer'], flags))).toMatch(/peer 'bad peer'/);
  });

  it('takes the password from the environment, keeps it out of argv, and checks trusted subnets', () => {
    const flags = {
      port: '6783',
      bindAddress: '0.0.0.0',
      ipallocRange: '10.32.0.0/12',
      datapath: 'auto' as const,
      httpAddr: '',
      mtu: '0',
      logLevel: 'info' as const,
    };
    process.env.WEAVETS_PASSWORD = 'hunter2-but-longer';
    const config = buildDaemonConfig('/tmp/wt', [], { ...flags, trustedSubnets: '192.0.2.0/24, 198.18.0.0/15' });
    expect(process.env.WEAVETS_PASSWORD).toBeUndefined();
    expect(config.password?.toString()).toBe('hunter2-but-longer');
    expect(config.trustedSubnets).toEqual(['192.0.2.0/24', '198.18.0.0/15']);
    const args = childLaunchArgs();
    expect(args.join(' ')).not.toContain('hunter2');
    expect(args[args.indexOf('--config-fd') + 1]).toBe('3');
    expect(decodeConfig(encodeConfig(config)).password?.toString()).toBe('hunter2-but-longer');
    expect(usage(() => buildDaemonConfig('/tmp/wt', [], { ...flags, trustedSubnets: '192.0.2.1/24' }))).toMatch(
      /did you mean 192.0.2.0\/24/,
    );
  });
});

describe('output', () => {
  it('aligns table columns without trailing blanks', () => {
    expect(
      formatTable(
        ['A', 'LONGER'],
        [
          ['xyz', '1'],
          ['q', '22'],
        ],
      ),
    ).toBe('A    LONGER\nxyz  1\nq    22\n');
  });
});

describe('weavets command line (no daemon)', () => {
  let stateDir: string;
  beforeAll(() => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-cli-'));
  });
  afterAll(() => fs.rmSync(stateDir, { recursive: true, force: true }));

  it('exits 2 with one clear line for bad launch arguments', async () => {
    const cases: [string[], RegExp][] = [
      [['--ipalloc-range', '10.32.0.1/12'], /did you mean 10\.32\.0\.0\/12\?/],
      [['--port', '0'], /--port: '0' is not a port number/],
      [['--name', 'nope'], /--name: 'nope' is not a peer name/],
      [['--datapath', 'warp'], /Allowed choices are auto, sleeve, fastdp/],
      [['--bogus'], /unknown option '--bogus'/],
      [['bad peer!'], /peer 'bad peer!'/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(['launch', '--state-dir', stateDir, ...args])));
    results.forEach((r, i) => {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^weavets: /);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(cases[i]![1]);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
    // Nothing was started.
    expect(fs.readdirSync(stateDir)).toEqual([]);
  });

  // A batch of its own: a few CLI processes at a time stay within the timeout on a busy machine.
  it('exits 2 for an all-zero, broadcast or multicast --name and a zero --ipam-reclaim-grace', async () => {
    const cases: [string[], RegExp][] = [
      [['--name', '00:00:00:00:00:00'], /--name: 00:00:00:00:00:00 cannot be a peer name: the all-zero name/],
      [['--name', 'FF:FF:FF:FF:FF:FF'], /--name: ff:ff:ff:ff:ff:ff cannot be a peer name: it is the broadcast address/],
      [['--name', '01:00:5e:00:00:01'], /--name: 01:00:5e:00:00:01 cannot be a peer name: it is a multicast address/],
      [['--ipam-reclaim-grace', '0'], /--ipam-reclaim-grace: '0' is not a number of seconds from 1 to 86400/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(['launch', '--state-dir', stateDir, ...args])));
    results.forEach((r, i) => {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^weavets: /);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(cases[i]![1]);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
    // Nothing was started.
    expect(fs.readdirSync(stateDir)).toEqual([]);
  });

  it('says the daemon is not running (exit 1), via --state-dir or WEAVETS_STATE_DIR', async () => {
    const viaFlag = await cli(['status', '--state-dir', stateDir]);
    const viaEnv = await cli(['ps'], { WEAVETS_STATE_DIR: stateDir });
    for (const r of [viaFlag, viaEnv]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `weavets: weavets is not running (no daemon at ${stateDir}/weavets.sock); start it with \`weavets launch\`\n`,
      );
    }
  });

  it('rejects an unknown status section with exit 2', async () => {
    const r = await cli(['status', 'bogus', '--state-dir', stateDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "weavets: unknown status section 'bogus': use peers, connections, targets, ipam, dns or health\n",
    );
  });

  it('stop without a daemon exits 0', async () => {
    const r = await cli(['stop', '--state-dir', stateDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('weavets is not running\n');
  });

  it('reset without a daemon deletes recorded links and the state dir', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-reset-'));
    // A name no test creates: `ip link del` answers "Cannot find device", which is fine.
    fs.writeFileSync(path.join(dir, 'links.json'), JSON.stringify(['wtts-none-0']));
    fs.writeFileSync(path.join(dir, 'peer-name'), '7e:21:0a:b4:19:c2\n');
    const r = await cli(['reset', '--state-dir', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('reset refuses to delete a directory that is not a state dir', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-notstate-'));
    fs.writeFileSync(path.join(dir, 'precious.txt'), 'keep me');
    try {
      const r = await cli(['reset', '--state-dir', dir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/does not look like a weavets state dir/);
      expect(fs.readFileSync(path.join(dir, 'precious.txt'), 'utf8')).toBe('keep me');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Just enough daemon for the CLI's happy paths. */
class FakeDaemon implements DaemonControl {
  shutdownWith: boolean | undefined;
  server: ApiServer | undefined;
  status(): RouterStatus {
    return {
      version: '0.1.0',
      name: '7e:21:0a:b4:19:c2',
      nickname: 'host1',
      port: 6783,
      encryption: false,
      datapath: 'auto',
      ipallocRange: '10.32.0.0/12',
      peers: 2,
      connections: { established: 1, total: 1 },
      targets: 0,
      networks: [],
    };
  }
  connections(): ConnectionStatus[] {
    return [
      {
        peer: '7e:21:0a:b4:19:c3',
        nickname: 'host2',
        address: '192.0.2.2:6783',
        state: 'established',
        datapath: 'sleeve',
        encrypted: false,
        outbound: true,
      },
    ];
  }
  peers(): PeerStatus[] {
    return [];
  }
  targets(): TargetStatus[] {
    return [];
  }
  connect(): void {}
  forget(): void {}
  async attach(req: AttachRequest): Promise<EndpointStatus> {
    return {
      id: req.id,
      network: 'weavets',
      ifname: req.ifname ?? 'eth0',
      address: req.ip ?? '10.32.0.2/12',
      mac: '02:00:00:00:00:02',
      netns: req.netns,
      hostVeth: 'vethwt0',
    };
  }
  async detach(): Promise<void> {}
  endpoints(): EndpointStatus[] {
    return [
      {
        id: 'c1',
        network: 'weavets',
        ifname: 'eth0',
        address: '10.32.0.2/12',
        mac: '02:00:00:00:00:02',
        netns: '/run/netns/c1',
        hostVeth: 'vethwt0',
      },
    ];
  }
  async expose(): Promise<ExposeResult> {
    return { network: 'weavets', address: '10.32.0.1/12' };
  }
  async hide(): Promise<ExposeResult | undefined> {
    return undefined;
  }
  async metrics(): Promise<string> {
    return '';
  }
  ready(): boolean {
    return true;
  }
  async shutdown(removeState: boolean): Promise<void> {
    this.shutdownWith = removeState;
    await this.server?.close();
  }
}

describe('weavets command line (against a stand-in daemon)', () => {
  let stateDir: string;
  let fake: FakeDaemon;
  beforeAll(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-cli-'));
    fake = new FakeDaemon();
    fake.server = await startApiServer({
      socketPath: path.join(stateDir, 'weavets.sock'),
      httpAddr: '',
      control: fake,
      log: silentLogger,
    });
  });
  afterAll(async () => {
    await fake.server?.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('prints connections as a table with the unencrypted warning, or as the exact JSON', async () => {
    const table = await cli(['status', 'connections', '--state-dir', stateDir]);
    expect(table.code).toBe(0);
    expect(table.stdout).toBe(formatConnections(fake.connections()));
    expect(table.stdout).toMatch(/^PEER\s+NICKNAME\s+ADDRESS\s+STATE\s+DATAPATH\s+ENCRYPTED\n/);
    expect(table.stdout).toContain('WARNING: traffic between peers is NOT encrypted (no --password)');
    const json = await cli(['status', 'connections', '--json', '--state-dir', stateDir]);
    expect(JSON.parse(json.stdout)).toEqual(fake.connections());
    const summary = await cli(['status', '--json', '--state-dir', stateDir]);
    expect(JSON.parse(summary.stdout)).toEqual(fake.status());
  });

  it('attach prints only the address; ps lists endpoints', async () => {
    const r = await cli([
      'attach',
      '--netns',
      '/proc/self/ns/net',
      '--ip',
      '10.32.7.7/12',
      'c1',
      '--state-dir',
      stateDir,
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('10.32.7.7/12\n');
    const ps = await cli(['ps', '--state-dir', stateDir]);
    expect(ps.stdout.split('\n')[0]).toMatch(/^ID\s+NETWORK\s+ADDRESS\s+MAC\s+IFNAME\s+NETNS\s+LABELS$/);
    expect(JSON.parse((await cli(['ps', '--json', '--state-dir', stateDir])).stdout)).toEqual(fake.endpoints());
  });

  it('launch refuses to start a second daemon', async () => {
    const r = await cli(['launch', '--state-dir', stateDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^weavets: weavets is already running for state dir /);
  });

  it('stop asks the daemon to shut down and waits for it', async () => {
    const r = await cli(['stop', '--state-dir', stateDir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fake.shutdownWith).toBe(false);
    expect(fs.existsSync(path.join(stateDir, 'weavets.sock'))).toBe(false);
  });
});
