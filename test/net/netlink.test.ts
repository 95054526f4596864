/**
 * src/netlink against the real kernel, inside two namespaces of our own:
 * HOST plays the daemon's namespace, CTR a container's. Every link, address and route
 * is made through Netlink.openInNetns, never in the root namespace; `ip -n NS -j ...`
 * is the independent witness. Needs root.
 */
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Netlink, NetlinkError } from '../../src/netlink';

const PREFIX = `wtnl-${randomBytes(3).toString('hex')}`;
const HOST = `${PREFIX}-h`;
const CTR = `${PREFIX}-c`;
const nsPath = (ns: string): string => `/run/netns/${ns}`;

function ip(ns: string, ...args: string[]): string {
  return execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' });
}
function ipj(ns: string, ...args: string[]): any[] {
  const out = ip(ns, '-j', ...args).trim();
  return out ? JSON.parse(out) : [];
}
const threadNetns = (): string => fs.readlinkSync('/proc/thread-self/ns/net');

async function rejection(p: Promise<unknown>): Promise<NetlinkError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(NetlinkError);
    return e as NetlinkError;
  }
  throw new Error('expected a rejection');
}

let host: Netlink;
let ctr: Netlink;

function cleanup(): void {
  for (const ns of [HOST, CTR]) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* not there */
    }
  }
}

beforeAll(() => {
  // Even if vitest is killed mid-run, do not leave our namespaces behind.
  process.once('exit', cleanup);
  execFileSync('ip', ['netns', 'add', HOST]);
  execFileSync('ip', ['netns', 'add', CTR]);
  host = Netlink.openInNetns(nsPath(HOST));
  ctr = Netlink.openInNetns(nsPath(CTR));
});

afterAll(() => {
  host?.close();
  ctr?.close();
  cleanup();
});

describe('openInNetns', () => {
  it('creates the socket in the target namespace and leaves the thread where it was', async () => {
    const before = threadNetns();
    const nl = Netlink.openInNetns(nsPath(HOST));
    expect(threadNetns()).toBe(before);
    const target = `net:[${fs.statSync(nsPath(HOST)).ino}]`;
    expect(before).not.toBe(target);
    // A fresh namespace has only lo: proof the socket is not in ours.
    expect((await nl.listLinks()).map((l) => l.name)).toEqual(['lo']);
    nl.close();
    expect(threadNetns()).toBe(before);
  });

  it('fails clearly on a path that is not a network namespace, and stays home', () => {
    const before = threadNetns();
    const file = path.join(os.tmpdir(), `${PREFIX}-not-a-netns`);
    fs.writeFileSync(file, '');
    try {
      expect(() => Netlink.openInNetns(file)).toThrow(`${file} is not a network namespace`);
      expect(() => Netlink.openInNetns('/proc/self/ns/mnt')).toThrow('/proc/self/ns/mnt is not a network namespace');
      expect(() => Netlink.openInNetns(`/run/netns/${PREFIX}-missing`)).toThrow(/is not a network namespace: ENOENT/);
    } finally {
      fs.unlinkSync(file);
    }
    expect(threadNetns()).toBe(before);
  });

  it('open() reads the daemon namespace (read-only check)', async () => {
    const nl = Netlink.open();
    const lo = await nl.getLink('lo');
    expect(lo?.index).toBe(1);
    nl.close();
  });
});

describe('links', () => {
  it('creates a bridge, and re-creating it returns the same link', async () => {
    const br = await host.createBridge('wtbr0', { mtu: 1400, mac: '02:00:00:00:00:01' });
    expect(br).toMatchObject({ name: 'wtbr0', kind: 'bridge', mtu: 1400, mac: '02:00:00:00:00:01', up: false });
    const [j] = ipj(HOST, '-d', 'link', 'show', 'wtbr0');
    expect(j.linkinfo.info_kind).toBe('bridge');
    expect(j.mtu).toBe(1400);
    expect(j.address).toBe('02:00:00:00:00:01');
    const again = await host.createBridge('wtbr0');
    expect(again.index).toBe(br.index);
    // reconciles mtu on an existing bridge
    expect((await host.createBridge('wtbr0', { mtu: 1450 })).mtu).toBe(1450);
    expect(ipj(HOST, 'link', 'show', 'wtbr0')[0].mtu).toBe(1450);
    await host.setMtu('wtbr0', 1400);
  });

  it('creates a veth whose peer is born in the container namespace', async () => {
    await host.createVeth('vethwe1', 'eth0', { mtu: 1376, peerNetnsPath: nsPath(CTR), peerMac: '02:00:00:00:00:05' });
    const [h] = ipj(HOST, '-d', 'link', 'show', 'vethwe1');
    expect(h.linkinfo.info_kind).toBe('veth');
    expect(h.mtu).toBe(1376);
    const [c] = ipj(CTR, '-d', 'link', 'show', 'eth0');
    expect(c.linkinfo.info_kind).toBe('veth');
    expect(c.mtu).toBe(1376);
    expect(c.address).toBe('02:00:00:00:00:05');
    expect(ipj(HOST, 'link', 'show').map((l) => l.ifname)).not.toContain('eth0');
    expect(await ctr.getLink('eth0')).toMatchObject({ kind: 'veth', mtu: 1376, mac: '02:00:00:00:00:05' });

    const err = await rejection(host.createVeth('vethwe1', 'x'));
    expect(err.code).toBe('EEXIST');
    expect(err.message).toBe('create veth vethwe1: EEXIST');
  });

  it('refuses to turn a link of another kind into a bridge', async () => {
    const err = await rejection(host.createBridge('vethwe1'));
    expect(err.code).toBe('EEXIST');
    expect(err.message).toMatch(/create bridge vethwe1: EEXIST.*veth/);
  });

  it("sets a bridge's nf_call_iptables both ways, and refuses a link that is no bridge", async () => {
    const nfCall = (): number => ipj(HOST, '-d', 'link', 'show', 'wtbr0')[0].linkinfo.info_data.nf_call_iptables;
    expect(nfCall()).toBe(0);
    await host.setBridge('wtbr0', { nfCallIptables: true });
    expect(nfCall()).toBe(1);
    await host.setBridge('wtbr0', { nfCallIptables: false });
    expect(nfCall()).toBe(0);
    // Other options are left as they were (only the one attribute is sent).
    expect(ipj(HOST, 'link', 'show', 'wtbr0')[0].mtu).toBe(1400);
    const notBridge = await rejection(host.setBridge('vethwe1', { nfCallIptables: true }));
    expect(notBridge.code).toBe('ENOTSUP'); // errno 95, EOPNOTSUPP's other name
    expect(ipj(HOST, '-d', 'link', 'show', 'vethwe1')[0].linkinfo.info_kind).toBe('veth');
    const missing = await rejection(host.setBridge('nosuchbr', { nfCallIptables: true }));
    expect(missing.code).toBe('ENODEV');
  });

  it('sets master, up, mtu, mac, and renames', async () => {
    await host.setMaster('vethwe1', 'wtbr0');
    await host.setUp('vethwe1');
    await host.setUp('wtbr0');
    await host.setMtu('vethwe1', 1300);
    await host.setMac('vethwe1', '02:00:00:00:00:aa');
    let [j] = ipj(HOST, 'link', 'show', 'vethwe1');
    expect(j.master).toBe('wtbr0');
    expect(j.flags).toContain('UP');
    expect(j.mtu).toBe(1300);
    expect(j.address).toBe('02:00:00:00:00:aa');
    const br = await host.getLink('wtbr0');
    expect(await host.getLink('vethwe1')).toMatchObject({
      master: br!.index,
      up: true,
      mtu: 1300,
      mac: '02:00:00:00:00:aa',
    });

    // Down first: kernels before 6.2 refuse renaming a link that is up (EBUSY).
    await host.setUp('vethwe1', false);
    expect(ipj(HOST, 'link', 'show', 'vethwe1')[0].flags).not.toContain('UP');
    await host.rename('vethwe1', 'vethwe2');
    expect(ipj(HOST, 'link', 'show').map((l) => l.ifname)).toEqual(expect.arrayContaining(['vethwe2']));
    expect(await host.getLink('vethwe1')).toBeUndefined();
    expect((await rejection(host.rename('vethwe2', 'wtbr0'))).code).toBe('EEXIST');
    await host.rename('vethwe2', 'vethwe1');
    await host.setMtu('vethwe1', 1376);
    await host.setUp('vethwe1');

    await host.setMaster('vethwe1', null);
    [j] = ipj(HOST, 'link', 'show', 'vethwe1');
    expect(j.master).toBeUndefined();
    await host.setMaster('vethwe1', 'wtbr0');
    expect(ipj(HOST, 'link', 'show', 'vethwe1')[0].master).toBe('wtbr0');

    const missing = await rejection(host.setUp('nope0'));
    expect(missing.code).toBe('ENODEV');
    expect(missing.message).toMatch(/^set up nope0: ENODEV/);
  });

  it('lists links with kinds', async () => {
    const links = await host.listLinks();
    expect(links.map((l) => [l.name, l.kind])).toEqual(
      expect.arrayContaining([
        ['lo', undefined],
        ['wtbr0', 'bridge'],
        ['vethwe1', 'veth'],
      ]),
    );
  });

  it('answers dumps and other requests sent at the same time on one socket', async () => {
    // Enough links that a dump's reply spans several reads, so the other requests' acks
    // arrive while it is being read (a daemon's start does both at once).
    const names = Array.from({ length: 120 }, (_, i) => `wtmany${i}`);
    for (const n of names) ip(HOST, 'link', 'add', n, 'type', 'bridge');
    try {
      const work: Promise<unknown>[] = [];
      for (let round = 0; round < 5; round++) {
        work.push(host.listLinks(), host.listAddresses());
        for (const n of names.slice(round * 24, round * 24 + 24)) work.push(host.setMtu(n, 1400 + round));
      }
      const results = await Promise.allSettled(work);
      const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
      expect(failed).toEqual([]);
      const listed = (results[0] as PromiseFulfilledResult<{ name: string }[]>).value.map((l) => l.name);
      expect(listed).toEqual(expect.arrayContaining(names));
      const mtus = new Map(ipj(HOST, 'link', 'show').map((l: { ifname: string; mtu: number }) => [l.ifname, l.mtu]));
      names.forEach((n, i) => expect(mtus.get(n)).toBe(1400 + Math.floor(i / 24)));
    } finally {
      for (const n of names) ip(HOST, 'link', 'del', n);
    }
  });
});

describe('addresses', () => {
  it('adds and deletes addresses, idempotently when asked', async () => {
    await host.addAddress('wtbr0', '10.32.0.1/12');
    await host.addAddress('wtbr0', '10.32.0.1/12', { ignoreExisting: true });
    expect((await rejection(host.addAddress('wtbr0', '10.32.0.1/12'))).code).toBe('EEXIST');
    await host.addAddress('wtbr0', 'fd00:32::1/64');
    const [j] = ipj(HOST, 'addr', 'show', 'wtbr0');
    const seen = j.addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`);
    expect(seen).toEqual(expect.arrayContaining(['10.32.0.1/12', 'fd00:32::1/64']));

    const br = await host.getLink('wtbr0');
    const listed = await host.listAddresses('wtbr0');
    expect(listed).toEqual(
      expect.arrayContaining([
        { index: br!.index, cidr: '10.32.0.1/12' },
        { index: br!.index, cidr: 'fd00:32::1/64' },
      ]),
    );
    expect((await host.listAddresses()).map((a) => a.cidr)).toEqual(expect.arrayContaining(['10.32.0.1/12']));

    await host.delAddress('wtbr0', 'fd00:32::1/64');
    await host.addAddress('wtbr0', '10.40.0.1/24');
    await host.delAddress('wtbr0', '10.40.0.1/24');
    await host.delAddress('wtbr0', '10.40.0.1/24', { ignoreMissing: true });
    await host.delAddress('nope0', '10.40.0.1/24', { ignoreMissing: true });
    expect((await rejection(host.delAddress('wtbr0', '10.40.0.1/24'))).code).toBe('EADDRNOTAVAIL');
    const after = ipj(HOST, 'addr', 'show', 'wtbr0')[0].addr_info.map((a: { local: string }) => a.local);
    expect(after).toContain('10.32.0.1');
    expect(after).not.toContain('10.40.0.1');
    expect(after).not.toContain('fd00:32::1');
  });
});

describe('routes', () => {
  it('adds, replaces and deletes routes, including a default via', async () => {
    await ctr.addAddress('eth0', '10.32.0.5/12');
    await ctr.setUp('eth0');
    await ctr.addRoute({ dst: 'default', via: '10.32.0.1', dev: 'eth0' });
    await ctr.addRoute({ dst: '192.0.2.0/24', via: '10.32.0.1', dev: 'eth0', mtu: 1200 });
    await ctr.addRoute({ dst: '198.18.0.0/15', dev: 'eth0', src: '10.32.0.5' });
    const routes = ipj(CTR, 'route', 'show');
    expect(routes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: 'default', gateway: '10.32.0.1', dev: 'eth0' }),
        expect.objectContaining({ dst: '192.0.2.0/24', gateway: '10.32.0.1', dev: 'eth0', metrics: [{ mtu: 1200 }] }),
        expect.objectContaining({ dst: '198.18.0.0/15', dev: 'eth0', scope: 'link', prefsrc: '10.32.0.5' }),
      ]),
    );

    expect((await rejection(ctr.addRoute({ dst: 'default', via: '10.32.0.1', dev: 'eth0' }))).code).toBe('EEXIST');
    await ctr.addRoute({ dst: 'default', via: '10.32.0.2', dev: 'eth0' }, { replace: true });
    const defaults = ipj(CTR, 'route', 'show', 'default');
    expect(defaults).toHaveLength(1);
    expect(defaults[0].gateway).toBe('10.32.0.2');

    await ctr.delRoute({ dst: '198.18.0.0/15', dev: 'eth0' });
    await ctr.delRoute({ dst: '198.18.0.0/15', dev: 'eth0' }, { ignoreMissing: true });
    expect((await rejection(ctr.delRoute({ dst: '198.18.0.0/15', dev: 'eth0' }))).code).toBe('ESRCH');
    expect(ipj(CTR, 'route', 'show').map((r) => r.dst)).not.toContain('198.18.0.0/15');
  });

  it('tells the MTU and source address towards a destination', async () => {
    expect(await ctr.mtuTowards('10.32.0.1')).toBe(1376); // link MTU of eth0
    expect(await ctr.mtuTowards('192.0.2.9')).toBe(1200); // the route's own RTAX_MTU
    expect(await ctr.mtuTowards('203.0.113.1')).toBe(1376); // via the default route
    expect(await ctr.sourceTowards('10.32.0.1')).toBe('10.32.0.5');
    expect(await host.mtuTowards('10.32.0.5')).toBe(1400); // wtbr0
    expect(await host.sourceTowards('10.32.0.5')).toBe('10.32.0.1');

    await ctr.delRoute({ dst: 'default', dev: 'eth0' });
    expect(ipj(CTR, 'route', 'show', 'default')).toHaveLength(0);
    expect(await ctr.sourceTowards('203.0.113.1')).toBeUndefined();
    const err = await rejection(ctr.mtuTowards('203.0.113.1'));
    expect(err.code).toBe('ENETUNREACH');
    expect(err.message).toBe('mtu towards 203.0.113.1: ENETUNREACH');
  });

  it('carries traffic over what it configured', () => {
    // The overlay link works end to end: ping the host side of the veth from the container.
    execFileSync('ip', ['netns', 'exec', CTR, 'ping', '-c', '1', '-W', '2', '10.32.0.1'], { stdio: 'ignore' });
  });
});

describe('deleteLink', () => {
  it('deletes links, tolerating a missing one when asked', async () => {
    await host.deleteLink('nope0', { ignoreMissing: true });
    const err = await rejection(host.deleteLink('nope0'));
    expect(err.code).toBe('ENODEV');
    expect(err.message).toBe('delete link nope0: ENODEV');
    await host.deleteLink('vethwe1');
    expect(ipj(HOST, 'link', 'show').map((l) => l.ifname)).not.toContain('vethwe1');
    // deleting one end of a veth deletes its peer in the other namespace
    expect(ipj(CTR, 'link', 'show').map((l) => l.ifname)).not.toContain('eth0');
    await host.deleteLink('wtbr0');
    expect(await host.getLink('wtbr0')).toBeUndefined();
  });
});
