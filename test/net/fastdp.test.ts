/**
 * The kernel fast path end to end: two hosts reach fastdp and ping; blocking UDP 6784
 * between them moves the connection to the sleeve while pings keep answering, and
 * unblocking moves it back; a line topology (h1-h3 cut) relays over the sleeve where
 * needed while h1-h2 stays on fastdp; stop leaves the network VXLAN links in place and
 * reset removes them. Nothing that turns on conntrack (a nat hook, a ct expression) sits
 * in the fast path of a host without Docker networks or policies: only filter tables.
 */
import { describe, it, expect } from 'vitest';
import type { ConnectionStatus } from '../../src/router/status';
import { sleep, type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const ip = (cidr: string): string => cidr.split('/')[0]!;

describe('fastdp', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let h3: Host;
  let c1: Namespace;
  let c2: Namespace;
  let c3: Namespace;
  let ip2 = '';
  let ip3 = '';

  const connections = (h: Host): Promise<ConnectionStatus[]> =>
    lab.weavetsJson<ConnectionStatus[]>(h, ['status', 'connections']);
  const pathTo = async (h: Host, nickname: string): Promise<string | undefined> => {
    const c = (await connections(h)).find((x) => x.nickname === nickname && x.state === 'established');
    return c?.datapath;
  };
  const vxlanLinks = async (h: Host): Promise<string[]> => {
    const r = await lab.execOk(h, ['ip', '-o', 'link', 'show', 'type', 'vxlan']);
    return r.stdout.split('\n').filter((l) => l.trim() !== '');
  };

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    h1 = await lab.addHost('h1');
    h2 = await lab.addHost('h2');
    c1 = await lab.addContainer(h1, 'c1');
    c2 = await lab.addContainer(h2, 'c2');
    await lab.launch(h1, [], ['--datapath', 'fastdp']);
    await lab.launch(h2, [h1.ip], ['--datapath', 'fastdp']);
    await lab.attach(h1, c1);
    ip2 = await lab.attach(h2, c2);
  });

  it('two hosts reach fastdp and ping through the kernel', async () => {
    await lab.waitFor(async () => (await pathTo(h1, 'h2')) === 'fastdp' && (await pathTo(h2, 'h1')) === 'fastdp', {
      what: 'h1-h2 on fastdp',
      timeoutMs: 20_000,
    });
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2',
      timeoutMs: 15_000,
    });
    // The frames really take VXLAN: the device's counters move, the sleeve's do not.
    const before = await lab.execOk(h1, ['ip', '-s', '-o', 'link', 'show', 'type', 'vxlan']);
    const ping = await lab.ping(c1, ip(ip2), { count: 10, intervalS: 0.05 });
    expect(ping.received).toBe(10);
    const after = await lab.execOk(h1, ['ip', '-s', '-o', 'link', 'show', 'type', 'vxlan']);
    expect(after.stdout).not.toBe(before.stdout);
    const [link] = (await vxlanLinks(h1)).filter((l) => / wtv[0-9a-f]{6}[:@]/.test(l));
    expect(link).toBeDefined();
    expect(link).toMatch(/mtu 1376 /);
    const details = await lab.execOk(h1, [
      'ip',
      '-d',
      'link',
      'show',
      'dev',
      link!.split(':')[1]!.trim().split('@')[0]!,
    ]);
    expect(details.stdout).toMatch(/dstport 6784/);
    expect(details.stdout).toMatch(/nolearning/);
    // Nothing turns on connection tracking for the fast path: a nat hook anywhere in the
    // host's namespace makes conntrack see every VXLAN packet (and, with br_netfilter,
    // every bridged container frame), ~10% of the container ping RTT. With no Docker
    // network and no policy here the tables are filter tables only: the flow counters
    // (docs/DIAGNOSTICS.md), the anti-spoofing table (docs/POLICY.md) and the network
    // isolation table (docs/ARCHITECTURE.md); none has a nat hook or a ct expression (the
    // DNS redirect's nat table comes with the first Docker network's bridge, the stateful
    // policy table with the first policy selecting a local container).
    for (const h of [h1, h2]) {
      const tables = (await lab.execOk(h, ['nft', 'list', 'tables'])).stdout.trim().split('\n').sort();
      expect(tables).toEqual([
        'table bridge weavets_flows',
        'table bridge weavets_policy',
        'table inet weavets_isolation',
      ]);
      const ruleset = (await lab.execOk(h, ['nft', 'list', 'ruleset'])).stdout;
      expect(ruleset).not.toMatch(/type nat|\bct\b|notrack/);
    }
  }, 60_000);

  it('falls back to the sleeve within seconds when UDP 6784 is blocked, and returns when it opens', async () => {
    // A ping running through the whole switch-over: it must keep being answered.
    const pinger = lab.ping(c1, ip(ip2), { count: 60, intervalS: 0.2, timeoutS: 1 });
    await sleep(1000);
    const blockedAt = Date.now();
    await lab.blockUdpPort(h1, h2, 6784);
    await lab.waitFor(async () => (await pathTo(h1, 'h2')) === 'sleeve' && (await pathTo(h2, 'h1')) === 'sleeve', {
      what: 'h1-h2 to fall back to sleeve',
      timeoutMs: 10_000,
      intervalMs: 250,
    });
    expect(Date.now() - blockedAt).toBeLessThan(6000);
    expect((await lab.ping(c1, ip(ip2), { count: 3, timeoutS: 1 })).received).toBe(3);
    await lab.unblockUdpPort(h1, h2, 6784);
    await lab.waitFor(async () => (await pathTo(h1, 'h2')) === 'fastdp' && (await pathTo(h2, 'h1')) === 'fastdp', {
      what: 'h1-h2 back on fastdp',
      timeoutMs: 10_000,
      intervalMs: 250,
    });
    // Frames the other end still sent by the sleeve while switching taught each bridge
    // the peer's MACs behind the TAP; those entries must go (else unicast to them goes to
    // the sleeve, which drops it for a fastdp peer), and nothing new is learned there.
    const learnedOnTap = async (h: Host): Promise<string[]> =>
      (await lab.execOk(h, ['bridge', 'fdb', 'show', 'br', 'weavets'])).stdout
        .split('\n')
        .filter((l) => / dev wtt[0-9a-f]{6} master /.test(l) && !l.includes('permanent'));
    await lab.waitFor(async () => (await learnedOnTap(h1)).length === 0 && (await learnedOnTap(h2)).length === 0, {
      what: 'no MAC learned behind the TAPs once both ends are on fastdp',
      timeoutMs: 5000,
      intervalMs: 250,
    });
    const r = await pinger;
    // Detection takes up to ~2.5 s (PATH_DEAD_MS plus a probe interval): pings sent in
    // that window are lost; everything else is answered. ping -c 60 keeps sending until
    // 60 replies came or its deadline passed.
    expect(r.received).toBeGreaterThanOrEqual(50);
    expect(r.sent - r.received).toBeLessThanOrEqual(20);
    expect((await lab.ping(c1, ip(ip2), { count: 3, timeoutS: 1 })).received).toBe(3);
  }, 60_000);

  it('relays over the sleeve in a line topology while direct peers stay on fastdp', async () => {
    h3 = await lab.addHost('h3');
    c3 = await lab.addContainer(h3, 'c3');
    await lab.block(h1, h3);
    await lab.launch(h3, [h2.ip], ['--datapath', 'fastdp']);
    ip3 = await lab.attach(h3, c3);
    await lab.waitFor(async () => (await pathTo(h3, 'h2')) === 'fastdp', {
      what: 'h2-h3 on fastdp',
      timeoutMs: 20_000,
    });
    // h1 and h3 cannot talk directly: c1 reaches c3 through h2's sleeve relay.
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip3), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c3 via h2',
      timeoutMs: 30_000,
    });
    const r = await lab.ping(c1, ip(ip3), { count: 5, intervalS: 0.1 });
    expect(r.received).toBe(5);
    expect(await pathTo(h1, 'h2')).toBe('fastdp');
    expect((await connections(h1)).some((c) => c.nickname === 'h3' && c.state === 'established')).toBe(false);
    // And the direct pairs still talk, each exactly once per ping (no duplicates).
    const p12 = await lab.ping(c1, ip(ip2), { count: 5, intervalS: 0.1 });
    if (p12.received !== 5) {
      for (const h of [h1, h2, h3])
        console.log(h.name, (await lab.exec(h, ['bridge', 'fdb', 'show'])).stdout, await connections(h));
    }
    expect(p12.received).toBe(5);
    expect(p12.output).not.toMatch(/DUP!/);
    const p23 = await lab.ping(c2, ip(ip3), { count: 5, intervalS: 0.1 });
    expect(p23.received).toBe(5);
    expect(p23.output).not.toMatch(/DUP!/);
    expect(r.output).not.toMatch(/DUP!/);
  }, 90_000);

  it('stop leaves the network VXLAN links (traffic goes on), reset removes them', async () => {
    expect((await vxlanLinks(h2)).length).toBeGreaterThan(0);
    for (const h of [h1, h2, h3]) await lab.stopDaemon(h);
    // The probe device goes; the network devices stay for the next start to adopt.
    for (const h of [h1, h2]) expect((await vxlanLinks(h)).join('\n')).toMatch(/wtv[0-9a-f]{6}/);
    for (const h of [h1, h2, h3]) expect((await vxlanLinks(h)).join('\n')).not.toMatch(/wtvprobe/);
    for (const h of [h1, h2, h3]) await lab.weavetsOk(h, ['reset'], { timeoutMs: 30_000 });
    for (const h of [h1, h2, h3]) expect(await vxlanLinks(h)).toEqual([]);
  }, 60_000);
});
