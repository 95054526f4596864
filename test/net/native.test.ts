/**
 * The native addon against the real kernel: TAP devices moved into a namespace of this
 * test's own (the device is created in this process's namespace, DOWN and without an
 * address, and moved out at once; no address, route or link-up ever happens in the
 * root namespace), and UDP sockets on loopback.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TapDevice,
  UdpBatchSocket,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VNET_HDR_LEN,
  ipv4ToNumber,
  numberToIpv4,
  setSchedSlice,
} from '../../src/native/index';
import { inNetns } from '../../src/netlink/netns';

const PREFIX = `wtnat${crypto.randomBytes(2).toString('hex')}`;
const NS = `${PREFIX}-ns`;
// Each TAP gets its own /24 of 198.18.0.0/15 (net = third octet): .1 is the TAP, .2 a
// peer the test answers for through the TAP fd, .3 a static neighbour whose frames
// simply queue on the TAP.
const addrOf = (net: number, host: number): string => `198.18.${net}.${host}`;
const PEER_MAC = Buffer.from([0x02, 0x00, 0x5e, 0x00, 0x00, 0x02]);
const SILENT_MAC = '02:00:5e:00:00:03';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function inNs(...args: string[]): string {
  return ip('netns', 'exec', NS, ...args);
}

/** Run a command without blocking the event loop (the TAP reader must keep running). */
function runAsync(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - start > timeoutMs) reject(new Error('timed out waiting'));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

/** A fresh TAP, moved into the test namespace, addressed there and up. */
function tapInNs(suffix: string, net: number, opts?: { slotSize?: number; slots?: number }): TapDevice {
  const tap = TapDevice.open(`${PREFIX}${suffix}`, opts);
  try {
    ip('link', 'set', tap.name, 'netns', NS);
    ip('-n', NS, 'addr', 'add', `${addrOf(net, 1)}/24`, 'dev', tap.name);
    ip('-n', NS, 'link', 'set', tap.name, 'up');
    ip('-n', NS, 'neigh', 'replace', addrOf(net, 3), 'lladdr', SILENT_MAC, 'dev', tap.name, 'nud', 'permanent');
  } catch (err) {
    tap.close();
    throw err;
  }
  return tap;
}

function rxPackets(dev: string): number {
  const [link] = JSON.parse(ip('-n', NS, '-s', '-j', 'link', 'show', dev)) as [
    { stats64: { rx: { packets: number } } },
  ];
  return link.stats64.rx.packets;
}

function checksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (buf[i]! << 8) | (i + 1 < end ? buf[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The ARP reply "PEER_ADDR is at PEER_MAC" to an ARP request frame. */
function arpReply(req: Buffer): Buffer {
  const f = Buffer.alloc(42);
  req.copy(f, 0, 6, 12); // to the asker
  PEER_MAC.copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14); // Ethernet
  f.writeUInt16BE(0x0800, 16); // IPv4
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(2, 20); // reply
  PEER_MAC.copy(f, 22);
  req.copy(f, 28, 38, 42); // sender IP = the address asked for
  req.copy(f, 32, 22, 28); // target MAC = asker
  req.copy(f, 38, 28, 32); // target IP = asker
  return f;
}

/** The ICMP echo reply to an echo request frame (option-less IPv4 header). */
function echoReply(req: Buffer): Buffer {
  const f = Buffer.from(req);
  req.copy(f, 0, 6, 12);
  req.copy(f, 6, 0, 6);
  req.copy(f, 26, 30, 34); // swap IPs
  req.copy(f, 30, 26, 30);
  f.writeUInt16BE(0, 24);
  f.writeUInt16BE(checksum(f, 14, 34), 24);
  f[34] = 0; // echo reply
  f.writeUInt16BE(0, 36);
  f.writeUInt16BE(checksum(f, 34, f.length), 36);
  return f;
}

describe('TapDevice', () => {
  const opened: TapDevice[] = [];

  beforeAll(() => {
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    // No IPv6 chatter (DAD, MLD) on the TAPs: every frame seen is one the test caused.
    inNs('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
  });

  afterAll(() => {
    for (const t of opened) t.close();
    try {
      ip('netns', 'del', NS);
    } catch {
      // already gone
    }
  });

  it('reads the ARP and ICMP frames of a ping and answers it with write/writeBatch', async () => {
    const tap = tapInNs('a', 1);
    opened.push(tap);
    expect(tap.name).toBe(`${PREFIX}a`);
    expect(tap.fd).toBeGreaterThan(2);
    expect(tap.slotSize).toBe(65664);
    expect(tap.rxBuf.length).toBe(tap.slotSize * tap.slots);

    const seen: { length: number; ethertype: number }[] = [];
    const offsets = new Uint32Array(1);
    const lengths = new Uint32Array(1);
    tap.startReading((count) => {
      for (let i = 0; i < count; i++) {
        const len = tap.rxLengths[i]!;
        const frame = tap.rxBuf.subarray(i * tap.slotSize, i * tap.slotSize + len);
        const ethertype = frame.readUInt16BE(12);
        seen.push({ length: len, ethertype });
        if (
          ethertype === 0x0806 &&
          frame.readUInt16BE(20) === 1 &&
          frame.subarray(38, 42).equals(Buffer.from([198, 18, 1, 2]))
        ) {
          const reply = arpReply(frame);
          expect(tap.write(reply, 0, reply.length)).toBe(true);
        } else if (ethertype === 0x0800 && frame[23] === 1 && frame[34] === 8) {
          const reply = echoReply(frame);
          lengths[0] = reply.length;
          expect(tap.writeBatch(reply, offsets, lengths, 1)).toBe(1);
        }
      }
    });
    const ping = await runAsync('ip', ['netns', 'exec', NS, 'ping', '-c1', '-W3', addrOf(1, 2)]);
    tap.stopReading();
    expect(ping.out).toContain('1 received');
    expect(ping.code).toBe(0);
    expect(seen).toContainEqual({ length: 42, ethertype: 0x0806 }); // ARP request
    expect(seen).toContainEqual({ length: 98, ethertype: 0x0800 }); // 56-byte ping
  });

  it('delivers frames queued while not reading in batches', async () => {
    const tap = tapInNs('b', 2);
    opened.push(tap);
    // Queue 30 UDP frames (to a static neighbour, so no ARP) before reading.
    inNs('bash', '-c', `for i in $(seq 1 30); do printf "%0\${i}d" 0 > /dev/udp/${addrOf(2, 3)}/9999; done`);
    const lens: number[] = [];
    const batches: number[] = [];
    tap.startReading((count) => {
      batches.push(count);
      for (let i = 0; i < count; i++) {
        const at = i * tap.slotSize;
        if (tap.rxBuf.readUInt16BE(at + 12) === 0x0800 && tap.rxBuf[at + 23] === 17) lens.push(tap.rxLengths[i]!);
      }
    });
    await waitFor(() => lens.length >= 30);
    tap.stopReading();
    // 14 Ethernet + 20 IPv4 + 8 UDP + i payload bytes, in order.
    expect(lens).toEqual(Array.from({ length: 30 }, (_, i) => 42 + i + 1));
    expect(Math.max(...batches)).toBeGreaterThan(1);
    expect(Math.max(...batches)).toBeLessThanOrEqual(tap.slots);
  });

  it('reports frames longer than a slot with length 0', async () => {
    const tap = tapInNs('c', 3, { slotSize: 64, slots: 4 });
    opened.push(tap);
    inNs(
      'bash',
      '-c',
      `printf "%0100d" 0 > /dev/udp/${addrOf(3, 3)}/9999; printf "%010d" 0 > /dev/udp/${addrOf(3, 3)}/9999`,
    );
    const lens: number[] = [];
    tap.startReading((count) => {
      for (let i = 0; i < count; i++) lens.push(tap.rxLengths[i]!);
    });
    await waitFor(() => lens.length >= 2);
    tap.stopReading();
    expect(lens).toEqual([0, 52]);
  });

  it('writeBatch puts every frame on the wire (counted as rx on the device)', () => {
    const tap = opened[0]!;
    const sizes = [60, 61, 100, 333, 600, 1514, 64, 90, 1000, 77];
    const buf = Buffer.alloc(sizes.reduce((a, b) => a + b));
    const offsets = new Uint32Array(sizes.length);
    const lengths = new Uint32Array(sizes.length);
    let at = 0;
    sizes.forEach((size, i) => {
      offsets[i] = at;
      lengths[i] = size;
      buf.fill(0xff, at, at + 6); // broadcast
      PEER_MAC.copy(buf, at + 6);
      buf.writeUInt16BE(0x88b5, at + 12); // IEEE local experimental: nobody consumes it
      at += size;
    });
    const before = rxPackets(tap.name);
    expect(tap.writeBatch(buf, offsets, lengths, sizes.length)).toBe(sizes.length);
    expect(tap.write(buf, 0, 60)).toBe(true);
    expect(rxPackets(tap.name)).toBe(before + sizes.length + 1);
    // A frame shorter than an Ethernet header is refused by the kernel.
    expect(() => tap.write(buf, 0, 10)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => tap.writeBatch(buf, offsets, lengths, 11)).toThrow(RangeError);
  });

  it('calls onError and stops when the device is deleted under it', async () => {
    const tap = tapInNs('d', 4);
    opened.push(tap);
    let error: NodeJS.ErrnoException | undefined;
    tap.startReading(
      () => undefined,
      (err) => (error = err),
    );
    ip('-n', NS, 'link', 'del', tap.name);
    await waitFor(() => error !== undefined);
    expect(error!.code).toMatch(/^EBADF/);
  });

  it('close() is idempotent, removes the device and makes further use throw EBADF', () => {
    const tap = tapInNs('e', 5);
    tap.startReading(() => undefined);
    tap.close();
    tap.close();
    expect(() => ip('-n', NS, 'link', 'show', tap.name)).toThrow();
    expect(() => tap.write(Buffer.alloc(60), 0, 60)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => tap.startReading(() => undefined)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('rejects bad names and ring sizes', () => {
    expect(() => TapDevice.open('x'.repeat(16))).toThrow(RangeError);
    expect(() => TapDevice.open('', {})).toThrow(RangeError);
    expect(() => TapDevice.open(`${PREFIX}z`, { slotSize: 10 })).toThrow(RangeError);
  });
});

describe('UdpBatchSocket', () => {
  const LO = ipv4ToNumber('127.0.0.1');
  const sockets: UdpBatchSocket[] = [];
  const bind = (opts?: Parameters<typeof UdpBatchSocket.bind>[2]): UdpBatchSocket => {
    const s = UdpBatchSocket.bind('127.0.0.1', 0, opts);
    sockets.push(s);
    return s;
  };
  afterAll(() => sockets.forEach((s) => s.close()));

  /** Collect datagrams (copied out of the ring) until n have arrived. */
  function collect(
    s: UdpBatchSocket,
    n: number,
  ): Promise<{ data: Buffer[]; addrs: number[]; ports: number[]; batches: number[] }> {
    const got = { data: [] as Buffer[], addrs: [] as number[], ports: [] as number[], batches: [] as number[] };
    s.startReading((count) => {
      got.batches.push(count);
      for (let i = 0; i < count; i++) {
        const at = i * s.slotSize;
        got.data.push(Buffer.from(s.rxBuf.subarray(at, at + s.rxLengths[i]!)));
        got.addrs.push(s.rxAddrs[i]!);
        got.ports.push(s.rxPorts[i]!);
      }
    });
    return waitFor(() => got.data.length >= n).then(() => {
      s.stopReading();
      return got;
    });
  }

  it('binds port 0 to a real port with the defaults', () => {
    const s = bind();
    expect(s.port).toBeGreaterThan(0);
    expect(s.slotSize).toBe(65536);
    expect(s.rxBuf.length).toBe(65536 * 64);
    expect(s.rxPorts).toBeInstanceOf(Uint16Array);
  });

  it('sendBatch: 100 datagrams of varied sizes arrive intact, in order, with the sender address', async () => {
    const a = bind();
    const b = bind({ slots: 16, slotSize: 2048 });
    const n = 100;
    const sizes = Array.from({ length: n }, (_, i) => ((i * 397) % 1400) + 1);
    const buf = crypto.randomBytes(sizes.reduce((x, y) => x + y));
    const offsets = new Uint32Array(n);
    const lengths = new Uint32Array(n);
    const addrs = new Uint32Array(n).fill(LO);
    const ports = new Uint16Array(n).fill(b.port);
    let at = 0;
    sizes.forEach((size, i) => {
      offsets[i] = at;
      lengths[i] = size;
      at += size;
    });
    const arrived = collect(b, n);
    expect(a.sendBatch(buf, offsets, lengths, addrs, ports, n)).toBe(n);
    const got = await arrived;
    expect(got.data.length).toBe(n);
    got.data.forEach((d, i) => expect(d.equals(buf.subarray(offsets[i], offsets[i]! + sizes[i]!))).toBe(true));
    expect(new Set(got.addrs)).toEqual(new Set([LO]));
    expect(new Set(got.ports)).toEqual(new Set([a.port]));
    expect(Math.max(...got.batches)).toBeLessThanOrEqual(16);
  });

  it('send() returns true and the datagram arrives', async () => {
    const a = bind();
    const b = bind();
    const arrived = collect(b, 1);
    expect(a.send(Buffer.from('xxhello'), 2, 5, LO, b.port)).toBe(true);
    const got = await arrived;
    expect(got.data[0]!.toString()).toBe('hello');
    expect(numberToIpv4(got.addrs[0]!)).toBe('127.0.0.1');
  });

  it('sendSegmented splits 10000 bytes into 7x1400 + 200 datagrams', async () => {
    const a = bind();
    const b = bind();
    const payload = crypto.randomBytes(10_000);
    const arrived = collect(b, 8);
    expect(a.sendSegmented(payload, 0, payload.length, 1400, LO, b.port)).toBe(true);
    const got = await arrived;
    await new Promise((r) => setTimeout(r, 50));
    expect(got.data.map((d) => d.length)).toEqual([1400, 1400, 1400, 1400, 1400, 1400, 1400, 200]);
    expect(Buffer.concat(got.data).equals(payload)).toBe(true);
  });

  it('gro: a sendSegmented train arrives coalesced (rxSegSizes = segment size) or as plain datagrams, intact', async () => {
    const a = bind({ gro: true });
    const plain = bind();
    expect(a.gro).toBe(true);
    expect(plain.gro).toBe(false);
    expect(a.rxSegSizes).toBeInstanceOf(Uint16Array);
    expect(a.rxSegSizes.length).toBe(a.slots);
    const b = bind();
    const payload = crypto.randomBytes(12_000);
    const got: { data: Buffer; seg: number }[] = [];
    a.startReading((count) => {
      for (let i = 0; i < count; i++) {
        const at = i * a.slotSize;
        got.push({ data: Buffer.from(a.rxBuf.subarray(at, at + a.rxLengths[i]!)), seg: a.rxSegSizes[i]! });
      }
    });
    expect(b.sendSegmented(payload, 0, payload.length, 1200, LO, a.port)).toBe(true);
    await waitFor(() => got.reduce((n, g) => n + g.data.length, 0) >= payload.length);
    a.stopReading();
    expect(Buffer.concat(got.map((g) => g.data)).equals(payload)).toBe(true);
    const shape = got.map((g) => [g.data.length, g.seg]);
    if (got.length === 1) expect(shape).toEqual([[12_000, 1200]]);
    else expect(shape).toEqual(Array.from({ length: 10 }, () => [1200, 0]));
    console.log(
      `UDP GRO on loopback: ${got.length === 1 ? 'coalesced, one 12000-byte datagram, segment 1200' : '10 plain datagrams'}`,
    );
  });

  it('sendSegmented throws when the kernel refuses (too many segments)', () => {
    const a = bind();
    expect(() => a.sendSegmented(Buffer.alloc(60_000), 0, 60_000, 100, LO, a.port)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
  });

  it('reports truncated datagrams with length 0', async () => {
    const a = bind();
    const b = bind({ slotSize: 64, slots: 4 });
    const arrived = collect(b, 2);
    a.send(Buffer.alloc(100, 1), 0, 100, LO, b.port);
    a.send(Buffer.alloc(10, 2), 0, 10, LO, b.port);
    const got = await arrived;
    expect(got.data.map((d) => d.length)).toEqual([0, 10]);
  });

  it('sendBatch throws only when the first message fails, else returns the count so far', () => {
    const a = bind();
    const b = bind();
    const buf = Buffer.alloc(70_000);
    const addrs = new Uint32Array(3).fill(LO);
    const ports = new Uint16Array(3).fill(b.port);
    // 70000 bytes is over the IPv4 UDP maximum (65507): EMSGSIZE.
    expect(() => a.sendBatch(buf, new Uint32Array([0]), new Uint32Array([70_000]), addrs, ports, 1)).toThrow(
      expect.objectContaining({ code: 'EMSGSIZE' }),
    );
    expect(a.sendBatch(buf, new Uint32Array([0, 0, 0]), new Uint32Array([10, 10, 70_000]), addrs, ports, 3)).toBe(2);
    expect(() => a.sendBatch(buf, new Uint32Array([0]), new Uint32Array([10]), addrs, ports, 4)).toThrow(RangeError);
  });

  it('fails to bind an address not on the host with EADDRNOTAVAIL', () => {
    expect(() => UdpBatchSocket.bind('192.0.2.123', 0)).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }));
  });

  it('close() is idempotent and makes further use throw EBADF', () => {
    const s = UdpBatchSocket.bind('127.0.0.1', 0);
    s.close();
    s.close();
    expect(() => s.send(Buffer.alloc(1), 0, 1, LO, 9)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('ipv4 helpers', () => {
  it('round-trip', () => {
    expect(ipv4ToNumber('192.0.2.1')).toBe(0xc0000201);
    expect(ipv4ToNumber('255.255.255.255')).toBe(0xffffffff);
    expect(ipv4ToNumber('0.0.0.0')).toBe(0);
    for (const text of ['10.32.0.1', '127.0.0.1', '198.18.255.7', '255.255.255.255']) {
      expect(numberToIpv4(ipv4ToNumber(text))).toBe(text);
    }
  });

  it('reject bad input', () => {
    for (const bad of ['300.1.1.1', '1.2.3', '1.2.3.4.5', '', 'a.b.c.d', '1.2.3.-4', '01.2.3.4', '1.2.3.4 ']) {
      expect(() => ipv4ToNumber(bad)).toThrow();
    }
    expect(() => numberToIpv4(-1)).toThrow();
    expect(() => numberToIpv4(2 ** 32)).toThrow();
    expect(() => numberToIpv4(1.5)).toThrow();
  });
});

/**
 * Offloads in namespaces of this test's own (nothing is created in the root namespace:
 * the TAPs are opened with the thread inside the namespace):
 *   A: bridge "wbr" (MTU 9000) with the vnetHdr TAP "tapt" and veth "v0"; TAP "tapx" (198.19.8.1/24);
 *      veth "u0" (198.19.9.1/24)
 *   B: "v1" (198.19.7.1/24, MTU 9000, peer of v0); TAP "tapy" (198.19.8.2/24); "u1" (198.19.9.2/24)
 */
describe('offloads', () => {
  const P = `wtgso-${crypto.randomBytes(2).toString('hex')}`;
  const NSA = `${P}-a`;
  const NSB = `${P}-b`;
  const nsPath = (ns: string): string => `/run/netns/${ns}`;
  const opened: TapDevice[] = [];
  const sockets: UdpBatchSocket[] = [];
  const nsIp = (ns: string, ...args: string[]): string => ip('-n', ns, ...args);
  const cleanup = (): void => {
    for (const ns of [NSA, NSB]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // never created or already gone
      }
    }
  };
  /** A vnetHdr TAP created directly inside `ns`. */
  const vnetTap = (ns: string, name: string): TapDevice => {
    const tap = inNetns(nsPath(ns), () => TapDevice.open(name, { vnetHdr: true }));
    opened.push(tap);
    return tap;
  };

  beforeAll(() => {
    process.once('exit', cleanup); // if afterAll never gets to run
    for (const ns of [NSA, NSB]) {
      ip('netns', 'add', ns);
      nsIp(ns, 'link', 'set', 'lo', 'up');
      ip(
        'netns',
        'exec',
        ns,
        'sysctl',
        '-qw',
        'net.ipv6.conf.all.disable_ipv6=1',
        'net.ipv6.conf.default.disable_ipv6=1',
      );
    }
    nsIp(NSA, 'link', 'add', 'name', 'wbr', 'mtu', '9000', 'type', 'bridge');
    nsIp(
      NSA,
      'link',
      'add',
      'name',
      'v0',
      'mtu',
      '9000',
      'type',
      'veth',
      'peer',
      'name',
      'v1',
      'mtu',
      '9000',
      'netns',
      NSB,
    );
    nsIp(NSA, 'link', 'set', 'dev', 'v0', 'master', 'wbr');
    nsIp(NSA, 'link', 'set', 'dev', 'v0', 'up');
    nsIp(NSA, 'link', 'set', 'dev', 'wbr', 'up');
    nsIp(NSB, 'addr', 'add', '198.19.7.1/24', 'dev', 'v1');
    nsIp(NSB, 'link', 'set', 'dev', 'v1', 'up');
    nsIp(NSA, 'link', 'add', 'name', 'u0', 'type', 'veth', 'peer', 'name', 'u1', 'netns', NSB);
    nsIp(NSA, 'addr', 'add', '198.19.9.1/24', 'dev', 'u0');
    nsIp(NSB, 'addr', 'add', '198.19.9.2/24', 'dev', 'u1');
    nsIp(NSA, 'link', 'set', 'dev', 'u0', 'up');
    nsIp(NSB, 'link', 'set', 'dev', 'u1', 'up');
  });

  afterAll(() => {
    for (const s of sockets) s.close();
    for (const t of opened) t.close();
    cleanup();
    process.removeListener('exit', cleanup);
  });

  it('vnetHdr TAP on a bridge: 8000-byte pings carry a 10-byte header and are answered through write()', async () => {
    const tap = vnetTap(NSA, 'tapt');
    expect(tap.vnetHdr).toBe(true);
    expect(tap.offloads & (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)).toBe(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    console.log(`TUNSETOFFLOAD accepted 0x${tap.offloads.toString(16)}`);
    // The largest frame (GSO super-frame + header + VLAN tag) fits the default slot.
    expect(tap.slotSize).toBeGreaterThanOrEqual(65535 + 14 + 4 + VNET_HDR_LEN);
    nsIp(NSA, 'link', 'set', 'dev', 'tapt', 'mtu', '9000');
    nsIp(NSA, 'link', 'set', 'dev', 'tapt', 'master', 'wbr');
    nsIp(NSA, 'link', 'set', 'dev', 'tapt', 'up');

    const PEER = Buffer.from([198, 19, 7, 2]);
    const seen: {
      length: number;
      ethertype: number;
      echo: boolean;
      flags: number;
      gsoType: number;
      gsoSize: number;
    }[] = [];
    tap.startReading((count) => {
      for (let i = 0; i < count; i++) {
        const len = tap.rxLengths[i]!;
        const at = i * tap.slotSize;
        const hdr = tap.rxBuf.subarray(at, at + VNET_HDR_LEN);
        const frame = tap.rxBuf.subarray(at + VNET_HDR_LEN, at + len);
        const ethertype = frame.readUInt16BE(12);
        const echo = ethertype === 0x0800 && frame[23] === 1 && frame[34] === 8;
        seen.push({ length: len, ethertype, echo, flags: hdr[0]!, gsoType: hdr[1]!, gsoSize: hdr.readUInt16LE(4) });
        let reply: Buffer | undefined;
        if (ethertype === 0x0806 && frame.readUInt16BE(20) === 1 && frame.subarray(38, 42).equals(PEER))
          reply = arpReply(frame);
        else if (echo) reply = echoReply(frame);
        if (reply) {
          const out = Buffer.concat([Buffer.alloc(VNET_HDR_LEN), reply]); // zeroed header: a plain frame
          expect(tap.write(out, 0, out.length)).toBe(true);
        }
      }
    });
    const ping = await runAsync('ip', [
      'netns',
      'exec',
      NSB,
      'ping',
      '-c2',
      '-i0.2',
      '-W3',
      '-s',
      '8000',
      '-M',
      'do',
      '198.19.7.2',
    ]);
    tap.stopReading();
    expect(ping.out).toContain('2 received');
    expect(ping.code).toBe(0);
    expect(seen).toContainEqual(expect.objectContaining({ length: VNET_HDR_LEN + 42, ethertype: 0x0806, gsoType: 0 }));
    // Only the echo requests: the namespace may send other IPv4 (IGMP reports) meanwhile.
    const echoes = seen.filter((f) => f.echo);
    expect(echoes.length).toBeGreaterThanOrEqual(2);
    for (const e of echoes) {
      // 8000 payload + 8 ICMP + 20 IPv4 + 14 Ethernet, behind the 10-byte header.
      expect(e).toMatchObject({ length: VNET_HDR_LEN + 8000 + 8 + 20 + 14, gsoType: 0, gsoSize: 0 });
      expect(e.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM).toBe(0);
    }
  });

  it('two vnetHdr TAPs relayed verbatim carry a TCP stream as GSO super-frames', async () => {
    const x = vnetTap(NSA, 'tapx');
    const y = vnetTap(NSB, 'tapy');
    for (const [ns, dev, addr] of [
      [NSA, 'tapx', '198.19.8.1/24'],
      [NSB, 'tapy', '198.19.8.2/24'],
    ] as const) {
      nsIp(ns, 'addr', 'add', addr, 'dev', dev);
      nsIp(ns, 'link', 'set', 'dev', dev, 'up');
    }
    // The userspace wire: every frame, header included, goes out the other TAP as read.
    let maxLen = 0;
    let gsoFrames = 0;
    let gsoSizeSeen = 0;
    let needsCsum = 0;
    let writeFailures = 0;
    const relay = (from: TapDevice, to: TapDevice) => (count: number) => {
      for (let i = 0; i < count; i++) {
        const len = from.rxLengths[i]!;
        if (len === 0) continue;
        const at = i * from.slotSize;
        const gsoType = from.rxBuf[at + 1]! & 0x7f;
        if (len > maxLen) maxLen = len;
        if (from.rxBuf[at]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) needsCsum++;
        if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4) {
          gsoFrames++;
          gsoSizeSeen = from.rxBuf.readUInt16LE(at + 4);
        }
        if (!to.write(from.rxBuf, at, len)) writeFailures++;
      }
    };
    x.startReading(relay(x, y));
    y.startReading(relay(y, x));

    const total = 8 * 1024 * 1024;
    const data = Buffer.alloc(total);
    for (let i = 0; i < total; i++) data[i] = i & 0xff;
    const want = crypto.createHash('sha256').update(data).digest('hex');
    const server = runAsync(
      'ip',
      [
        'netns',
        'exec',
        NSB,
        'python3',
        '-c',
        [
          'import socket, hashlib',
          's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
          "s.bind(('198.19.8.2', 5001)); s.listen(1); s.settimeout(20)",
          'c, _ = s.accept(); c.settimeout(20); h = hashlib.sha256(); n = 0',
          'while True:',
          '    d = c.recv(1 << 20)',
          '    if not d: break',
          '    h.update(d); n += len(d)',
          'print(n, h.hexdigest())',
        ].join('\n'),
      ],
      30_000,
    );
    const client = await runAsync(
      'ip',
      [
        'netns',
        'exec',
        NSA,
        'python3',
        '-c',
        [
          'import socket, time',
          `data = bytes(range(256)) * ${total / 256}`,
          'for _ in range(100):',
          '    try:',
          "        c = socket.create_connection(('198.19.8.2', 5001), timeout=20); break",
          '    except OSError:',
          '        time.sleep(0.05)',
          'c.sendall(data); c.close()',
        ].join('\n'),
      ],
      30_000,
    );
    const result = await server;
    x.stopReading();
    y.stopReading();
    expect(client.code).toBe(0);
    expect(result.out.trim()).toBe(`${total} ${want}`);
    console.log(
      `vnetHdr TCP relay: ${gsoFrames} TCPv4 GSO frames, largest read ${maxLen} bytes, gso_size ${gsoSizeSeen}, ` +
        `${needsCsum} with NEEDS_CSUM, ${writeFailures} writes dropped (EAGAIN)`,
    );
    expect(gsoFrames).toBeGreaterThan(0);
    expect(maxLen).toBeGreaterThan(VNET_HDR_LEN + 1514);
    expect(maxLen).toBeLessThanOrEqual(VNET_HDR_LEN + 14 + 4 + 65535);
    expect(gsoSizeSeen).toBeGreaterThan(0);
    expect(gsoSizeSeen).toBeLessThanOrEqual(1460);
  });

  it('gro over a veth between namespaces: a sendSegmented train is received coalesced or plain, intact', async () => {
    const a = inNetns(nsPath(NSB), () => UdpBatchSocket.bind('198.19.9.2', 0, { gro: true }));
    sockets.push(a);
    const b = inNetns(nsPath(NSA), () => UdpBatchSocket.bind('198.19.9.1', 0));
    sockets.push(b);
    expect(a.gro).toBe(true);
    const payload = crypto.randomBytes(12_000);
    const got: { data: Buffer; seg: number }[] = [];
    a.startReading((count) => {
      for (let i = 0; i < count; i++) {
        const at = i * a.slotSize;
        got.push({ data: Buffer.from(a.rxBuf.subarray(at, at + a.rxLengths[i]!)), seg: a.rxSegSizes[i]! });
      }
    });
    expect(b.sendSegmented(payload, 0, payload.length, 1200, ipv4ToNumber('198.19.9.2'), a.port)).toBe(true);
    await waitFor(() => got.reduce((n, g) => n + g.data.length, 0) >= payload.length);
    a.stopReading();
    expect(Buffer.concat(got.map((g) => g.data)).equals(payload)).toBe(true);
    for (const g of got) {
      if (g.seg === 0) expect(g.data.length).toBe(1200);
      else {
        expect(g.seg).toBe(1200);
        expect(g.data.length % 1200).toBe(0);
        expect(g.data.length).toBeGreaterThan(1200);
      }
    }
    console.log(`UDP GRO over veth: ${got.map((g) => `${g.data.length}/${g.seg}`).join(' ')} (length/segment)`);
  });
});

describe('setSchedSlice', () => {
  // Custom EEVDF slices arrived in Linux 6.12; this machine's kernel decides what to expect.
  const [major, minor] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number) as [
    number,
    number,
  ];
  const hasCustomSlices = major > 6 || (major === 6 && minor >= 12);
  const sliceNs = (): number =>
    Number(/^se\.slice\s+:\s+(\d+)/m.exec(fs.readFileSync('/proc/thread-self/sched', 'utf8'))?.[1]);

  it("sets the calling thread's slice, and 0 puts the default back", () => {
    const before = sliceNs();
    try {
      expect(setSchedSlice(100_000)).toBe(hasCustomSlices);
      if (hasCustomSlices) expect(sliceNs()).toBe(100_000);
    } finally {
      setSchedSlice(0);
    }
    if (hasCustomSlices) expect(sliceNs()).toBe(before);
  });

  it('refuses a slice that is not a whole number of nanoseconds in range', () => {
    expect(() => setSchedSlice(-1)).toThrow(RangeError);
    expect(() => setSchedSlice(1.5)).toThrow(RangeError);
    expect(() => setSchedSlice(2e9)).toThrow(RangeError);
  });
});
