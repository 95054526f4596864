/**
 * What an operator does over a mesh's life: peers dying and coming back, restarts that
 * keep names and addresses, connect/forget, discovery through neighbours, name
 * collisions, expose/hide, and reset leaving nothing behind.
 */
import { describe, it, expect } from 'vitest';
import type { EndpointStatus } from '../../src/endpoint/types';
import type { ConnectionStatus, PeerStatus, RouterStatus, TargetStatus } from '../../src/router/status';
import { type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const ip = (cidr: string): string => cidr.split('/')[0]!;

describe('mesh lifecycle', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let h3: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip2 = '';

  const connections = (h: Host): Promise<ConnectionStatus[]> =>
    lab.weavetsJson<ConnectionStatus[]>(h, ['status', 'connections']);
  const established = async (h: Host, nickname: string): Promise<boolean> =>
    (await connections(h)).some((c) => c.nickname === nickname && c.state === 'established');

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    h1 = await lab.addHost('h1');
    h2 = await lab.addHost('h2');
    h3 = await lab.addHost('h3');
    c1 = await lab.addContainer(h1, 'c1');
    c2 = await lab.addContainer(h2, 'c2');
    await lab.launch(h1);
    await lab.launch(h2, [h1.ip]);
    await lab.attach(h1, c1);
    ip2 = await lab.attach(h2, c2);
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2',
      timeoutMs: 30_000,
    });
  });

  it('declares a killed peer dead within seconds, and takes it back when it returns', async () => {
    const pid = lab.daemonPid(h2)!;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    await lab.waitFor(async () => !(await established(h1, 'h2')), {
      what: 'h1 to notice h2 is gone',
      timeoutMs: 10_000,
    });
    expect(Date.now() - killedAt).toBeLessThan(8_000);

    await lab.launch(h2, [h1.ip]);
    await lab.waitFor(() => established(h1, 'h2'), { what: 'h2 to be established again', timeoutMs: 20_000 });
    // The restarted daemon adopted its bridge and kept the container's address.
    const eps = await lab.weavetsJson<EndpointStatus[]>(h2, ['ps']);
    expect(eps.map((e) => e.address)).toEqual([ip2]);
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2 after the restart',
      timeoutMs: 20_000,
    });
  });

  it('keeps the peer name across restarts', async () => {
    const before = await lab.weavetsJson<RouterStatus>(h1, ['status']);
    await lab.stopDaemon(h1);
    await lab.launch(h1);
    const after = await lab.weavetsJson<RouterStatus>(h1, ['status']);
    expect(after.name).toBe(before.name);
    expect(after.name).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    // h2 dialled h1 and keeps retrying with backoff, so the link comes back by itself.
    await lab.waitFor(() => established(h2, 'h1'), { what: 'h2 to reconnect to the restarted h1', timeoutMs: 30_000 });
  });

  it('discovers peers through neighbours: h3 joins via h1 and connects to h2 directly', async () => {
    await lab.launch(h3, [h1.ip]);
    await lab.waitFor(() => established(h3, 'h2'), {
      what: 'h3 to connect directly to h2, learned from h1',
      timeoutMs: 30_000,
    });
    const peers = await lab.weavetsJson<PeerStatus[]>(h3, ['status', 'peers']);
    expect(peers.map((p) => p.nickname).sort()).toEqual(['h1', 'h2', 'h3']);
    expect(peers.every((p) => p.reachable)).toBe(true);
    const targets = await lab.weavetsJson<TargetStatus[]>(h3, ['status', 'targets']);
    expect(targets.find((t) => t.address === `${h1.ip}:6783`)?.source).toBe('launch');
    // Nobody named h2 to h3 nor h3 to h2: the direct connection comes from discovery,
    // dialled by whichever side found the other first (the other then drops its own
    // discovered target, as a ready connection already reaches that address).
    const operatorTarget = (ts: TargetStatus[], ip: string): boolean =>
      ts.some((t) => t.address === `${ip}:6783` && t.source !== 'discovered');
    const h2Targets = await lab.weavetsJson<TargetStatus[]>(h2, ['status', 'targets']);
    expect(operatorTarget(targets, h2.ip)).toBe(false);
    expect(operatorTarget(h2Targets, h3.ip)).toBe(false);
    expect([...targets, ...h2Targets].some((t) => t.source === 'discovered')).toBe(true);
  });

  it('forget drops a target and its connection; connect brings it back', async () => {
    // h3 dialled h1. After forget the operator's target is gone (discovery through h2
    // may still find h1 again, which is the point of discovery).
    await lab.weavetsOk(h3, ['forget', h1.ip]);
    const targets = await lab.weavetsJson<TargetStatus[]>(h3, ['status', 'targets']);
    expect(targets.find((t) => t.address === `${h1.ip}:6783` && t.source === 'launch')).toBeUndefined();
    await lab.weavetsOk(h3, ['connect', h1.ip]);
    const again = await lab.weavetsJson<TargetStatus[]>(h3, ['status', 'targets']);
    expect(again.find((t) => t.address === `${h1.ip}:6783`)).toBeDefined();
    await lab.waitFor(() => established(h3, 'h1'), { what: 'h3 to be connected to h1 again', timeoutMs: 20_000 });
  });

  it("refuses a peer that uses another peer's name, with a clear reason on both sides", async () => {
    const h1Name = (await lab.weavetsJson<RouterStatus>(h1, ['status'])).name;
    const intruder = await lab.addHost('h4');
    await lab.launch(intruder, [h1.ip], ['--name', h1Name]);
    await lab.waitFor(
      async () => (await connections(intruder)).some((c) => c.state === 'failed' && /collision/.test(c.info ?? '')),
      { what: 'the intruder to report the name collision', timeoutMs: 15_000 },
    );
    expect(await established(h1, 'h4')).toBe(false);
    expect(lab.logTail(h1, 200)).toMatch(/peer name collision/);
    await lab.stopDaemon(intruder);
  });

  it('expose gives the host an address on the overlay; hide takes it away', async () => {
    const exposed = (await lab.weavetsOk(h1, ['expose'])).trim();
    expect(exposed).toMatch(/^\d+\.\d+\.\d+\.\d+\/12$/);
    await lab.waitFor(async () => (await lab.ping(h1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'host h1 to reach c2 over the overlay',
      timeoutMs: 15_000,
    });
    // The range is routed from weavets's own table, through one rule; main stays untouched.
    const table = async (): Promise<string> =>
      (await lab.execOk(h1, ['ip', '-4', 'route', 'show', 'table', '6783'])).stdout;
    expect(await table()).toContain(`10.32.0.0/12 dev weavets proto static scope link src ${ip(exposed)}`);
    expect((await lab.execOk(h1, ['ip', '-4', 'route', 'show', 'table', 'main'])).stdout).not.toContain('10.32.0.0/12');
    await lab.weavetsOk(h1, ['hide']);
    const addrs = (await lab.execOk(h1, ['ip', '-j', 'addr', 'show', 'dev', 'weavets'])).stdout;
    expect(addrs).not.toContain(ip(exposed));
    expect(await table()).not.toContain(`src ${ip(exposed)}`);
  });

  it('detects a silent peer by heartbeats and routes around it through a third host', async () => {
    // A cut link sends no RST: only heartbeats can tell.
    await lab.block(h1, h2);
    const cutAt = Date.now();
    await lab.waitFor(async () => !(await established(h1, 'h2')), {
      what: 'h1 to declare the link to h2 dead',
      timeoutMs: 15_000,
    });
    expect(Date.now() - cutAt).toBeLessThan(10_000);
    // h3 still talks to both: c1 reaches c2 relayed through h3.
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2 through h3 while h1-h2 is cut',
      timeoutMs: 20_000,
    });
    const peers = await lab.weavetsJson<PeerStatus[]>(h1, ['status', 'peers']);
    const h3Name = peers.find((p) => p.nickname === 'h3')!.name;
    expect(peers.find((p) => p.nickname === 'h2')?.via).toBe(h3Name);
    await lab.unblock(h1, h2);
    await lab.waitFor(() => established(h1, 'h2'), { what: 'the h1-h2 link to come back', timeoutMs: 40_000 });
  });

  it('reset removes every bridge, veth and tap and the state dir', async () => {
    expect((await lab.execOk(h2, ['ip', 'rule'])).stdout).toMatch(/lookup 6783/);
    await lab.weavetsOk(h2, ['reset']);
    expect((await lab.execOk(h2, ['ip', 'rule'])).stdout).not.toMatch(/lookup 6783/);
    // Link names only: a line of `ip link` also names the lab's namespaces ("link-netns
    // wtb3ad-u"), whose random part can spell one of our prefixes.
    const links = JSON.parse((await lab.execOk(h2, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    expect(links.map((l) => l.ifname).filter((n) => /^(weavets|wtt|vwt|wtb|wtv)/.test(n))).toEqual([]);
    const inC2 = (await lab.execOk(c2, ['ip', '-o', 'link', 'show'])).stdout;
    expect(inC2).not.toMatch(/eth0/);
    const r = await lab.weavets(h2, ['status']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not running/);
  });
});
