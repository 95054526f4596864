/**
 * Reflection: a plain TCP relay that feeds a daemon's outgoing connection back into its
 * own listener. The daemon would play both roles of its own handshake (with the password
 * it has), see "connection to self", and used to drop the configured target for good.
 * Real sockets on loopback: a router, and a relay that pipes every connection it accepts
 * to the router's port.
 */
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { freePort } from '../free-port';
import { afterEach, describe, expect, it } from 'vitest';
import { Router } from '../../src/router/router';
import { Topology } from '../../src/router/topology';
import { randomPeerName } from '../../src/net/peername';
import { loadSealer } from '../../src/crypto/seal';
import { createLogger } from '../../src/log';

/** A TCP relay on 127.0.0.1: every accepted connection is piped to 127.0.0.1:to. */
async function relay(to: number): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((a) => {
    accepted++;
    const b = net.connect({ host: '127.0.0.1', port: to });
    for (const s of [a, b]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        a.destroy();
        b.destroy();
      });
    }
    a.pipe(b);
    b.pipe(a);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!fn()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a handshake reflected back into its own daemon by a TCP relay', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  for (const password of [Buffer.from('reflection test password'), undefined]) {
    it(`fails, and the configured target stays (${password ? 'with' : 'without'} a password), logged at warn`, async () => {
      const port = await freePort();
      const lines: string[] = [];
      const router = new Router({
        topology: new Topology({ name: randomPeerName(randomBytes), nickname: 'self' }),
        bindAddress: '127.0.0.1',
        port,
        log: createLogger('debug', { write: (l) => void lines.push(l) }),
        security: { password, sealer: loadSealer(), trusts: () => false },
      });
      await router.listen();
      cleanups.push(() => router.stop());
      const r = await relay(port);
      cleanups.push(() => r.close());
      const target = `127.0.0.1:${r.port}`;

      router.connect([target]);
      await until('the relay to carry a connection', () => r.accepted() >= 1);
      await until(
        'the reflected handshake to end',
        () =>
          router.rejectedCounts().get('reflected_handshake') !== undefined ||
          !router.targetStatus().some((x) => x.address === target),
      );
      // Give a wrongly completed handshake time to drop the target, as it used to.
      await new Promise((res) => setTimeout(res, 1000));

      const t = router.targetStatus().find((x) => x.address === target);
      expect(t, 'the configured target is still there').toBeDefined();
      expect(t!.source).toBe('connect');
      expect(t!.state).not.toBe('connected');
      expect(t!.lastError).toMatch(/reflected handshake|connection to self/);
      expect(router.rejectedCounts().get('reflected_handshake')).toBeGreaterThan(0);
      // Nobody joined: no peer but ourselves, no ready connection.
      expect(router.peerStatus()).toHaveLength(1);
      expect(router.connectionStatus().filter((c) => c.state === 'established')).toHaveLength(0);
      expect(
        lines.some((l) => / warn /.test(l) && /own ephemeral key|connection to self/.test(l)),
        lines.join(''),
      ).toBe(true);
      // Retried at the slow pace, not dropped: still listed with a retry scheduled.
      expect(t!.state === 'waiting' ? t!.retryInMs : 0).toBeGreaterThan(5_000);
    });
  }
});
