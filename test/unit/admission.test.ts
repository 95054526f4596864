import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admission } from '../../src/router/admission';
import { Router } from '../../src/router/router';
import { Topology } from '../../src/router/topology';
import { randomPeerName } from '../../src/net/peername';
import { loadSealer } from '../../src/crypto/seal';
import { silentLogger } from '../../src/log';

describe('Admission', () => {
  const limits = {
    maxPending: 5,
    maxPendingPerAddress: 3,
    ratePerSecond: 2,
    burst: 4,
    globalRatePerSecond: 1000,
    globalBurst: 1000,
  };

  it('caps handshakes in progress per address and in total, and frees them on done()', () => {
    const a = new Admission(limits);
    for (let i = 0; i < 3; i++) expect(a.admit('192.0.2.1', 0)).toBeUndefined();
    expect(a.admit('192.0.2.1', 0)).toBe('too_many_handshakes_from_address');
    expect(a.admit('192.0.2.2', 0)).toBeUndefined();
    expect(a.admit('192.0.2.3', 0)).toBeUndefined();
    expect(a.pending).toBe(5);
    expect(a.admit('192.0.2.4', 0)).toBe('too_many_handshakes');
    a.done('192.0.2.1');
    expect(a.pending).toBe(4);
    expect(a.admit('192.0.2.4', 0)).toBeUndefined();
    // done() for an address with nothing pending changes nothing.
    a.done('198.51.100.9');
    expect(a.pending).toBe(5);
  });

  it('limits the rate of new connections per address with a token bucket', () => {
    const a = new Admission({ ...limits, maxPending: 100, maxPendingPerAddress: 100 });
    for (let i = 0; i < 4; i++) expect(a.admit('192.0.2.1', 1000)).toBeUndefined();
    expect(a.admit('192.0.2.1', 1000)).toBe('connection_rate_limited');
    // Another address has its own bucket.
    expect(a.admit('192.0.2.2', 1000)).toBeUndefined();
    // 2 per second: one token back after 500 ms, not before.
    expect(a.admit('192.0.2.1', 1400)).toBe('connection_rate_limited');
    expect(a.admit('192.0.2.1', 1500)).toBeUndefined();
    expect(a.admit('192.0.2.1', 1500)).toBe('connection_rate_limited');
    // Idle for long: a full burst, no more.
    for (let i = 0; i < 4; i++) expect(a.admit('192.0.2.1', 60_000)).toBeUndefined();
    expect(a.admit('192.0.2.1', 60_000)).toBe('connection_rate_limited');
  });

  it('limits new connections from all busy unknown addresses together; known and quiet addresses skip that bucket', () => {
    const a = new Admission({
      ...limits,
      maxPending: 100,
      maxPendingPerAddress: 100,
      globalRatePerSecond: 3,
      globalBurst: 6,
    });
    // Ten addresses' first connections: quiet (their buckets are full), all let in; they
    // drain the global bucket as they go.
    for (let i = 0; i < 10; i++) expect(a.admit(`198.51.100.${i}`, 1000)).toBeUndefined();
    // Their second connections, each well within its own bucket: refused together.
    for (let i = 0; i < 10; i++) expect(a.admit(`198.51.100.${i}`, 1000)).toBe('global_rate_limited');
    // A known peer, busy or not, still gets in (its own bucket applies).
    expect(a.admit('192.0.2.7', 1000, true)).toBeUndefined();
    expect(a.admit('192.0.2.7', 1000, true)).toBeUndefined();
    // A newcomer (quiet) gets in too.
    expect(a.admit('203.0.113.5', 1000)).toBeUndefined();
    // 3 per second overall for the busy ones.
    expect(a.admit('198.51.100.1', 1334)).toBeUndefined();
    expect(a.admit('198.51.100.2', 1334)).toBe('global_rate_limited');
  });

  it('reports a full table without spending tokens, so the caller can free a place and retry', () => {
    const a = new Admission({ ...limits, maxPending: 2, maxPendingPerAddress: 2, burst: 2, ratePerSecond: 0.001 });
    expect(a.admit('192.0.2.1', 0)).toBeUndefined();
    expect(a.admit('192.0.2.2', 0)).toBeUndefined();
    expect(a.admit('192.0.2.3', 0)).toBe('too_many_handshakes');
    a.done('192.0.2.1');
    // 192.0.2.3's bucket was not charged by the refusal: both its tokens are there.
    expect(a.admit('192.0.2.3', 0)).toBeUndefined();
    a.done('192.0.2.3');
    expect(a.admit('192.0.2.3', 0)).toBeUndefined();
  });

  it('stays bounded under a flood of distinct addresses', () => {
    const a = new Admission({
      maxPending: 1e9,
      maxPendingPerAddress: 1,
      ratePerSecond: 1,
      burst: 1,
      globalRatePerSecond: 1e9,
      globalBurst: 1e9,
    });
    for (let i = 0; i < 20_000; i++) {
      const addr = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      expect(a.admit(addr, i)).toBeUndefined();
      a.done(addr);
    }
    expect(a.pending).toBe(0);
  });
});

describe('Router admission (loopback)', () => {
  let router: Router;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  beforeAll(async () => {
    router = new Router({
      topology: new Topology({ name: randomPeerName(randomBytes), nickname: 'adm' }),
      bindAddress: '127.0.0.1',
      port,
      log: silentLogger,
      security: { password: undefined, sealer: loadSealer(), trusts: () => false },
    });
    await router.listen();
  });
  afterAll(async () => {
    await router.stop();
  });

  it('closes connections beyond 8 silent handshakes from one address at once, and counts them', async () => {
    const sockets: net.Socket[] = [];
    const closedEarly: boolean[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const s = net.connect({ host: '127.0.0.1', port });
        const idx = i;
        closedEarly[idx] = false;
        s.on('close', () => (closedEarly[idx] = true));
        s.on('error', () => undefined);
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        sockets.push(s);
      }
      await new Promise((r) => setTimeout(r, 500));
      // Silent clients are still within the 5 s handshake deadline: the first 8 are held.
      expect(closedEarly.slice(0, 8).every((c) => !c)).toBe(true);
      expect(closedEarly.slice(8).every((c) => c)).toBe(true);
      expect(router.rejectedCounts().get('too_many_handshakes_from_address')).toBe(2);
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Hung-up clients free their places.
    await new Promise((r) => setTimeout(r, 200));
    const s = net.connect({ host: '127.0.0.1', port });
    let closed = false;
    s.on('close', () => (closed = true));
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    await new Promise((r) => setTimeout(r, 300));
    expect(closed).toBe(false);
    s.destroy();
  });

  /** Connect from a loopback source address; resolves once connected, with a flag set on close. */
  async function open(from: string): Promise<{ s: net.Socket; closedAt: () => number | undefined }> {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    let closedAt: number | undefined;
    s.on('close', () => (closedAt = Date.now()));
    s.on('error', () => undefined);
    s.resume(); // read what the daemon sends (a CLOSE), so its end of the stream is seen
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    return { s, closedAt: () => closedAt };
  }

  it('closes a handshake at its deadline from accept, however slowly it keeps sending', async () => {
    const start = Date.now();
    const c = await open('127.0.0.20');
    // A HELLO's first bytes, one byte a second: an idle timer would never fire.
    const hello = Buffer.from('0000004101575654', 'hex');
    let i = 0;
    const drip = setInterval(() => {
      if (i < hello.length && c.closedAt() === undefined) c.s.write(hello.subarray(i, ++i));
    }, 1000);
    try {
      while (c.closedAt() === undefined && Date.now() - start < 12_000) await new Promise((r) => setTimeout(r, 100));
    } finally {
      clearInterval(drip);
      c.s.destroy();
    }
    expect(c.closedAt(), 'still open after 12 s').toBeDefined();
    expect(c.closedAt()! - start).toBeLessThan(8_000);
    expect(router.rejectedCounts().get('handshake_timeout')).toBeGreaterThan(0);
  }, 20_000);

  it('refuses, before authentication, a frame longer than any handshake message', async () => {
    const c = await open('127.0.0.21');
    const before = router.rejectedCounts().get('malformed') ?? 0;
    // Declares a 4 MiB frame (the post-handshake limit) and starts sending it.
    const head = Buffer.alloc(4 + 1024);
    head.writeUInt32BE(4 * 1024 * 1024, 0);
    c.s.write(head);
    const start = Date.now();
    while (c.closedAt() === undefined && Date.now() - start < 3_000) await new Promise((r) => setTimeout(r, 20));
    c.s.destroy();
    expect(c.closedAt(), 'a 4 MiB pre-auth frame was accepted for buffering').toBeDefined();
    expect(router.rejectedCounts().get('malformed') ?? 0).toBe(before + 1);
  });

  it('with every handshake place taken by stalled connections, a newcomer evicts the oldest instead of being locked out', async () => {
    const held: { s: net.Socket; closedAt: () => number | undefined }[] = [];
    try {
      for (let i = 0; i < 64; i++) {
        held.push(await open(`127.0.1.${1 + (i % 8)}`));
        await new Promise((r) => setTimeout(r, 25));
      }
      await new Promise((r) => setTimeout(r, 1100));
      expect(held.every((h) => h.closedAt() === undefined)).toBe(true);
      const newcomer = await open('127.0.1.100');
      held.push(newcomer);
      await new Promise((r) => setTimeout(r, 300));
      expect(newcomer.closedAt(), 'the newcomer was turned away').toBeUndefined();
      expect(held[0]!.closedAt(), 'the oldest handshake is still held').toBeDefined();
      expect(router.rejectedCounts().get('handshake_evicted')).toBeGreaterThanOrEqual(1);
    } finally {
      for (const h of held) h.s.destroy();
    }
  }, 20_000);
});
