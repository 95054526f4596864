/**
 * Per-MAC FDB entries on the fastdp VXLAN devices, three hosts all on fastdp: once the
 * sleeve has learned (from ARP broadcasts) which host owns a container's MAC, known
 * unicast to it goes to that host alone: the third host's underlay sees no copy. When the
 * owner's path falls back to the sleeve the entry goes (pings keep working), and comes
 * back with the path. Stop leaves nothing.
 */
import { once } from 'node:events';
import { describe, it, expect } from 'vitest';
import type { ConnectionStatus } from '../../src/router/status';
import { sleep, type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const ip = (cidr: string): string => cidr.split('/')[0]!;

describe('fastdp per-MAC FDB entries', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let h3: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';
  let mac1 = '';
  let mac2 = '';
  let dev = '';

  const pathTo = async (h: Host, nickname: string): Promise<string | undefined> => {
    const cs = await lab.weavetsJson<ConnectionStatus[]>(h, ['status', 'connections']);
    return cs.find((x) => x.nickname === nickname && x.state === 'established')?.datapath;
  };
  const macOf = async (ns: Namespace): Promise<string> => {
    const r = await lab.execOk(ns, ['ip', '-o', 'link', 'show']);
    const m = /link\/ether ([0-9a-f:]{17})/.exec(r.stdout);
    if (!m) throw new Error(`no MAC in ${ns.name}: ${r.stdout}`);
    return m[1]!;
  };
  /** `bridge fdb show dev wtv...` lines of unicast (non-zero) per-MAC entries. */
  const macEntries = async (h: Host): Promise<string[]> =>
    (await lab.execOk(h, ['bridge', 'fdb', 'show', 'dev', dev])).stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => / dst /.test(l) && !l.startsWith('00:00:00:00:00:00'));
  const hasEntry = async (h: Host, mac: string, vtep: string): Promise<boolean> =>
    (await macEntries(h)).some((l) => l.startsWith(`${mac} dst ${vtep} `));

  /** Count VXLAN packets to `h` on its underlay carrying an inner IPv4 ICMP packet. */
  const captureIcmpOverVxlan = async (h: Host): Promise<{ stop(): Promise<number> }> => {
    const filter = `udp dst port 6784 and dst host ${h.ip} and udp[28:2] = 0x0800 and udp[39] = 1`;
    const child = lab.spawnIn(h, ['tcpdump', '-i', 'eth0', '-n', '-l', '-p', '--immediate-mode', filter]);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await lab.waitFor(() => err.includes('listening on'), {
      what: `tcpdump on ${h.name}`,
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    return {
      async stop(): Promise<number> {
        await sleep(300);
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
        return out.split('\n').filter((l) => l.trim() !== '').length;
      },
    };
  };

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    h1 = await lab.addHost('h1');
    h2 = await lab.addHost('h2');
    h3 = await lab.addHost('h3');
    c1 = await lab.addContainer(h1, 'c1');
    c2 = await lab.addContainer(h2, 'c2');
    await lab.launch(h1, [], ['--datapath', 'fastdp']);
    await lab.launch(h2, [h1.ip], ['--datapath', 'fastdp']);
    await lab.launch(h3, [h1.ip, h2.ip], ['--datapath', 'fastdp']);
    ip1 = await lab.attach(h1, c1);
    ip2 = await lab.attach(h2, c2);
    mac1 = await macOf(c1);
    mac2 = await macOf(c2);
    const links = (await lab.execOk(h1, ['ip', '-o', 'link', 'show', 'type', 'vxlan'])).stdout;
    const m = / (wtv[0-9a-f]{6})[:@]/.exec(links);
    if (!m) throw new Error(`no wtv device on h1: ${links}`);
    dev = m[1]!;
  });

  it('known unicast goes to its owner only', async () => {
    const pairs: [Host, string][] = [
      [h1, 'h2'],
      [h1, 'h3'],
      [h2, 'h1'],
      [h2, 'h3'],
      [h3, 'h1'],
      [h3, 'h2'],
    ];
    await lab.waitFor(
      async () => (await Promise.all(pairs.map(([h, n]) => pathTo(h, n)))).every((p) => p === 'fastdp'),
      {
        what: 'all three pairs on fastdp',
        timeoutMs: 30_000,
      },
    );
    // c1 resolves c2 by a broadcast ARP request (the sleeve's kernel copy teaches every
    // host c1's MAC), and c2 resolves c1 the same way after forgetting it.
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2',
      timeoutMs: 15_000,
    });
    await lab.execOk(c2, ['ip', 'neigh', 'flush', 'all']);
    expect((await lab.ping(c2, ip(ip1), { count: 1, timeoutS: 1 })).ok).toBe(true);
    await lab.waitFor(async () => (await hasEntry(h1, mac2, h2.ip)) && (await hasEntry(h2, mac1, h1.ip)), {
      what: `h1: ${mac2} dst ${h2.ip}, h2: ${mac1} dst ${h1.ip}`,
      timeoutMs: 5000,
      intervalMs: 100,
    });
    // One entry per MAC, on the owner: never one per peer.
    expect((await macEntries(h1)).filter((l) => l.startsWith(mac2))).toHaveLength(1);
    expect(await hasEntry(h3, mac2, h2.ip)).toBe(true);

    const on2 = await captureIcmpOverVxlan(h2);
    const on3 = await captureIcmpOverVxlan(h3);
    const p = await lab.ping(c1, ip(ip2), { count: 10, intervalS: 0.05 });
    const [n2, n3] = [await on2.stop(), await on3.stop()];
    expect(p.received).toBe(10);
    expect(p.output).not.toMatch(/DUP!/);
    expect(n2).toBeGreaterThanOrEqual(10); // the capture sees VXLAN'd ICMP at all
    expect(n3).toBe(0); // with only all-zeros entries h3 would get a copy of each

    const metrics = (await lab.http(h1, '/metrics')).body;
    const count = /^weavets_fastdp_mac_fdb_entries (\d+)/m.exec(metrics);
    expect(Number(count?.[1])).toBeGreaterThanOrEqual(1);
  }, 90_000);

  it("an owner's entries go when its path falls back to the sleeve, and return with it", async () => {
    await lab.blockUdpPort(h1, h2, 6784);
    await lab.waitFor(async () => (await pathTo(h1, 'h2')) === 'sleeve', {
      what: 'h1-h2 on sleeve',
      timeoutMs: 10_000,
      intervalMs: 250,
    });
    await lab.waitFor(async () => !(await macEntries(h1)).some((l) => l.startsWith(mac2)), {
      what: `no entry for ${mac2} on h1`,
      timeoutMs: 3000,
      intervalMs: 100,
    });
    expect(await pathTo(h1, 'h3')).toBe('fastdp');
    const p = await lab.ping(c1, ip(ip2), { count: 5, intervalS: 0.1, timeoutS: 1 });
    expect(p.received).toBe(5);
    expect(p.output).not.toMatch(/DUP!/);

    await lab.unblockUdpPort(h1, h2, 6784);
    await lab.waitFor(async () => (await pathTo(h1, 'h2')) === 'fastdp' && (await pathTo(h2, 'h1')) === 'fastdp', {
      what: 'h1-h2 back on fastdp',
      timeoutMs: 10_000,
      intervalMs: 250,
    });
    // The MAC is still in h1's table: its entry comes back with the path, no ARP needed.
    await lab.waitFor(() => hasEntry(h1, mac2, h2.ip), {
      what: `h1: ${mac2} dst ${h2.ip} again`,
      timeoutMs: 3000,
      intervalMs: 100,
    });
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2 on fastdp',
      timeoutMs: 10_000,
    });
    const r = await lab.ping(c1, ip(ip2), { count: 5, intervalS: 0.1 });
    expect(r.received).toBe(5);
    expect(r.output).not.toMatch(/DUP!/);
    // Every probe reached the peer it was for (a shared send buffer once mixed up the
    // probes of two peers sent in the same tick, and a path could not come back).
    for (const h of [h1, h2, h3]) expect((await lab.http(h, '/metrics')).body).not.toMatch(/probe_not_for_us/);
  }, 60_000);

  it('reset leaves no VXLAN link and no FDB entry behind (a stop keeps them: test/net/restart.test.ts)', async () => {
    for (const h of [h1, h2, h3]) await lab.weavetsOk(h, ['reset'], { timeoutMs: 30_000 });
    for (const h of [h1, h2, h3]) {
      expect((await lab.execOk(h, ['ip', '-o', 'link', 'show', 'type', 'vxlan'])).stdout.trim()).toBe('');
      expect((await lab.execOk(h, ['bridge', 'fdb', 'show'])).stdout).not.toMatch(/ dst /);
    }
  }, 60_000);
});
