/**
 * secretbox throughput: sodium-native against tweetnacl, same run, same buffers.
 *
 *   npx tsx bench/crypto.ts [--seconds 1]
 *
 * For each message size, seals (and opens) one message over and over into a reused
 * output buffer for about `seconds` per cell and reports MB/s of plaintext (10^6 bytes).
 * Prints a markdown table; the ratio column is sodium / tweetnacl.
 */
import { randomBytes } from 'node:crypto';

import {
  NONCE_LENGTH,
  SEAL_OVERHEAD,
  sodiumSealer,
  tweetnaclSealer,
  writeNonce,
  type Sealer,
} from '../src/crypto/seal';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const SECONDS = arg('seconds', 1);
const SIZES: Array<[string, number]> = [
  ['64 KiB', 65536],
  ['1400 B', 1400],
];

function rate(op: 'seal' | 'open', s: Sealer, size: number): number {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(NONCE_LENGTH);
  const msg = randomBytes(size);
  const box = Buffer.alloc(size + SEAL_OVERHEAD);
  const plain = Buffer.alloc(size);
  writeNonce(nonce, 1);
  s.seal(box, 0, msg, 0, size, nonce, key);
  const batch = Math.max(1, Math.floor(4_000_000 / size));
  let bytes = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(SECONDS * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < batch; i++) {
      if (op === 'seal') s.seal(box, 0, msg, 0, size, nonce, key);
      else if (!s.open(plain, 0, box, 0, size + SEAL_OVERHEAD, nonce, key)) throw new Error('open failed');
    }
    bytes += batch * size;
    elapsed = process.hrtime.bigint() - start;
  }
  return bytes / (Number(elapsed) / 1e9) / 1e6;
}

function main(): void {
  const sodium = sodiumSealer();
  const tweet = tweetnaclSealer();
  const rows: string[] = [];
  for (const [label, size] of SIZES) {
    for (const op of ['seal', 'open'] as const) {
      // warm up both so the JIT has settled before measuring
      rate(op, sodium, size);
      rate(op, tweet, size);
      const a = rate(op, sodium, size);
      const b = rate(op, tweet, size);
      rows.push(`| ${op} | ${label} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(a / b).toFixed(1)}x |`);
    }
  }
  console.log(`secretbox (XSalsa20-Poly1305), node ${process.version}, ${SECONDS}s per cell\n`);
  console.log('| op | message | sodium-native MB/s | tweetnacl MB/s | ratio |');
  console.log('|---|---|---:|---:|---:|');
  for (const r of rows) console.log(r);
}

main();
