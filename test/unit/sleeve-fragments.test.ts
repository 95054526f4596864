/**
 * Records bigger than the path MTU: cut into FRAGMENT datagrams of exactly the path MTU,
 * sent as UDP GSO trains (or one by one where GSO is refused), received coalesced (GRO) or
 * not, rebuilt, and delivered byte for byte; a lost chunk drops the record and is counted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DatagramKind, decode } from '../../src/datapath/sleeve/codec';
import { BROADCAST_MAC, buildMesh, pattern, tapFrame, type Mesh } from './sleeve-mesh';

let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close();
  mesh = undefined;
});

// A TCP super-frame as a vnet-header TAP hands it over: NEEDS_CSUM, GSO_TCPV4, gso_size 1326.
const GSO_OFFLOAD = Buffer.from('010142002e0522001000', 'hex');

function fragmentsOnWire(m: Mesh, from: number): Buffer[] {
  const src = `${m.hosts[from]!.ip}:6783`;
  return m.underlay.log.filter((d) => d.from === src && d.data[2] === DatagramKind.Fragment).map((d) => d.data);
}

describe('sleeve fragmentation and reassembly over in-memory rings', () => {
  for (const variant of [
    { title: 'GSO send, GRO receive', gro: true, gso: true },
    { title: 'GSO send, no GRO', gro: false, gso: true },
    { title: 'no GSO (sendmmsg fallback)', gro: true, gso: false },
  ]) {
    it(`rebuilds a 64 KiB super-frame exactly (${variant.title})`, async () => {
      mesh = await buildMesh({ hosts: 2, edges: [[0, 1]], gro: variant.gro, gso: variant.gso, routeMtu: 1500 });
      const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
      const big = tapFrame(BROADCAST_MAC, a.mac, pattern(65_000, 9), GSO_OFFLOAD);
      const small = tapFrame(BROADCAST_MAC, a.mac, pattern(100, 10));
      a.tap().inject(big);
      a.tap().inject(small);
      await mesh.settle();
      expect(b.tap().written).toEqual([big, small]); // in order, bytes intact
      const frags = fragmentsOnWire(mesh, 0);
      const pmtu = 1500 - 28;
      expect(frags.length).toBe(Math.ceil((30 + 65_014) / (pmtu - 24)));
      for (const f of frags.slice(0, -1)) expect(f.length).toBe(pmtu);
      expect(a.socket.gsoSends > 0).toBe(variant.gso);
      expect(frags.map((f) => decode(f))).toMatchObject(
        frags.map((_, i) => ({ kind: DatagramKind.Fragment, offset: i * (pmtu - 24), total: 30 + 65_014 })),
      );
    });
  }

  it('relays a fragmented record through a middle host and rebuilds it at the end', async () => {
    mesh = await buildMesh({
      hosts: 3,
      edges: [
        [0, 1],
        [1, 2],
      ],
    });
    const [a, , c] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0], Mesh['hosts'][0]];
    c.tap().inject(tapFrame(BROADCAST_MAC, c.mac, pattern(60, 1))); // a learns c's MAC
    await mesh.settle();
    const big = tapFrame(c.mac, a.mac, pattern(20_000, 2), GSO_OFFLOAD);
    a.tap().inject(big);
    await mesh.settle();
    expect(c.tap().written).toEqual([big]);
    expect(fragmentsOnWire(mesh, 1).length).toBeGreaterThan(0); // the middle host re-fragmented it
  });

  it('drops a record whose series lost a chunk, counts its orphaned chunks, and rebuilds the next one', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    let seen = 0;
    mesh.underlay.filter = (d) => (d.data[2] === DatagramKind.Fragment && ++seen === 3 ? null : d.data);
    const lost = tapFrame(BROADCAST_MAC, a.mac, pattern(10_000, 3));
    a.tap().inject(lost);
    await mesh.settle();
    expect(b.tap().written).toEqual([]);
    // Every chunk after the lost one is an orphan, counted once each.
    const n = fragmentsOnWire(mesh, 0).length;
    expect(n).toBe(7);
    expect(b.sleeve.dropCount('reassembly_gap')).toBe(n - 3);
    mesh.underlay.filter = undefined;
    const next = tapFrame(BROADCAST_MAC, a.mac, pattern(10_000, 4));
    a.tap().inject(next);
    await mesh.settle();
    expect(b.tap().written).toEqual([next]);
  });

  it('counts a series cut short by the next one as a gap', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    const last = new Set<number>();
    // Lose the last chunk of the first series only: the second series' first chunk then
    // arrives while the first is incomplete.
    mesh.underlay.filter = (d) => {
      if (d.data[2] !== DatagramKind.Fragment) return d.data;
      const f = decode(d.data);
      if (f.kind !== DatagramKind.Fragment) return d.data;
      const isLast = f.offset + f.chunk.length === f.total;
      if (isLast && last.size === 0) {
        last.add(f.frameId);
        return null;
      }
      return d.data;
    };
    a.tap().inject(tapFrame(BROADCAST_MAC, a.mac, pattern(5_000, 5)));
    await mesh.settle();
    const second = tapFrame(BROADCAST_MAC, a.mac, pattern(5_000, 6));
    a.tap().inject(second);
    await mesh.settle();
    expect(b.tap().written).toEqual([second]);
    expect(b.sleeve.dropCount('reassembly_gap')).toBe(1);
  });
});
