import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admission } from '../../src/router/admission';
import { Router } from '../../src/router/router';
import { randomPeerName } from '../../src/router/peername';
import { loadSealer } from '../../src/crypto/seal';
import { silentLogger } from '../../src/log';

describe('Admission', () => {
  const limits = { maxPending: 5, maxPendingPerAddress: 3, ratePerSecond: 2, burst: 4 };

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

  it('stays bounded under a flood of distinct addresses', () => {
    const a = new Admission({ maxPending: 1e9, maxPendingPerAddress: 1, ratePerSecond: 1, burst: 1 });
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
      name: randomPeerName(randomBytes),
      nickname: 'adm',
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

  it('closes connections beyond 16 silent handshakes from one address at once, and counts them', async () => {
    const sockets: net.Socket[] = [];
    const closedEarly: boolean[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const s = net.connect({ host: '127.0.0.1', port });
        const idx = i;
        closedEarly[idx] = false;
        s.on('close', () => (closedEarly[idx] = true));
        s.on('error', () => undefined);
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        sockets.push(s);
      }
      await new Promise((r) => setTimeout(r, 500));
      // Silent clients are still within the 5 s handshake timeout: the first 16 are held.
      expect(closedEarly.slice(0, 16).every((c) => !c)).toBe(true);
      expect(closedEarly.slice(16).every((c) => c)).toBe(true);
      expect(router.rejectedCounts().get('too_many_handshakes_from_address')).toBe(4);
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
});
