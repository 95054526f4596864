/**
 * Policy between workloads on three hosts sharing a real etcd (in h1's namespace), over
 * the sleeve and over fastdp: an allow matrix with TCP, UDP and ICMP across hosts and on
 * one host, egress rules (DNS to the host's resolver still answered), a container that
 * borrows another's address or MAC refused, drops named in `policy drops`, audit mode
 * and --policy-dry-run, `policy test` passing and failing, bad input refused with the
 * field's path and nothing half-applied, changes made on one host in force on every
 * host, and a stopped daemon leaving enforcement in place.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import type { EndpointStatus } from '../../src/endpoint/types';
import type { PolicyDrop } from '../../src/policy/drops';
import type { StoredPolicy } from '../../src/policy/model';
import type { PolicyStatus } from '../../src/policy/service';
import { createLab, type Host, type Lab, type Namespace } from './harness';
import { ETCD_TOOLS, startEtcdIn, type EtcdServer } from '../e2e/etcd';
import { describeWithTools } from '../require-tools';

const ip = (cidr: string): string => cidr.split('/')[0]!;

/** Echo server: TCP and UDP on every port given. */
const SERVER = `
const net = require('node:net'); const dgram = require('node:dgram');
const ports = process.argv.slice(2).map(Number);
let up = 0;
for (const p of ports) {
  net.createServer((s) => s.pipe(s)).listen(p, '0.0.0.0', () => { if (++up === ports.length * 2) console.log('ready'); });
  const u = dgram.createSocket('udp4'); u.on('message', (m, r) => u.send(m, r.port, r.address)); u.bind(p, '0.0.0.0', () => { if (++up === ports.length * 2) console.log('ready'); });
}
`;

/** Client: exit 0 when the server echoed within the timeout, 1 otherwise. */
const CLIENT = `
const net = require('node:net'); const dgram = require('node:dgram');
const [proto, host, port, local] = process.argv.slice(2);
const fail = setTimeout(() => process.exit(1), 1500);
const ok = () => { clearTimeout(fail); process.exit(0); };
if (proto === 'tcp') {
  const s = net.connect({ host, port: Number(port), ...(local ? { localAddress: local } : {}) }, () => s.write('hi'));
  s.on('data', ok); s.on('error', () => process.exit(1));
} else {
  const u = dgram.createSocket('udp4');
  u.on('message', ok);
  u.bind(local ? { address: local } : {}, () => u.send('hi', Number(port), host));
}
`;

const DB_POLICY = {
  name: 'db-ingress',
  network: 'weavets',
  selector: { app: 'db' },
  ingress: [
    {
      from: [{ selector: { app: 'web' } }],
      ports: [
        { protocol: 'tcp', port: 5432 },
        { protocol: 'udp', port: 5432 },
      ],
    },
    {
      from: [{ selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web'] }] } }],
      ports: [{ protocol: 'icmp' }],
    },
  ],
};

const WEB_EGRESS = `name: web-egress
network: weavets
selector: {app: web}
egress:
  - to:
      - selector: {app: db}
    ports:
      - {protocol: tcp, port: 5432}
`;

const describeEtcd = describeWithTools(ETCD_TOOLS);

for (const datapath of ['sleeve', 'fastdp']) {
  describeEtcd(`policy between workloads over ${datapath}`, () => {
    let lab: Lab;
    let etcd: EtcdServer;
    let h1: Host;
    let h2: Host;
    let h3: Host;
    const c: Record<string, Namespace> = {};
    const addr: Record<string, string> = {};
    let dnsOnH1 = '';

    const write = (name: string, content: string): string => {
      const file = path.join(lab.dir, name);
      fs.writeFileSync(file, content);
      return file;
    };
    const reach = async (
      from: string,
      proto: 'tcp' | 'udp',
      to: string,
      port: number,
      local?: string,
    ): Promise<boolean> => {
      const r = await lab.exec(
        c[from]!,
        [process.execPath, path.join(lab.dir, 'client.js'), proto, addr[to]!, String(port), ...(local ? [local] : [])],
        { timeoutMs: 15_000 },
      );
      return r.code === 0;
    };
    const pings = async (from: string, to: string): Promise<boolean> =>
      (await lab.ping(c[from]!, addr[to]!, { count: 1, timeoutS: 1 })).ok;
    const status = (h: Host): Promise<PolicyStatus> => lab.weavetsJson<PolicyStatus>(h, ['policy', 'status']);
    /** Every host has the store's current generation in force. */
    const everywhere = async (generation: number): Promise<void> => {
      for (const h of [h1, h2, h3]) {
        await lab.waitFor(async () => (await status(h)).enforcedGeneration >= generation, {
          what: `${h.name} to enforce generation ${generation}`,
          timeoutMs: 15_000,
        });
      }
    };
    const applied = async (h: Host, file: string): Promise<number> => {
      const out = await lab.weavetsOk(h, ['policy', 'apply', '-f', file]);
      const m = /generation (\d+)/.exec(out);
      expect(m, out).not.toBeNull();
      return Number(m![1]);
    };

    beforeAll(async () => {
      lab = await createLab();
      lab.requireCli();
      h1 = await lab.addHost('h1');
      h2 = await lab.addHost('h2');
      h3 = await lab.addHost('h3');
      etcd = await startEtcdIn(lab, h1);
      write('server.js', SERVER);
      write('client.js', CLIENT);
      const common = ['--datapath', datapath, '--etcd', etcd.url, '--ipam-lease-ttl', '30'];
      try {
        await lab.launch(h1, [], common);
        await lab.launch(h2, [h1.ip], common);
        await lab.launch(h3, [h1.ip, h2.ip], common);
        const place: [string, Host, string[]][] = [
          ['web', h1, ['--label', 'app=web']],
          ['x', h1, ['--label', 'app=other']],
          ['db', h2, ['--label', 'app=db', '--label', 'tier=data']],
          ['y', h2, []],
          ['web2', h2, ['--label', 'app=web']],
          ['web3', h3, ['--label', 'app=web']],
          ['other', h3, ['--label', 'app=other']],
          ['spoof', h3, ['--label', 'app=spoof']],
        ];
        for (const [name, host, labels] of place) {
          c[name] = await lab.addContainer(host, name);
          addr[name] = ip(await lab.attach(host, c[name], ['--name', name, ...labels]));
        }
        for (const name of ['db', 'other', 'web']) {
          const srv = lab.spawnIn(c[name]!, [process.execPath, path.join(lab.dir, 'server.js'), '5432', '80']);
          await new Promise<void>((resolve, reject) => {
            srv.stdout!.on('data', () => resolve());
            srv.on('exit', (code) => reject(new Error(`server in ${name} exited ${code}`)));
          });
        }
        dnsOnH1 = (await lab.weavetsJson<{ listen: string[] }>(h1, ['status', 'dns'])).listen[0]!.split(':')[0]!;
        // The mesh is up when every container reaches every other.
        for (const [a, b] of [
          ['web', 'db'],
          ['x', 'db'],
          ['web3', 'db'],
          ['web', 'other'],
          ['spoof', 'db'],
        ] as const) {
          await lab.waitFor(async () => pings(a, b), {
            what: `${a} to ping ${b} before any policy`,
            timeoutMs: 45_000,
          });
        }
      } catch (err) {
        lab.dumpLogs();
        throw err;
      }
    }, 240_000);

    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => lab.dumpLogs());
    });

    afterAll(async () => {
      await lab?.destroy();
      await etcd?.destroy();
    });

    it(`carries the containers over ${datapath}`, async () => {
      const conns = await lab.weavetsJson<{ nickname: string; state: string; datapath: string }[]>(h2, [
        'status',
        'connections',
      ]);
      expect(conns.filter((x) => x.state === 'established').map((x) => x.datapath)).toEqual([datapath, datapath]);
    });

    it('ps --json shows the labels given to attach', async () => {
      const eps = await lab.weavetsJson<EndpointStatus[]>(h2, ['ps']);
      expect(eps.find((e) => e.id === 'db')?.labels).toEqual({ app: 'db', tier: 'data' });
      expect(eps.find((e) => e.id === 'y')?.labels).toBeUndefined();
    });

    it('without a policy everything reaches db, and no stateful table exists', async () => {
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(true);
      expect(await reach('x', 'tcp', 'db', 80)).toBe(true);
      expect((await status(h2)).statefulBridges).toEqual([]);
      const tables = (await lab.execOk(h2, ['nft', 'list', 'tables'])).stdout;
      expect(tables).toContain('table bridge weavets_policy');
      expect(tables).not.toContain('table inet weavets_policy');
    });

    it('refuses a bad policy with the field path, and nothing is applied', async () => {
      const cases: [unknown, RegExp][] = [
        [{ ...DB_POLICY, ingres: [] }, /ingres: unknown field/],
        [{ ...DB_POLICY, selector: { 'bad key!': 'x' } }, /selector\.bad key!: bad selector/],
        [
          { ...DB_POLICY, ingress: [{ ports: [{ protocol: 'tcp', port: 70000 }] }] },
          /ingress\[0\]\.ports\[0\]\.port: port 70000 is out of range/,
        ],
        [{ ...DB_POLICY, network: 'nonesuch' }, /network: network "nonesuch" does not exist/],
      ];
      for (const [doc, message] of cases) {
        const r = await lab.weavets(h1, ['policy', 'apply', '-f', write('bad.json', JSON.stringify(doc))]);
        expect(r.code, r.stdout).not.toBe(0);
        expect(r.stderr).toMatch(/bad\.json: /);
        expect(r.stderr).toMatch(message);
      }
      expect(await lab.weavetsJson<StoredPolicy[]>(h2, ['policy', 'ls'])).toEqual([]);
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(true);
    });

    it('db-ingress applied on h1 holds on every host: the allow matrix with TCP, UDP and ICMP', async () => {
      const generation = await applied(h1, write('db.json', JSON.stringify(DB_POLICY)));
      await everywhere(generation);
      const matrix: [string, 'tcp' | 'udp' | 'icmp', number, boolean][] = [
        ['web', 'tcp', 5432, true], // h1 -> h2
        ['web3', 'tcp', 5432, true], // h3 -> h2
        ['web', 'udp', 5432, true],
        ['web', 'icmp', 0, true],
        ['web', 'tcp', 80, false], // port not allowed
        ['web', 'udp', 80, false],
        ['x', 'tcp', 5432, false], // no app=web
        ['x', 'udp', 5432, false],
        ['x', 'icmp', 0, false],
        ['y', 'tcp', 5432, false], // same host as db, no labels
        ['y', 'icmp', 0, false],
      ];
      for (const [from, proto, port, allowed] of matrix) {
        const got = proto === 'icmp' ? await pings(from, 'db') : await reach(from, proto, 'db', port);
        expect(got, `${from} -> db ${proto}/${port}`).toBe(allowed);
      }
      // db is isolated for ingress only: what it starts, and the replies, pass.
      expect(await reach('db', 'tcp', 'other', 80)).toBe(true);
      expect(await pings('db', 'x')).toBe(true);
      expect((await status(h2)).statefulBridges).toEqual(['weavets']);
      const ls = await lab.weavetsJson<StoredPolicy[]>(h3, ['policy', 'ls']);
      expect(ls.map((p) => [p.name, p.version])).toEqual([['db-ingress', 1]]);
      expect(await lab.weavetsOk(h3, ['policy', 'ls'])).toMatch(/^db-ingress\s+weavets\s+1\s+enforce\s+app=db/m);
    });

    it(`tracks the frames it decides on${datapath === 'fastdp' ? ', not the VXLAN datagrams around them' : ''}`, async () => {
      expect(await reach('web', 'tcp', 'db', 5432)).toBe(true);
      const tracked = (await lab.execOk(h2, ['cat', '/proc/net/nf_conntrack'])).stdout;
      const web = addr.web!.replace(/\./g, '\\.');
      const db = addr.db!.replace(/\./g, '\\.');
      expect(tracked).toMatch(new RegExp(` tcp .* src=${web} dst=${db} sport=\\d+ dport=5432 `));
      const raw = (await lab.execOk(h2, ['nft', 'list', 'chain', 'inet', 'weavets_policy', 'raw_prerouting'])).stdout;
      if (datapath === 'fastdp') {
        expect(raw).toContain('udp dport 6784 fib daddr type local notrack');
        expect(tracked).not.toMatch(/ udp .* dport=6784 /);
      } else expect(raw).not.toContain('6784');
    });

    it('names every drop in policy drops on the host that refused it, and counts it', async () => {
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(false);
      const drop = await lab.waitFor(
        async () =>
          (await lab.weavetsJson<PolicyDrop[]>(h2, ['policy', 'drops'])).find(
            (d) => d.from.name === 'x' && d.port === 5432 && d.protocol === 'tcp',
          ),
        { what: 'a drop of x -> db tcp/5432 on h2', timeoutMs: 10_000 },
      );
      expect(drop).toMatchObject({ network: 'weavets', policy: 'db-ingress', direction: 'ingress', mode: 'enforce' });
      expect(drop.from).toEqual({ name: 'x', host: 'h1', address: addr['x'] });
      expect(drop.to).toEqual({ name: 'db', host: 'h2', address: addr['db'] });
      expect(Date.now() - Date.parse(drop.time)).toBeLessThan(60_000);
      const table = await lab.weavetsOk(h2, ['policy', 'drops']);
      expect(table).toMatch(/^TIME\s+FROM\s+TO\s+PROTO\/PORT\s+POLICY/);
      expect(table).toMatch(
        new RegExp(`x \\(h1, ${addr['x']!.replace(/\./g, '\\.')}\\)\\s+db \\(h2, .*\\)\\s+tcp/5432\\s+db-ingress`),
      );
      const metrics = await lab.http(h2, '/metrics');
      expect(metrics.body).toMatch(/^weavets_policy_drops_total\{network="weavets",policy="db-ingress"\} [1-9]/m);
    });

    it('policy test passes with the issue example, fails on a wrong expectation, and resolves live names', async () => {
      write(
        'db-tests.json',
        JSON.stringify({
          policies: ['db.json'],
          tests: [
            { from: { app: 'web' }, to: { app: 'db' }, port: 'tcp/5432', expect: 'allow' },
            { from: { app: 'other' }, to: { app: 'db' }, port: 'tcp/5432', expect: 'deny' },
            { from: 'web3', to: 'db', port: 'tcp/5432', expect: 'allow' },
            { from: 'x', to: 'db', port: 'icmp', expect: 'deny' },
          ],
        }),
      );
      const pass = await lab.weavets(h1, ['policy', 'test', '-f', path.join(lab.dir, 'db-tests.json')]);
      expect(pass.code, pass.stdout + pass.stderr).toBe(0);
      expect(pass.stdout).toMatch(
        /^PASS\s+\{app=web\} -> \{app=db\}\s+tcp\/5432\s+allow\s+\(allowed by db-ingress ingress\[0\]\)/m,
      );
      write(
        'db-wrong.json',
        JSON.stringify({
          policies: ['db-ingress'],
          tests: [{ from: 'x', to: 'db', port: 'tcp/5432', expect: 'allow' }],
        }),
      );
      const fail = await lab.weavets(h3, ['policy', 'test', '-f', path.join(lab.dir, 'db-wrong.json')]);
      expect(fail.code).toBe(1);
      expect(fail.stdout).toMatch(
        /^FAIL\s+x -> db\s+tcp\/5432\s+deny \(expected allow\)\s+\(denied: db-ingress isolates the receiver/m,
      );
    });

    it('weavets trace names the policy verdict and the rule that decided it', async () => {
      type Verdict = {
        policy: { verdict: string; policy: string | null; reason: string };
        reachable: boolean;
        reason: string;
      };
      const trace = async (from: string, to: string, port: string): Promise<{ code: number | null; v: Verdict }> => {
        const r = await lab.weavets(h3, ['trace', from, to, '--port', port, '--json']);
        return { code: r.code, v: JSON.parse(r.stdout) as Verdict };
      };
      const web = await trace('web', 'db', 'tcp/5432');
      expect(web.v.policy.verdict, JSON.stringify(web.v)).toBe('allow');
      expect(web.v.policy.policy).toBe('db-ingress ingress[0]');
      expect(web.code).toBe(0);
      const x = await trace('x', 'db', 'tcp/5432');
      expect(x.v.policy.verdict, JSON.stringify(x.v)).toBe('deny');
      expect(x.v.policy.policy).toBe('db-ingress');
      expect(x.v.reachable).toBe(false);
      expect(x.v.reason).toMatch(/^denied by policy: db-ingress/);
      expect(x.code).toBe(1);
      const bad = await lab.weavets(h3, ['trace', 'web', 'db', '--port', 'tcp/70000']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/port: .*tcp\/70000/);
    });

    it('egress rules: web reaches only db on 5432, DNS to its host still answers', async () => {
      expect(await reach('web', 'tcp', 'other', 80)).toBe(true);
      const generation = await applied(h3, write('web-egress.yaml', WEB_EGRESS));
      await everywhere(generation);
      expect(await reach('web', 'tcp', 'other', 80)).toBe(false);
      expect(await reach('web3', 'tcp', 'other', 80)).toBe(false); // web3 on other's host
      expect(await reach('web', 'tcp', 'db', 5432)).toBe(true);
      expect(await pings('web', 'db')).toBe(false); // egress allows tcp/5432 only
      expect(await reach('x', 'tcp', 'other', 80)).toBe(true);
      const dig = await lab.exec(c['web']!, [
        'dig',
        `@${dnsOnH1}`,
        '+short',
        '+tries=1',
        '+time=3',
        'db.weavets.local',
      ]);
      expect(dig.stdout.trim()).toBe(addr['db']);
      await lab.waitFor(
        async () =>
          (await lab.weavetsJson<PolicyDrop[]>(h1, ['policy', 'drops'])).find(
            (d) => d.policy === 'web-egress' && d.direction === 'egress' && d.to.name === 'other',
          ),
        { what: 'an egress drop of web -> other on h1', timeoutMs: 10_000 },
      );
      // A datagram to its host on the VXLAN port is checked like any other (the
      // tunnel's notrack never applies to a policy bridge's frames): refused, and named.
      await lab.exec(c['web']!, [process.execPath, path.join(lab.dir, 'client.js'), 'udp', dnsOnH1, '6784'], {
        timeoutMs: 15_000,
      });
      await lab.waitFor(
        async () =>
          (await lab.weavetsJson<PolicyDrop[]>(h1, ['policy', 'drops'])).find(
            (d) => d.policy === 'web-egress' && d.protocol === 'udp' && d.port === 6784,
          ),
        { what: 'an egress drop of web -> its host udp/6784 on h1', timeoutMs: 10_000 },
      );
      await lab.weavetsOk(h2, ['policy', 'rm', 'web-egress']);
      const s = await status(h2);
      await everywhere(s.generation);
      expect(await reach('web', 'tcp', 'other', 80)).toBe(true);
    });

    it('a container borrowing another address or MAC is refused, and the drop is named', async () => {
      // spoof (h3, app=spoof) takes web's address as a second one and sends from it.
      await lab.execOk(c['spoof']!, ['ip', 'addr', 'add', `${addr['web']}/32`, 'dev', 'eth0']);
      expect(await reach('spoof', 'tcp', 'db', 5432, addr['web'])).toBe(false);
      expect(await reach('spoof', 'tcp', 'other', 80, addr['web'])).toBe(false); // not even to an open port
      await lab.execOk(c['spoof']!, ['ip', 'addr', 'del', `${addr['web']}/32`, 'dev', 'eth0']);
      expect(await reach('spoof', 'tcp', 'other', 80)).toBe(true);
      const d = await lab.waitFor(
        async () =>
          (await lab.weavetsJson<PolicyDrop[]>(h3, ['policy', 'drops'])).find((x) => x.policy === 'anti-spoofing'),
        {
          what: 'an anti-spoofing drop on h3',
          timeoutMs: 10_000,
        },
      );
      expect(d.from.address).toBe(addr['web']);
      // A borrowed MAC: nothing leaves the port.
      // (ip, not /sys: the exec enters the network namespace only, /sys is the caller's.)
      const mac = /link\/ether ([0-9a-f:]{17})/.exec(
        (await lab.execOk(c['spoof']!, ['ip', '-o', 'link', 'show', 'eth0'])).stdout,
      )![1]!;
      await lab.execOk(c['spoof']!, ['ip', 'link', 'set', 'eth0', 'address', '02:de:ad:be:ef:01']);
      await lab.execOk(c['spoof']!, ['ip', 'neigh', 'flush', 'all']);
      expect(await pings('spoof', 'other')).toBe(false);
      await lab.execOk(c['spoof']!, ['ip', 'link', 'set', 'eth0', 'address', mac]);
      await lab.execOk(c['spoof']!, ['ip', 'neigh', 'flush', 'all']);
      const back = await lab
        .waitFor(async () => pings('spoof', 'other'), {
          what: 'spoof to reach other again with its own MAC',
          timeoutMs: 10_000,
        })
        .catch(async (err: Error) => {
          const diag = await Promise.all([
            lab.exec(c['spoof']!, ['ip', 'neigh']),
            lab.exec(c['other']!, ['ip', 'neigh']),
            lab.exec(c['spoof']!, ['ip', 'link', 'show', 'eth0']),
            lab.exec(h3, ['nft', 'list', 'table', 'bridge', 'weavets_policy']),
            lab.exec(h3, ['bridge', 'fdb', 'show', 'br', 'weavets']),
          ]);
          throw new Error(`${err.message}\n${diag.map((d) => d.stdout + d.stderr).join('\n---\n')}`);
        });
      expect(back).toBe(true);
    });

    it('audit mode logs what it would drop and drops nothing', async () => {
      const generation = await applied(h1, write('db-audit.json', JSON.stringify({ ...DB_POLICY, mode: 'audit' })));
      await everywhere(generation);
      expect((JSON.parse(await lab.weavetsOk(h2, ['policy', 'show', 'db-ingress'])) as StoredPolicy).version).toBe(2);
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(true);
      await lab.waitFor(
        async () =>
          (await lab.weavetsJson<PolicyDrop[]>(h2, ['policy', 'drops'])).find(
            (d) => d.from.name === 'x' && d.mode === 'audit' && d.policy === 'db-ingress',
          ),
        { what: 'an audit record of x -> db on h2', timeoutMs: 10_000 },
      );
      const back = await applied(h1, path.join(lab.dir, 'db.json'));
      await everywhere(back);
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(false);
    });

    it('a stopped daemon leaves enforcement in force, and a restart keeps it', async () => {
      // On db's own host (the sleeve carries nothing between hosts while its daemon is down).
      expect(await reach('web2', 'tcp', 'db', 5432)).toBe(true);
      await lab.stopDaemon(h2);
      expect(await reach('y', 'tcp', 'db', 5432)).toBe(false);
      expect(await pings('y', 'db')).toBe(false);
      expect(await reach('web2', 'tcp', 'db', 5432)).toBe(true);
      expect(await reach('web2', 'tcp', 'db', 80)).toBe(false);
      await lab.launch(h2, [h1.ip], ['--datapath', datapath, '--etcd', etcd.url, '--ipam-lease-ttl', '30']);
      expect(await reach('y', 'tcp', 'db', 5432)).toBe(false);
      await lab.waitFor(async () => (await status(h2)).enforcedGeneration >= 0, {
        what: 'h2 to enforce again',
        timeoutMs: 15_000,
      });
      expect(await reach('y', 'tcp', 'db', 5432)).toBe(false);
      expect(await reach('web2', 'tcp', 'db', 5432)).toBe(true);
      await lab.waitFor(async () => reach('web', 'tcp', 'db', 5432), {
        what: 'web on h1 to reach db again',
        timeoutMs: 30_000,
      });
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(false);
    });

    it('--policy-dry-run drops nothing and logs what it would', async () => {
      await lab.stopDaemon(h2);
      await lab.launch(
        h2,
        [h1.ip],
        ['--datapath', datapath, '--etcd', etcd.url, '--ipam-lease-ttl', '30', '--policy-dry-run'],
      );
      await lab.waitFor(async () => (await status(h2)).dryRun && (await status(h2)).enforcedGeneration >= 0, {
        what: 'h2 to enforce in dry run',
        timeoutMs: 15_000,
      });
      expect(await reach('x', 'tcp', 'db', 5432)).toBe(true);
      await lab.waitFor(
        async () =>
          (await lab.weavetsJson<PolicyDrop[]>(h2, ['policy', 'drops'])).find(
            (d) => d.from.name === 'x' && d.mode === 'audit',
          ),
        { what: 'a dry-run record of x -> db on h2', timeoutMs: 10_000 },
      );
    });
  });
}
