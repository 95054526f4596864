/**
 * The cluster store flags against a real etcd that is locked down, with real daemons in
 * lab namespaces (etcd runs in host1's namespace on its underlay address):
 *
 *  1. TLS with client certificates (--client-cert-auth): a throwaway CA, a server
 *     certificate for host1's address and a client certificate made with openssl. Two
 *     daemons launched with --etcd https://... --etcd-ca/--etcd-cert/--etcd-key find each
 *     other, their containers get distinct addresses and ping, and the allocations are in
 *     etcd. A wrong CA, and no client certificate, each fail the launch saying so.
 *  2. Authentication: a `weavets` user whose role may read and write only /weavets/,
 *     auth enabled, short-lived tokens (--auth-token-ttl). Launch with --etcd-user and
 *     --etcd-password-file works, allocation works after the token expired, the password
 *     is in neither argv nor the log, and a wrong password fails the launch saying so.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import type { DnsStatus } from '../../src/dns/status';
import type { IpamStatus } from '../../src/ipam/status';
import { ADDRS_PREFIX } from '../../src/ipam/blocks';
import { ETCD_TOOLS, startEtcd, type EtcdServer } from './etcd';
import { describeWithTools } from '../require-tools';
import { run, type Host, type Lab, type Namespace } from '../net/harness';
import { useLab } from '../net/lab-hooks';

const describeEtcd = describeWithTools({ ...ETCD_TOOLS, commands: ['openssl'] });
const ADMIN = path.join(__dirname, 'fixtures', 'etcd-admin.ts');
/** The prefix every weavets key lives under (src/store/etcd.ts). */
const PREFIX = '/weavets/';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface AdminArgs {
  url: string;
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  password?: string;
  rootPassword?: string;
  prefix?: string;
}

/** Run the etcd3-based admin fixture inside a host's namespace. */
function admin(lab: Lab, host: Host, cmd: string, args: AdminArgs): ReturnType<Lab['exec']> {
  return lab.exec(host, [process.execPath, '--require', require.resolve('tsx/cjs'), ADMIN, cmd, JSON.stringify(args)], {
    timeoutMs: 20_000,
  });
}

async function adminOk(lab: Lab, host: Host, cmd: string, args: AdminArgs): Promise<string> {
  const r = await admin(lab, host, cmd, args);
  if (r.code !== 0) throw new Error(`etcd-admin ${cmd} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function openssl(args: string[]): Promise<void> {
  const r = await run(['openssl', ...args], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing etcd has. */
  otherCa: string;
}

/** A throwaway CA, a server certificate for `ip` and a client certificate, root-only. */
async function makePki(dir: string, ip: string): Promise<Pki> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (n: string): string => path.join(dir, n);
  fs.writeFileSync(
    f('openssl.cnf'),
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = weavets-test',
      '[ca]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '[server]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      // etcd's gateway dials itself with the server certificate: clientAuth too.
      'extendedKeyUsage = serverAuth,clientAuth',
      `subjectAltName = IP:${ip}`,
      '[client]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = clientAuth',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const cnf = ['-config', f('openssl.cnf')];
  for (const ca of ['ca', 'other-ca']) {
    await openssl([
      'req',
      '-x509',
      '-new',
      ...ec,
      '-keyout',
      f(`${ca}.key`),
      '-out',
      f(`${ca}.pem`),
      '-days',
      '2',
      '-subj',
      `/CN=${ca}`,
      ...cnf,
      '-extensions',
      'ca',
    ]);
  }
  for (const [name, cn] of [
    ['server', 'etcd'],
    ['client', 'weavets'],
  ] as const) {
    await openssl([
      'req',
      '-new',
      ...ec,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.csr`),
      '-subj',
      `/CN=${cn}`,
      ...cnf,
    ]);
    await openssl([
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f(`${name}.pem`),
      '-days',
      '2',
      '-extfile',
      f('openssl.cnf'),
      '-extensions',
      name,
    ]);
  }
  for (const e of fs.readdirSync(dir)) fs.chmodSync(f(e), e.endsWith('.key') ? 0o600 : 0o644);
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    otherCa: f('other-ca.pem'),
  };
}

/** etcd in host1's namespace on host1's underlay address, health-checked from there. */
function startLabEtcd(
  lab: Lab,
  host: Host,
  health: Omit<AdminArgs, 'url'>,
  extra: Parameters<typeof startEtcd>[0] = {},
): Promise<EtcdServer> {
  return startEtcd({
    host: host.ip,
    clientPort: 2379,
    peerPort: 2380,
    prefix: ['nsenter', `--net=${host.netns}`, '--'],
    healthy: async (url) => (await admin(lab, host, 'health', { url, ...health })).code === 0,
    ...extra,
  });
}

describeEtcd('etcd over TLS with client certificates', () => {
  let lab: Lab;
  let etcd: EtcdServer;
  let pki: Pki;
  let host1: Host;
  let host2: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';

  useLab(
    async (l) => {
      lab = l;
      lab.requireCli();
      host1 = await lab.addHost('host1');
      host2 = await lab.addHost('host2');
      c1 = await lab.addContainer(host1, 'c1');
      c2 = await lab.addContainer(host2, 'c2');
      pki = await makePki(path.join(lab.dir, 'pki'), host1.ip);
      etcd = await startLabEtcd(
        lab,
        host1,
        { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
        { tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca } },
      );
      expect(etcd.url).toBe(`https://${host1.ip}:2379`);
      const common = [
        '--datapath',
        'sleeve',
        '--etcd',
        etcd.url,
        '--etcd-ca',
        pki.ca,
        '--etcd-cert',
        pki.clientCert,
        '--etcd-key',
        pki.clientKey,
      ];
      await lab.launch(host1, [], common);
      await lab.launch(host2, [], common); // no peer: it finds host1 through etcd
      ip1 = await lab.attach(host1, c1);
      ip2 = await lab.attach(host2, c2);
    },
    { teardown: async () => await etcd?.destroy() },
  );

  it('two daemons over TLS: distinct addresses, ping, allocations in etcd', async () => {
    expect(ip1.split('/')[0]).not.toBe(ip2.split('/')[0]);
    await lab.waitFor(async () => (await lab.ping(c1, ip2.split('/')[0]!, { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to ping c2 across hosts that met through etcd over TLS',
      timeoutMs: 30_000,
    });
    const s = await lab.weavetsJson<IpamStatus>(host2, ['status', 'ipam']);
    expect(s.store).toEqual({ kind: 'etcd', location: etcd.url });
    expect(s.hosts.map((h) => h.nickname).sort()).toEqual(['host1', 'host2']);
    // Seen from etcd itself, with the client certificate.
    const keys = JSON.parse(
      await adminOk(lab, host1, 'keys', {
        url: etcd.url,
        ca: pki.ca,
        cert: pki.clientCert,
        key: pki.clientKey,
        prefix: PREFIX,
      }),
    ) as string[];
    const addrs = keys.filter((k) => k.startsWith(`${PREFIX}${ADDRS_PREFIX}`));
    const hex = (ip: string): string =>
      ip
        .split('/')[0]!
        .split('.')
        .map((o) => Number(o).toString(16).padStart(2, '0'))
        .join('');
    expect(
      addrs.some((k) => k.endsWith(hex(ip1))),
      `${ip1} (${hex(ip1)}) in ${keys.join(' ')}`,
    ).toBe(true);
    expect(
      addrs.some((k) => k.endsWith(hex(ip2))),
      `${ip2} (${hex(ip2)}) in ${keys.join(' ')}`,
    ).toBe(true);
    // Without a client certificate etcd itself refuses us: the server really requires one.
    expect((await admin(lab, host1, 'keys', { url: etcd.url, ca: pki.ca, prefix: PREFIX })).code).not.toBe(0);
  });

  it("a CA that did not sign etcd's certificate fails the launch, saying so", async () => {
    const host3 = await lab.addHost('host3');
    const t0 = Date.now();
    const r = await lab.weavets(
      host3,
      [
        'launch',
        '--nickname',
        'host3',
        '--datapath',
        'sleeve',
        '--etcd',
        etcd.url,
        '--etcd-ca',
        pki.otherCa,
        '--etcd-cert',
        pki.clientCert,
        '--etcd-key',
        pki.clientKey,
      ],
      { timeoutMs: 45_000 },
    );
    const took = Date.now() - t0;
    console.log(`wrong CA: launch exited ${r.code} after ${took} ms; stderr:\n${r.stderr}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate/i);
    expect(r.stderr).toMatch(/--etcd-ca/);
    expect(took).toBeLessThan(25_000);
  }, 60_000);

  it('no client certificate, when etcd requires one, fails the launch, saying so', async () => {
    const host4 = await lab.addHost('host4');
    const r = await lab.weavets(
      host4,
      ['launch', '--nickname', 'host4', '--datapath', 'sleeve', '--etcd', etcd.url, '--etcd-ca', pki.ca],
      {
        timeoutMs: 45_000,
      },
    );
    console.log(`no client cert: launch exited ${r.code}; stderr:\n${r.stderr}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/TLS|certificate/i);
    expect(r.stderr).toMatch(/--etcd-cert/);
  }, 60_000);
});

describeEtcd('etcd with authentication', () => {
  let lab: Lab;
  let etcd: EtcdServer;
  let host1: Host;
  let host2: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';
  let passwordFile = '';
  const password = `wt-${crypto.randomBytes(12).toString('hex')}`;
  const rootPassword = `root-${crypto.randomBytes(12).toString('hex')}`;
  const TOKEN_TTL_S = 2;
  let launchOutput = '';

  useLab(
    async (l) => {
      lab = l;
      lab.requireCli();
      host1 = await lab.addHost('host1');
      host2 = await lab.addHost('host2');
      c1 = await lab.addContainer(host1, 'c1');
      c2 = await lab.addContainer(host2, 'c2');
      // Short-lived auth tokens: the daemons must re-authenticate while they run.
      etcd = await startLabEtcd(lab, host1, {}, { extraArgs: ['--auth-token-ttl', String(TOKEN_TTL_S)] });
      await adminOk(lab, host1, 'setup-auth', {
        url: etcd.url,
        rootPassword,
        user: 'weavets',
        password,
        prefix: PREFIX,
      });
      // Auth is on: anonymous access is refused.
      expect((await admin(lab, host1, 'keys', { url: etcd.url, prefix: PREFIX })).code).not.toBe(0);
      passwordFile = path.join(lab.dir, 'etcd-password');
      fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
      const common = [
        '--datapath',
        'sleeve',
        '--etcd',
        etcd.url,
        '--etcd-user',
        'weavets',
        '--etcd-password-file',
        passwordFile,
      ];
      for (const h of [host1, host2]) {
        const r = await lab.weavets(h, ['launch', '--nickname', h.name, '--http-addr', '127.0.0.1:6782', ...common], {
          timeoutMs: 45_000,
        });
        launchOutput += r.stdout + r.stderr;
        if (r.code !== 0) throw new Error(`launch on ${h.name} failed (${r.code}): ${r.stderr}`);
      }
      ip1 = await lab.attach(host1, c1);
      ip2 = await lab.attach(host2, c2);
    },
    { teardown: async () => await etcd?.destroy() },
  );

  it('two daemons as the weavets user: distinct addresses, ping, allocations in etcd', async () => {
    expect(ip1.split('/')[0]).not.toBe(ip2.split('/')[0]);
    await lab.waitFor(async () => (await lab.ping(c1, ip2.split('/')[0]!, { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to ping c2 across hosts that met through etcd with auth',
      timeoutMs: 30_000,
    });
    const s = await lab.weavetsJson<IpamStatus>(host1, ['status', 'ipam']);
    expect(s.hosts.map((h) => h.nickname).sort()).toEqual(['host1', 'host2']);
    const keys = JSON.parse(
      await adminOk(lab, host1, 'keys', { url: etcd.url, user: 'weavets', password, prefix: PREFIX }),
    ) as string[];
    expect(keys.filter((k) => k.startsWith(`${PREFIX}${ADDRS_PREFIX}`)).length).toBeGreaterThanOrEqual(2);
  });

  it('keeps working after its auth token expired', async () => {
    // Longer than the token TTL and than the host registry's refresh: every token the
    // daemons got at launch is gone, and they must authenticate again.
    await sleep((TOKEN_TTL_S + 12) * 1000);
    const c3 = await lab.addContainer(host1, 'c3');
    const c4 = await lab.addContainer(host2, 'c4');
    const ip3 = await lab.attach(host1, c3, ['--name', 'c3']);
    const ip4 = await lab.attach(host2, c4);
    expect(new Set([ip1, ip2, ip3, ip4].map((c) => c.split('/')[0])).size).toBe(4);
    // Watches too: host2 learns c3's DNS record, which host1 wrote after the expiry.
    const dns2 = (await lab.weavetsJson<DnsStatus>(host2, ['status', 'dns'])).listen[0]!.split(':')[0]!;
    await lab.waitFor(
      async () =>
        (await lab.exec(c4, ['dig', `@${dns2}`, '+short', '+tries=1', '+time=2', 'c3.weavets.local'])).stdout.trim() ===
        ip3.split('/')[0],
      { what: `host2's DNS to answer c3.weavets.local with ${ip3}`, timeoutMs: 15_000 },
    );
    const log = lab.logTail(host1, 200) + lab.logTail(host2, 200);
    expect(log).not.toMatch(/lease lost/);
  }, 60_000);

  it("the password is in neither the daemon's argv nor its log", () => {
    for (const h of [host1, host2]) {
      const pid = lab.daemonPid(h);
      expect(pid, `${h.name} daemon pid`).toBeDefined();
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      // The background daemon takes its validated config, the password read from
      // --etcd-password-file included, over a pipe (src/cli/config-pipe.ts), not as flags.
      expect(argv).toContain('--config-fd');
      expect(argv).not.toContain(passwordFile);
      expect(argv.join(' ')).not.toContain(password);
      expect(fs.readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(password);
      const log = fs.readFileSync(path.join(h.stateDir, 'weavets.log'), 'utf8');
      expect(log.length).toBeGreaterThan(0);
      expect(log).not.toContain(password);
    }
    expect(launchOutput).not.toContain(password);
  });

  it('a wrong password fails the launch, saying so', async () => {
    const host3 = await lab.addHost('host3');
    const wrongFile = path.join(lab.dir, 'etcd-password-wrong');
    const wrong = `nope-${crypto.randomBytes(8).toString('hex')}`;
    fs.writeFileSync(wrongFile, `${wrong}\n`, { mode: 0o600 });
    const r = await lab.weavets(
      host3,
      [
        'launch',
        '--nickname',
        'host3',
        '--datapath',
        'sleeve',
        '--etcd',
        etcd.url,
        '--etcd-user',
        'weavets',
        '--etcd-password-file',
        wrongFile,
      ],
      { timeoutMs: 45_000 },
    );
    console.log(`wrong password: launch exited ${r.code}; stderr:\n${r.stderr}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/authentication failed|invalid user ID or password/i);
    expect(r.stderr).toMatch(/--etcd-password-file/);
    expect(r.stderr + lab.logTail(host3)).not.toContain(wrong);
  }, 60_000);
});
