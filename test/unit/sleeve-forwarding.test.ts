/**
 * Sleeves in one process over in-memory rings: frames taken from one host's bridge
 * arrive, byte for byte, on the right hosts' bridges (unicast, broadcast, through a relay),
 * with the kernel-copy facts (the virtio-net offload block, the kernel-copy bit) carried.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DatagramKind, decode, encode } from '../../src/datapath/sleeve/codec';
import { readMac } from '../../src/net/mac';
import { MemoryUdpRing } from './sleeve-rings';
import { BROADCAST_MAC, NETWORK, buildMesh, pattern, tapFrame, type Mesh } from './sleeve-mesh';

let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close();
  mesh = undefined;
});

/** Datagrams on the wire from host `a` to host `b`, decoded. */
function wireFrom(m: Mesh, a: number, b: number): ReturnType<typeof decode>[] {
  const from = `${m.hosts[a]!.ip}:6783`;
  const to = `${m.hosts[b]!.ip}:6783`;
  return m.underlay.log.filter((d) => d.from === from && d.to === to).map((d) => decode(d.data));
}

describe('sleeve forwarding over in-memory rings', () => {
  it('brings paths up with heartbeats and carries a broadcast then a unicast between two hosts', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    expect(a.sleeve.peerStatus(b.name)?.up).toBe(true);
    expect(a.pathEvents).toEqual([[b.name, true]]);

    // b announces itself with a broadcast (an ARP request, say): a's bridge gets it.
    const hello = tapFrame(BROADCAST_MAC, b.mac, pattern(46, 1));
    b.tap().inject(hello);
    await mesh.settle();
    expect(a.tap().written).toEqual([hello]);
    expect(a.sleeve.macs.lookup(NETWORK.id, readMac(b.mac, 0), mesh.clock.now())).toBe(b.name);

    // a answers b's MAC: learned, so it goes as a unicast record addressed to b.
    const reply = tapFrame(b.mac, a.mac, pattern(1000, 2));
    a.tap().inject(reply);
    await mesh.settle();
    expect(b.tap().written).toEqual([reply]);
    const frames = wireFrom(mesh, 0, 1).filter((d) => d.kind === DatagramKind.Frames);
    expect(frames.at(-1)).toMatchObject({ kind: DatagramKind.Frames, frames: [{ src: a.name, dst: b.name, hops: 0 }] });
    expect(a.sleeve.peerStatus(b.name)).toMatchObject({ framesOut: 1, bytesOut: reply.length - 10 });
    expect(b.sleeve.peerStatus(a.name)).toMatchObject({ framesIn: 1, bytesIn: reply.length - 10 });
  });

  it('packs the frames of one bridge batch into one datagram per next hop', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    const before = wireFrom(mesh, 0, 1).length;
    const burst = [1, 2, 3].map((i) => tapFrame(BROADCAST_MAC, a.mac, pattern(200, i)));
    for (const f of burst) a.tap().inject(f);
    await mesh.settle();
    expect(b.tap().written).toEqual(burst);
    const sent = wireFrom(mesh, 0, 1).slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ kind: DatagramKind.Frames });
    expect(sent[0]!.kind === DatagramKind.Frames && sent[0]!.frames.length).toBe(3);
  });

  it('floods a broadcast along the tree to every host, once each, and relays unicast through the middle host', async () => {
    // A line: 0 - 1 - 2; 0 and 2 are not peers.
    mesh = await buildMesh({
      hosts: 3,
      edges: [
        [0, 1],
        [1, 2],
      ],
    });
    const [a, b, c] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0], Mesh['hosts'][0]];
    const hello = tapFrame(BROADCAST_MAC, c.mac, pattern(60, 3));
    c.tap().inject(hello);
    await mesh.settle();
    expect(b.tap().written).toEqual([hello]);
    expect(a.tap().written).toEqual([hello]);
    expect(c.tap().written).toEqual([]);
    // The copy b relayed to a carries c as source and one hop.
    const relayed = wireFrom(mesh, 1, 0).filter((d) => d.kind === DatagramKind.Frames);
    expect(relayed).toMatchObject([{ frames: [{ src: c.name, dst: 0, hops: 1 }] }]);

    const toC = tapFrame(c.mac, a.mac, pattern(900, 4));
    a.tap().inject(toC);
    await mesh.settle();
    expect(c.tap().written).toEqual([toC]);
    expect(b.tap().written).toEqual([hello]); // b relays, never delivers, a unicast for c
    expect(
      wireFrom(mesh, 1, 2)
        .filter((d) => d.kind === DatagramKind.Frames)
        .at(-1),
    ).toMatchObject({
      sender: b.name,
      frames: [{ src: a.name, dst: c.name, hops: 1 }],
    });
    expect(b.sleeve.peerStatus(c.name)).toMatchObject({ framesOut: 1 });
  });

  it('carries the virtio-net offload block of a frame unchanged', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    // NEEDS_CSUM, GSO_TCPV4, hdr_len 66, gso_size 1326, csum_start 34, csum_offset 16
    const offload = Buffer.from('010142002e0522001000', 'hex');
    const f = tapFrame(BROADCAST_MAC, a.mac, pattern(300, 5), offload);
    a.tap().inject(f);
    await mesh.settle();
    expect(b.tap().written).toEqual([f]);
    expect(b.tap().written[0]!.subarray(0, 10)).toEqual(offload);
  });

  it('marks its own broadcast to a fast-path peer as a kernel copy: relayed there, not delivered twice', async () => {
    // 0 - 1 - 2, and host 0's kernel path carries host 1.
    mesh = await buildMesh({
      hosts: 3,
      edges: [
        [0, 1],
        [1, 2],
      ],
      kernelPeers: [[1], [], []],
    });
    const [a, b, c] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0], Mesh['hosts'][0]];
    const hello = tapFrame(BROADCAST_MAC, a.mac, pattern(80, 6));
    a.tap().inject(hello);
    await mesh.settle();
    const toB = wireFrom(mesh, 0, 1).filter((d) => d.kind === DatagramKind.Frames);
    expect(toB).toMatchObject([{ frames: [{ src: a.name, dst: 0, hops: 0, kernelCopy: true }] }]);
    expect(b.tap().written).toEqual([]); // the VXLAN port delivered it on b
    expect(b.sleeve.macs.lookup(NETWORK.id, readMac(a.mac, 0), mesh.clock.now())).toBe(a.name); // but b learned a's MAC
    expect(c.tap().written).toEqual([hello]); // and relayed it on, as a plain copy
    expect(wireFrom(mesh, 1, 2).filter((d) => d.kind === DatagramKind.Frames)).toMatchObject([
      { frames: [{ src: a.name, hops: 1 }] },
    ]);
    expect(
      (wireFrom(mesh, 1, 2)[0] as { frames?: { kernelCopy?: boolean }[] }).frames?.[0]?.kernelCopy,
    ).toBeUndefined();

    // A unicast from a's bridge to b's MAC rides the kernel path only: the sleeve sends nothing.
    b.tap().inject(tapFrame(BROADCAST_MAC, b.mac, pattern(60, 7)));
    await mesh.settle();
    const sentBefore = wireFrom(mesh, 0, 1).length;
    a.tap().inject(tapFrame(b.mac, a.mac, pattern(100, 8)));
    await mesh.settle();
    expect(
      wireFrom(mesh, 0, 1)
        .slice(sentBefore)
        .filter((d) => d.kind === DatagramKind.Frames),
    ).toEqual([]);
  });

  it('drops and counts what it cannot act on: an unknown sender, a wrong address, an unknown network', async () => {
    mesh = await buildMesh({ hosts: 2, edges: [[0, 1]] });
    const [a, b] = mesh.hosts as [Mesh['hosts'][0], Mesh['hosts'][0]];
    const record = { src: a.name, dst: 0, network: NETWORK.id, hops: 0, offload: Buffer.alloc(10), frame: pattern(60) };
    const send = (from: Mesh['hosts'][0], d: Buffer): void => {
      from.socket.send(d, 0, d.length, 0xc0000200 + b.index + 1, 6783);
    };
    send(a, encode({ kind: DatagramKind.Frames, sender: 0x0a0b0c0d0e0f, frames: [record] }));
    send(a, encode({ kind: DatagramKind.Frames, sender: a.name, frames: [{ ...record, network: 0x99 }] }));
    send(a, Buffer.from('not a sleeve datagram'));
    // a's name from an address that is not a's.
    const impostor = new MemoryUdpRing(mesh.underlay, '192.0.2.99', 6783);
    send({ ...a, socket: impostor }, encode({ kind: DatagramKind.Frames, sender: a.name, frames: [record] }));
    await mesh.settle();
    impostor.close();
    expect(b.sleeve.dropCount('wrong_address')).toBe(1);
    expect(b.sleeve.dropCount('unknown_peer')).toBe(1);
    expect(b.sleeve.dropCount('unknown_network')).toBe(1);
    expect(b.sleeve.dropCount('bad_magic')).toBe(1);
    expect(b.tap().written).toEqual([]);
  });
});
