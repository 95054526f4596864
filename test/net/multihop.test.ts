/**
 * Relaying: A-B and B-C connected, A-C blocked on the underlay before anything starts.
 * A container on A reaches one on C through B, and A's routes say C is reachable; a TCP
 * stream crosses B intact, in clear and sealed. B's express path (native/src/express.c)
 * must leave the relayed fragment series to JS: a sealed one only after opening it
 * without spending its counter, so that JS can open it again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import type { PeerStatus } from '../../src/router/status';
import { type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

describe.each([
  { mode: 'clear', sealed: false },
  { mode: 'sealed', sealed: true },
])('multi-hop ($mode): A and C talk through B', ({ sealed }) => {
  let lab: Lab;
  let a: Host;
  let b: Host;
  let c: Host;
  let ca: Namespace;
  let cc: Namespace;
  let ipA = '';
  let ipC = '';

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    a = await lab.addHost('a');
    b = await lab.addHost('b');
    c = await lab.addHost('c');
    await lab.block(a, c);
    // The block is in place before any daemon starts.
    expect((await lab.ping(a, c.ip, { count: 1, timeoutS: 1 })).ok).toBe(false);
    ca = await lab.addContainer(a, 'ca');
    cc = await lab.addContainer(c, 'cc');
    const args = ['--datapath', 'sleeve'];
    if (sealed) {
      const pwFile = path.join(lab.dir, 'password');
      fs.writeFileSync(pwFile, 'multihop-test-password\n', { mode: 0o600 });
      args.push('--password-file', pwFile);
    }
    await lab.launch(a, [], args);
    await lab.launch(c, [], args);
    await lab.launch(b, [a.ip, c.ip], args);
    ipA = (await lab.attach(a, ca)).split('/')[0]!;
    ipC = (await lab.attach(c, cc)).split('/')[0]!;
  });

  it('A lists C as reachable (via B) in status peers', async () => {
    const peers = await lab.waitFor(
      async () => {
        const list = await lab.weavetsJson<PeerStatus[]>(a, ['status', 'peers']);
        return list.find((p) => p.nickname === 'c' && p.reachable) ? list : undefined;
      },
      { what: 'host a to see host c as reachable', timeoutMs: 30_000 },
    );
    const peerB = peers.find((p) => p.nickname === 'b');
    const peerC = peers.find((p) => p.nickname === 'c');
    expect(peerB, JSON.stringify(peers)).toBeDefined();
    expect(peerC!.via).toBe(peerB!.name);
  });

  it('the container on A pings the container on C, relayed through B', async () => {
    await lab.waitFor(async () => (await lab.ping(ca, ipC, { count: 1, timeoutS: 1 })).ok, {
      what: `ca (${ipA}) on host a to get a reply from cc (${ipC}) on host c`,
      timeoutMs: 30_000,
    });
    const r = await lab.ping(ca, ipC, { count: 5 });
    expect(r.received, r.output).toBe(5);
    const back = await lab.ping(cc, ipA, { count: 3 });
    expect(back.received, back.output).toBe(3);
    // Still no direct path: the relay did it.
    expect((await lab.ping(a, c.ip, { count: 1, timeoutS: 1 })).ok).toBe(false);
  });

  it('a TCP stream of 8 MB crosses B byte for byte, and B refuses nothing as forged or replayed', async () => {
    const refused = async (): Promise<string> =>
      [
        ...(await lab.http(b, '/metrics')).body.matchAll(
          /^weavets_dropped_datagrams_total\{reason="(forged|replayed|bad_epoch|unsealed|reassembly_gap)"\} (\d+)/gm,
        ),
      ]
        .map((m) => `${m[1]}=${m[2]}`)
        .join(' ');
    const before = await refused();
    expect(await lab.tcpTransferIntact(ca, cc, ipC)).toBe(true);
    expect(await refused()).toEqual(before);
  });
});
