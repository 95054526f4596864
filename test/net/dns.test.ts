/**
 * Embedded DNS across two hosts on a real etcd (in host h1's namespace): dig from
 * container namespaces. Cross-host names, round-robin, PTR, NXDOMAIN, TCP fallback,
 * upstream forwarding to a stub server in a lab namespace, the resolv.conf attach
 * writes, and records vanishing with a killed host's lease.
 */
import { it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DnsStatus } from '../../src/dns/status';
import { createLab, REPO_ROOT, type Host, type Lab, type Namespace } from './harness';
import { ETCD_TOOLS, startEtcdIn, type EtcdServer } from '../e2e/etcd';
import { describeWithTools } from '../require-tools';

const ip = (cidr: string): string => cidr.split('/')[0]!;
const TTL = 3;

/** A stub upstream: example.com A -> 198.51.100.7, everything else NXDOMAIN. */
const STUB = `
const dgram = require('node:dgram');
const pkt = require(${JSON.stringify(path.join(REPO_ROOT, 'node_modules', 'dns-packet'))});
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  let q; try { q = pkt.decode(m); } catch { return; }
  const name = q.questions[0].name.toLowerCase();
  const hit = name === 'example.com' && q.questions[0].type === 'A';
  s.send(pkt.encode({ type: 'response', id: q.id, flags: pkt.RECURSION_DESIRED | pkt.RECURSION_AVAILABLE | (hit ? 0 : 3),
    questions: q.questions, answers: hit ? [{ type: 'A', name: q.questions[0].name, ttl: 60, data: '198.51.100.7' }] : [] }), r.port, r.address);
});
s.bind(53, '198.18.0.2', () => console.log('stub ready'));
`;

describeWithTools(ETCD_TOOLS)('embedded DNS', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let c1: Namespace;
  let c2: Namespace;
  let c3: Namespace;
  let etcd: EtcdServer;
  let ip1 = '';
  let ip2 = '';
  let ip3 = '';
  let dns1 = '';
  let dns2 = '';
  let resolvConf = '';

  const dig = async (from: Namespace | Host, server: string, args: string[]): Promise<string> =>
    (await lab.execOk(from, ['dig', `@${server}`, '+tries=1', '+time=4', ...args], { timeoutMs: 20_000 })).stdout;
  const short = async (from: Namespace | Host, server: string, args: string[]): Promise<string[]> =>
    (await dig(from, server, ['+short', ...args]))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  const dnsAddress = async (h: Host): Promise<string> => {
    const s = await lab.weavetsJson<DnsStatus>(h, ['status', 'dns']);
    expect(s.listen.length).toBeGreaterThan(0);
    return s.listen[0]!.split(':')[0]!;
  };

  beforeAll(async () => {
    lab = await createLab();
    lab.requireCli();
    h1 = await lab.addHost('h1');
    h2 = await lab.addHost('h2');
    c1 = await lab.addContainer(h1, 'c1');
    c2 = await lab.addContainer(h2, 'c2');
    c3 = await lab.addContainer(h2, 'c3');
    const up = await lab.addNamespace('up');
    await lab.link(h1, 'vup', '198.18.0.1/24', up, 'eth0', '198.18.0.2/24');
    fs.writeFileSync(path.join(lab.dir, 'stub.js'), STUB);
    const stub = lab.spawnIn(up, [process.execPath, path.join(lab.dir, 'stub.js')]);
    await new Promise<void>((resolve, reject) => {
      stub.stdout!.on('data', () => resolve());
      stub.on('exit', (code) => reject(new Error(`stub upstream exited ${code}`)));
    });
    // A dead server first: forwarding must fail over to the next one.
    resolvConf = path.join(lab.dir, 'resolv.conf');
    fs.writeFileSync(resolvConf, 'nameserver 198.18.0.99\nnameserver 198.18.0.2\n');
    etcd = await startEtcdIn(lab, h1);
    const common = [
      '--datapath',
      'sleeve',
      '--etcd',
      etcd.url,
      '--ipam-lease-ttl',
      String(TTL),
      '--dns-resolv-conf',
      resolvConf,
    ];
    try {
      await lab.launch(h1, [], common);
      await lab.launch(h2, [h1.ip], common);
      ip1 = ip(await lab.attach(h1, c1, ['--name', 'web']));
      ip2 = ip(await lab.attach(h2, c2, ['--name', 'Web']));
      ip3 = ip(await lab.attach(h2, c3, ['--name', 'client']));
      dns1 = await dnsAddress(h1);
      dns2 = await dnsAddress(h2);
    } catch (err) {
      lab.dumpLogs();
      throw err;
    }
  }, 120_000);

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => lab.dumpLogs());
  });

  afterAll(async () => {
    // Lab.destroy also removes the /etc/netns/<ns>/resolv.conf attach wrote.
    await lab?.destroy();
    await etcd?.destroy();
  });

  it('listens only on the bridge addresses, port 53, and reports it', async () => {
    const s = await lab.weavetsJson<DnsStatus>(h1, ['status', 'dns']);
    expect(s.domain).toBe('weavets.local.');
    expect(s.listen).toEqual([`${dns1}:53`]);
    expect(dns1).toMatch(/^10\.(3[2-9]|4[0-7])\./);
    expect(s.upstream).toEqual(['198.18.0.99', '198.18.0.2']);
    const sockets = (await lab.execOk(h1, ['ss', '-Hlnu', 'sport', '=', ':53'])).stdout;
    expect(sockets).toContain(`${dns1}:53`);
    expect(sockets).not.toContain(h1.ip);
    expect((await lab.weavetsOk(h1, ['status', 'dns'])).trim()).toMatch(/Domain: weavets.local./);
  });

  it('answers names of both hosts from containers on both hosts, round-robin', async () => {
    await lab.waitFor(async () => (await short(c1, dns1, ['web.weavets.local'])).length === 2, {
      what: 'both web records on h1',
      timeoutMs: 5000,
    });
    const fromC3 = await short(c3, dns2, ['WEB.weavets.local']);
    expect([...fromC3].sort()).toEqual([ip1, ip2].sort());
    expect(await short(c1, dns1, ['client.weavets.local'])).toEqual([ip3]);
    const firsts = new Set<string>();
    for (let i = 0; i < 4; i++) firsts.add((await short(c1, dns1, ['web.weavets.local']))[0]!);
    expect(firsts).toEqual(new Set([ip1, ip2]));
  });

  it('answers PTR for container addresses, NXDOMAIN for missing names, NOERROR/empty for AAAA', async () => {
    expect(await short(c3, dns2, ['-x', ip1])).toEqual(['web.weavets.local.']);
    expect(await short(c1, dns1, ['-x', ip3])).toEqual(['client.weavets.local.']);
    expect(await dig(c1, dns1, ['nope.weavets.local'])).toMatch(/status: NXDOMAIN/);
    const aaaa = await dig(c1, dns1, ['web.weavets.local', 'AAAA']);
    expect(aaaa).toMatch(/status: NOERROR/);
    expect(aaaa).toMatch(/ANSWER: 0/);
  });

  it('makes a record added on one host answerable on the other within a second', async () => {
    await lab.weavetsOk(h1, ['dns-add', 'fresh', '10.32.200.1']);
    const added = Date.now();
    await lab.waitFor(async () => (await short(c3, dns2, ['fresh.weavets.local'])).includes('10.32.200.1'), {
      what: 'h2 to answer a record added on h1',
      timeoutMs: 5000,
      intervalMs: 20,
    });
    expect(Date.now() - added).toBeLessThan(1000);
    expect((await lab.weavetsOk(h2, ['dns-lookup', 'fresh'])).trim()).toBe('10.32.200.1');
    await lab.weavetsOk(h1, ['dns-remove', 'fresh']);
    await lab.waitFor(async () => (await dig(c3, dns2, ['fresh.weavets.local'])).includes('NXDOMAIN'), {
      what: 'the record to go',
      timeoutMs: 5000,
    });
  });

  it('truncates a large answer over UDP and dig retries over TCP', async () => {
    const ips = Array.from({ length: 120 }, (_, i) => `10.33.${Math.floor(i / 200)}.${(i % 200) + 1}`);
    await lab.weavetsOk(h1, ['dns-add', 'big', ...ips]);
    const udpOnly = await dig(c1, dns1, ['+ignore', '+notcp', 'big.weavets.local']);
    expect(udpOnly).toMatch(/flags: qr[^;]*\btc\b/);
    const out = await dig(c1, dns1, ['big.weavets.local']);
    expect(out).toMatch(/Truncated, retrying in TCP mode/);
    expect(out).toMatch(/ANSWER: 120/);
    expect(await short(c1, dns1, ['+tcp', 'big.weavets.local'])).toHaveLength(120);
  });

  it('forwards other names upstream (failing over a dead server), and SERVFAILs when all fail', async () => {
    expect(await short(c1, dns1, ['example.com'])).toEqual(['198.51.100.7']);
    expect(await dig(c1, dns1, ['missing.example'])).toMatch(/status: NXDOMAIN/);
    // resolv.conf is re-read on change: only the dead server now.
    fs.writeFileSync(resolvConf, 'nameserver 198.18.0.99\n');
    await lab.waitFor(async () => (await dig(c1, dns1, ['example.com'])).includes('status: SERVFAIL'), {
      what: 'SERVFAIL with only a dead upstream',
      timeoutMs: 15_000,
    });
    fs.writeFileSync(resolvConf, 'nameserver 198.18.0.2\n');
  });

  it('writes resolv.conf for a named namespace: the container resolves short names by search', async () => {
    const file = `/etc/netns/${c1.netnsName}/resolv.conf`;
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toContain(`nameserver ${dns1}`);
    expect(text).toContain('search weavets.local');
    const r = await lab.execOk(h1, [
      'ip',
      'netns',
      'exec',
      c1.netnsName,
      'dig',
      '+search',
      '+short',
      '+tries=1',
      'client',
    ]);
    expect(r.stdout.trim()).toBe(ip3);
    // detach takes it away again, with the directory it made.
    const c4 = await lab.addContainer(h1, 'c4');
    await lab.attach(h1, c4, ['--name', 'shortlived']);
    const file4 = `/etc/netns/${c4.netnsName}/resolv.conf`;
    expect(fs.existsSync(file4)).toBe(true);
    await lab.weavetsOk(h1, ['detach', 'c4']);
    expect(fs.existsSync(path.dirname(file4))).toBe(false);
  });

  it("drops a dead host's records once its lease expires", async () => {
    const pid = lab.daemonPid(h2)!;
    process.kill(pid, 'SIGKILL');
    const killed = Date.now();
    await lab.waitFor(async () => (await dig(c1, dns1, ['client.weavets.local'])).includes('NXDOMAIN'), {
      what: "h2's records to vanish from h1",
      timeoutMs: 20_000,
      intervalMs: 200,
    });
    expect(Date.now() - killed).toBeLessThan(TTL * 1000 + 5000);
    expect(await short(c1, dns1, ['web.weavets.local'])).toEqual([ip1]);
  });
});
