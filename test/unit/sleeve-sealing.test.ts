/**
 * With keys agreed, frames cross sealed (SEALED datagrams, or FRAGMENT series rebuilding a
 * sealed unit) and arrive intact; a tampered, replayed or clear datagram is dropped and
 * counted under its reason, and delivers nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DatagramKind, encode } from '../../src/datapath/sleeve/codec';
import { BROADCAST_MAC, NETWORK, buildMesh, pattern, tapFrame, type Mesh } from './sleeve-mesh';

let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close();
  mesh = undefined;
});

type Host = Mesh['hosts'][0];

function kindsOnWire(m: Mesh, from: number): number[] {
  const src = `${m.hosts[from]!.ip}:6783`;
  return m.underlay.log.filter((d) => d.from === src).map((d) => d.data[2]!);
}

describe('sleeve sealing over in-memory rings', () => {
  it('seals every datagram, heartbeats included, and delivers the frames intact', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]], sealed: true });
    const [a, b] = mesh.hosts as [Host, Host];
    expect(a.sleeve.peerStatus(b.name)?.up).toBe(true);
    const payload = pattern(700, 1);
    const f = tapFrame(BROADCAST_MAC, a.mac, payload);
    const big = tapFrame(BROADCAST_MAC, a.mac, pattern(30_000, 2));
    a.tap().inject(f);
    a.tap().inject(big);
    await mesh.settle();
    expect(b.tap().written).toEqual([f, big]);
    const kinds = new Set(kindsOnWire(mesh, 0));
    expect(kinds).toEqual(new Set([DatagramKind.Sealed, DatagramKind.Fragment]));
    // The payload never shows in clear on the wire.
    for (const d of mesh.underlay.log) expect(d.data.includes(payload.subarray(0, 64))).toBe(false);
  });

  it('drops a tampered datagram as forged, a replayed one as replayed, a clear one as unsealed', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]], sealed: true });
    const [a, b] = mesh.hosts as [Host, Host];
    let captured: Buffer | undefined;
    mesh.underlay.filter = (d) => {
      if (d.data[2] !== DatagramKind.Sealed || d.data.length < 200) return d.data;
      captured = Buffer.from(d.data);
      const t = Buffer.from(d.data);
      t[t.length - 5]! ^= 0x01; // one bit of the ciphertext
      return t;
    };
    a.tap().inject(tapFrame(BROADCAST_MAC, a.mac, pattern(300, 3)));
    await mesh.settle();
    expect(b.tap().written).toEqual([]);
    expect(b.sleeve.dropCount('forged')).toBe(1);

    // The untampered original, now: accepted once, refused the second time.
    mesh.underlay.filter = undefined;
    const send = (d: Buffer): void => void a.socket.send(d, 0, d.length, 0xc0000202, 6783);
    send(captured!);
    send(captured!);
    await mesh.settle();
    expect(b.tap().written).toHaveLength(1);
    expect(b.sleeve.dropCount('replayed')).toBe(1);

    // Frames in clear from a peer we share keys with: an injection attempt.
    send(
      encode({
        kind: DatagramKind.Frames,
        sender: a.name,
        frames: [{ src: a.name, dst: 0, network: NETWORK.id, hops: 0, offload: Buffer.alloc(10), frame: pattern(60) }],
      }),
    );
    await mesh.settle();
    expect(b.tap().written).toHaveLength(1);
    expect(b.sleeve.dropCount('unsealed')).toBe(1);
  });

  it('drops a tampered fragment series as forged once rebuilt', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]], sealed: true });
    const [a, b] = mesh.hosts as [Host, Host];
    let n = 0;
    mesh.underlay.filter = (d) => {
      if (d.data[2] !== DatagramKind.Fragment || ++n !== 2) return d.data;
      const t = Buffer.from(d.data);
      t[100]! ^= 0x80;
      return t;
    };
    a.tap().inject(tapFrame(BROADCAST_MAC, a.mac, pattern(8_000, 4)));
    await mesh.settle();
    expect(b.tap().written).toEqual([]);
    expect(b.sleeve.dropCount('forged')).toBe(1);
  });

  it('drops a sealed datagram from a peer it shares no keys with as unexpected_sealed', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Host, Host];
    const d = encode({ kind: DatagramKind.Sealed, sender: a.name, epoch: 0, counter: 1, box: Buffer.alloc(40) });
    a.socket.send(d, 0, d.length, 0xc0000202, 6783);
    await mesh.settle();
    expect(b.sleeve.dropCount('unexpected_sealed')).toBe(1);
  });
});
