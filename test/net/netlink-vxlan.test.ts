/**
 * The VXLAN, FDB, neighbour and bridge-port parts of src/netlink against the real kernel,
 * inside a namespace of our own (never the root namespace), with `ip`/`bridge -j` as the
 * independent witness. Needs root.
 */
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Netlink } from '../../src/netlink';

const NS = `wtvx-${randomBytes(3).toString('hex')}`;

function run(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}
function json(cmd: string, ...args: string[]): any[] {
  const out = run(cmd, ...args).trim();
  return out ? JSON.parse(out) : [];
}

let nl: Netlink;

beforeAll(() => {
  run('ip', 'netns', 'add', NS);
  run('ip', '-n', NS, 'link', 'set', 'lo', 'up');
  nl = Netlink.openInNetns(`/run/netns/${NS}`);
});

afterAll(() => {
  nl?.close();
  try {
    run('ip', 'netns', 'del', NS);
  } catch {
    // already gone
  }
});

describe('netlink VXLAN and FDB', () => {
  it('creates a VXLAN link with VNI, port, learning off, MTU and MAC; reconciles instead of EEXIST', async () => {
    const link = await nl.createVxlan('vxt0', {
      vni: 0xabcdef,
      port: 6784,
      learning: false,
      mtu: 1376,
      mac: '02:00:00:00:00:aa',
    });
    expect(link.kind).toBe('vxlan');
    const [l] = json('ip', '-n', NS, '-d', '-j', 'link', 'show', 'dev', 'vxt0');
    expect(l.mtu).toBe(1376);
    expect(l.address).toBe('02:00:00:00:00:aa');
    expect(l.linkinfo.info_kind).toBe('vxlan');
    expect(l.linkinfo.info_data.id).toBe(0xabcdef);
    expect(l.linkinfo.info_data.port).toBe(6784);
    expect(l.linkinfo.info_data.learning).toBe(false);
    // Again: no EEXIST.
    expect((await nl.createVxlan('vxt0', { vni: 0xabcdef, port: 6784 })).index).toBe(link.index);
  });

  it('appends, lists and deletes FDB entries (all-zeros to several VTEPs, one unicast)', async () => {
    await nl.addFdb('vxt0', '00:00:00:00:00:00', '192.0.2.1');
    await nl.addFdb('vxt0', '00:00:00:00:00:00', '192.0.2.2');
    await nl.addFdb('vxt0', '00:00:00:00:00:00', '192.0.2.2'); // idempotent
    await nl.addFdb('vxt0', '02:11:22:33:44:55', '192.0.2.3');
    const fdb = (): { mac: string; dst?: string }[] => json('bridge', '-n', NS, '-j', 'fdb', 'show', 'dev', 'vxt0');
    const zeros = fdb()
      .filter((e) => e.mac === '00:00:00:00:00:00')
      .map((e) => e.dst)
      .sort();
    expect(zeros).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(fdb().find((e) => e.mac === '02:11:22:33:44:55')?.dst).toBe('192.0.2.3');
    await nl.delFdb('vxt0', '00:00:00:00:00:00', '192.0.2.1');
    await nl.delFdb('vxt0', '00:00:00:00:00:00', '192.0.2.1'); // missing is fine
    expect(
      fdb()
        .filter((e) => e.mac === '00:00:00:00:00:00')
        .map((e) => e.dst),
    ).toEqual(['192.0.2.2']);
  });

  it('sets permanent neighbours and link-local addresses without DAD', async () => {
    await nl.setUp('vxt0');
    await nl.addAddressNoDad('vxt0', 'fe80::1234:5678:9abc/64');
    await nl.addAddressNoDad('vxt0', 'fe80::1234:5678:9abc/64'); // existing is fine
    const addrs = json('ip', '-n', NS, '-6', '-j', 'addr', 'show', 'dev', 'vxt0')[0].addr_info as {
      local: string;
      tentative?: boolean;
    }[];
    const a = addrs.find((x) => x.local === 'fe80::1234:5678:9abc');
    expect(a).toBeDefined();
    expect(a!.tentative).toBeUndefined();
    await nl.setNeighbour('vxt0', 'fe80::1', '02:00:00:00:00:01');
    await nl.setNeighbour('vxt0', 'fe80::1', '02:00:00:00:00:02'); // replace
    const n = json('ip', '-n', NS, '-6', '-j', 'neigh', 'show', 'dev', 'vxt0').find((x) => x.dst === 'fe80::1');
    expect(n.lladdr).toBe('02:00:00:00:00:02');
    expect(n.state).toContain('PERMANENT');
    await nl.delNeighbour('vxt0', 'fe80::1');
    await nl.delNeighbour('vxt0', 'fe80::1');
    expect(
      json('ip', '-n', NS, '-6', '-j', 'neigh', 'show', 'dev', 'vxt0').find((x) => x.dst === 'fe80::1'),
    ).toBeUndefined();
  });

  it('isolates a bridge port and flushes it', async () => {
    await nl.createBridge('brt0');
    await nl.setMaster('vxt0', 'brt0');
    await nl.setBridgePort('vxt0', { isolated: true });
    const [p] = json('bridge', '-n', NS, '-d', '-j', 'link', 'show', 'dev', 'vxt0');
    expect(p.isolated).toBe(true);
    // Flushing is accepted (what it removes, learned entries, is exercised in fastdp.test.ts
    // where real traffic teaches the bridge).
    await nl.setBridgePort('vxt0', { flush: true });
    await nl.setBridgePort('vxt0', { isolated: false });
    expect(json('bridge', '-n', NS, '-d', '-j', 'link', 'show', 'dev', 'vxt0')[0].isolated).toBe(false);
  });

  it('deleting the link takes its FDB entries with it', async () => {
    await nl.deleteLink('vxt0');
    expect(json('ip', '-n', NS, '-j', 'link', 'show', 'type', 'vxlan')).toEqual([]);
  });
});
