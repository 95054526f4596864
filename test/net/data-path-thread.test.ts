/**
 * The data path thread (native/src/iothread.c) on loopback sockets, without a daemon: what
 * its express path does not take reaches the socket's JS callback whole and in order
 * (the hand-off), stopping and restarting reading pauses it, closing the path gives the
 * socket back to the event loop, and a process that exits with the thread running ends
 * cleanly. Datagrams here are not sleeve datagrams, so the express path takes none of
 * them: every one goes through the hand-off.
 */
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { ExpressPath, UdpBatchSocket } from '../../src/native/index';

const SELF = { high: 0x0a0b0c, low: 0x0d0e0f };
const OPTS = { nowMs: Date.now(), macMaxAgeMs: 60_000, countFlows: false, thread: true };

/** Every datagram's payload (a decimal sequence number) as the socket's callback sees it. */
function collector(sock: UdpBatchSocket): { seen: number[]; firsts: number[] } {
  const seen: number[] = [];
  const firsts: number[] = [];
  sock.startReading((count, first) => {
    firsts.push(first);
    for (let i = first; i < count; i++) {
      const len = sock.rxLengths[i]!;
      const at = i * sock.slotSize;
      seen.push(Number(sock.rxBuf.toString('utf8', at, at + len)));
    }
  });
  return { seen, firsts };
}

/** Send `from..to-1` as decimal payloads to the socket, in bursts that fill its batches. */
async function sendNumbers(port: number, from: number, to: number): Promise<void> {
  const out = dgram.createSocket('udp4');
  try {
    for (let n = from; n < to; n++) {
      await new Promise<void>((resolve, reject) =>
        out.send(String(n), port, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
      );
      if (n % 64 === 63) await new Promise((r) => setImmediate(r));
    }
  } finally {
    out.close();
  }
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Threads of this process named weavets-dp. */
function dataPathThreads(): number {
  return fs
    .readdirSync('/proc/self/task')
    .filter((tid) => fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'weavets-dp').length;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe('data path thread', () => {
  const open: { close(): void }[] = [];
  afterEach(() => {
    for (const o of open.splice(0).reverse()) o.close();
  });

  it('hands what C leaves to the JS callback, every datagram once and in order', async () => {
    const sock = UdpBatchSocket.bind('127.0.0.1', 0, { slots: 16 });
    open.push(sock);
    const xp = ExpressPath.create(sock, SELF, OPTS);
    open.push(xp);
    expect(dataPathThreads()).toBe(1);
    const { seen, firsts } = collector(sock);
    await sendNumbers(sock.port, 0, 3000);
    await until('3000 datagrams', () => seen.length >= 3000);
    expect(seen).toEqual(range(0, 3000));
    // None was a sleeve datagram: C took none, so every batch started at entry 0.
    expect(firsts.every((f) => f === 0)).toBe(true);
    expect(xp.counters()).toEqual({ sent: 0, delivered: 0, superframesSent: 0, superframesDelivered: 0 });
  });

  it('delivers nothing while reading is stopped, and everything queued once it restarts', async () => {
    const sock = UdpBatchSocket.bind('127.0.0.1', 0, { slots: 16 });
    open.push(sock);
    open.push(ExpressPath.create(sock, SELF, OPTS));
    const { seen } = collector(sock);
    await sendNumbers(sock.port, 0, 100);
    await until('the first 100', () => seen.length >= 100);
    sock.stopReading();
    await sendNumbers(sock.port, 100, 200);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.length).toBe(100);
    const rest = collector(sock);
    await until('the queued 100', () => rest.seen.length >= 100);
    expect(rest.seen).toEqual(range(100, 200));
  });

  it('gives the socket back to the event loop when the path closes', async () => {
    const sock = UdpBatchSocket.bind('127.0.0.1', 0, { slots: 16 });
    open.push(sock);
    const xp = ExpressPath.create(sock, SELF, OPTS);
    const { seen } = collector(sock);
    await sendNumbers(sock.port, 0, 50);
    await until('50 through the thread', () => seen.length >= 50);
    expect(dataPathThreads()).toBe(1);
    xp.close();
    xp.close(); // idempotent
    // Stopped and joined; the kernel lists a joined thread for a moment more.
    await until('the data path thread to end', () => dataPathThreads() === 0, 2000);
    await sendNumbers(sock.port, 50, 150);
    await until('100 more on the loop', () => seen.length >= 150);
    expect(seen).toEqual(range(0, 150));
  });

  it('a process that exits with the thread running and traffic arriving ends cleanly', () => {
    // The addon stops and joins the thread in its environment cleanup; without that the
    // process would crash or hang at exit with the thread still in epoll.
    const script = `
      const { ExpressPath, UdpBatchSocket } = require(${JSON.stringify(path.join(__dirname, '../../src/native/index.ts'))});
      const dgram = require('node:dgram');
      const sock = UdpBatchSocket.bind('127.0.0.1', 0, { slots: 16 });
      ExpressPath.create(sock, { high: 1, low: 2 }, { nowMs: Date.now(), macMaxAgeMs: 1000, countFlows: false, thread: true });
      let got = 0;
      sock.startReading((count, first) => { got += count - first; });
      const out = dgram.createSocket('udp4');
      const timer = setInterval(() => { for (let i = 0; i < 50; i++) out.send('x', sock.port, '127.0.0.1'); }, 1);
      setTimeout(() => { if (got === 0) { console.error('nothing arrived'); process.exit(3); } process.exit(0); }, 300);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
  });
});
