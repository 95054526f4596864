/**
 * TAP receive rate: the addon's batched read (libuv poll, read() until EAGAIN in C, one
 * JS call per batch) against one fs.readSync per frame on the same fd, same run.
 *
 *   npx tsx bench/native-io.ts [--seconds 2] [--burst 256]
 *
 * Setup, all inside a namespace of its own: TAP "in" and TAP "out" on a bridge. Bursts
 * of 60-byte frames to an unknown unicast MAC are written into "in" with writeBatch;
 * the bridge floods them to "out", whose fd is what is measured. The write side is the
 * same for both rows, so the difference is the read path. Prints a markdown table.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import { TapDevice } from '../src/native/index';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const SECONDS = arg('seconds', 2);
const BURST = arg('burst', 256); // below tun's 500-frame queue, so nothing is dropped

const PREFIX = `wtnat${crypto.randomBytes(2).toString('hex')}`;
const NS = `${PREFIX}-b`;
const ip = (...a: string[]): string => execFileSync('ip', a, { encoding: 'utf8' });

function cleanup(): void {
  try {
    ip('netns', 'del', NS);
  } catch {
    // not created or already gone
  }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

function frames(): { buf: Buffer; offsets: Uint32Array; lengths: Uint32Array } {
  const buf = Buffer.alloc(60 * BURST);
  const offsets = new Uint32Array(BURST);
  const lengths = new Uint32Array(BURST).fill(60);
  for (let i = 0; i < BURST; i++) {
    offsets[i] = i * 60;
    Buffer.from([0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5]).copy(buf, i * 60);
  }
  return { buf, offsets, lengths };
}

async function main(): Promise<void> {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', NS, 'link', 'set', 'br0', 'up');
  const tin = TapDevice.open(`${PREFIX}i`);
  const tout = TapDevice.open(`${PREFIX}o`);
  for (const t of [tin, tout]) {
    ip('link', 'set', t.name, 'netns', NS);
    ip('-n', NS, 'link', 'set', t.name, 'master', 'br0');
    ip('-n', NS, 'link', 'set', t.name, 'up');
  }
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
  const { buf, offsets, lengths } = frames();

  // Row 1: batched native reads. Each callback that completes a burst writes the next.
  const batched = await new Promise<{ frames: number; batches: number; secs: number }>((resolve) => {
    let pending = 0;
    let total = 0;
    let batches = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(Math.round(SECONDS * 1e9));
    const burst = (): void => {
      pending += tin.writeBatch(buf, offsets, lengths, BURST);
    };
    tout.startReading((count) => {
      batches++;
      total += count;
      pending -= count;
      if (pending > 0) return;
      const now = process.hrtime.bigint();
      if (now < end) burst();
      else {
        tout.stopReading();
        resolve({ frames: total, batches, secs: Number(now - start) / 1e9 });
      }
    });
    burst();
  });

  // Row 2: one fs.readSync per frame until EAGAIN, then the next burst.
  const slot = Buffer.alloc(65664);
  let sync = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(SECONDS * 1e9));
  let now = start;
  while (now < end) {
    tin.writeBatch(buf, offsets, lengths, BURST);
    for (;;) {
      try {
        fs.readSync(tout.fd, slot, 0, slot.length, null);
        sync++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw err;
      }
    }
    now = process.hrtime.bigint();
  }
  const syncSecs = Number(now - start) / 1e9;

  tin.close();
  tout.close();
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  console.log(`| read path (${BURST}-frame bursts, 60-byte frames) | frames/s | frames/JS call |`);
  console.log('|---|---:|---:|');
  console.log(
    `| TapDevice.startReading (batched, native) | ${fmt(batched.frames / batched.secs)} | ${(batched.frames / batched.batches).toFixed(1)} |`,
  );
  console.log(`| fs.readSync per frame (reference) | ${fmt(sync / syncSecs)} | 1 |`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
