/**
 * CPU cost of one password handshake, one side (what a daemon spends per connection
 * that gets as far as KEYX), measured in process, each step and the total.
 *
 *   npx tsx bench/handshake.ts [--n 200]
 *
 * The reference row is one X25519 scalar multiplication (tweetnacl) in the same run;
 * the ratio column is step / reference.
 */
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { cpaceGenerator, cpaceKeyPair, cpaceSharedKey } from '../src/crypto/cpace';
import { confirmTag, deriveSessionKeys, transcriptHash } from '../src/crypto/kdf';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const N = arg('n', 200);

function perOp(fn: () => void): number {
  for (let i = 0; i < 5; i++) fn(); // warm up
  const t0 = process.cpuUsage();
  for (let i = 0; i < N; i++) fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000 / N;
}

const password = Buffer.from('correct horse battery staple');
const hellos = [randomBytes(80), randomBytes(80)];
const peer = nacl.box.keyPair();
const peerShare = cpaceKeyPair(cpaceGenerator(password, transcriptHash(hellos))).share;

const rows: [string, number][] = [];
rows.push(['X25519 scalar multiplication (reference)', perOp(() => nacl.scalarMult(randomBytes(32), peer.publicKey))]);
rows.push(['ephemeral key pair (per connection, at accept)', perOp(() => nacl.box.keyPair())]);
rows.push([
  'CPace generator (SHA-512 + Elligator 2, BigInt)',
  perOp(() => cpaceGenerator(password, transcriptHash(hellos))),
]);
const g = cpaceGenerator(password, transcriptHash(hellos));
rows.push(['CPace key pair (one scalar multiplication)', perOp(() => cpaceKeyPair(g))]);
const mine = cpaceKeyPair(g);
rows.push([
  'CPace shared key + ephemeral DH',
  perOp(() => {
    cpaceSharedKey(mine.secret, peerShare);
    nacl.scalarMult(peer.secretKey, peer.publicKey);
  }),
]);
rows.push([
  'transcript + HKDF (6 keys) + FINISHED tag',
  perOp(() => {
    const th = transcriptHash([...hellos, mine.share, peerShare]);
    const k = deriveSessionKeys(randomBytes(64), th, true);
    confirmTag(k.confirmSend, th);
  }),
]);
rows.push([
  'whole handshake, one side',
  perOp(() => {
    const e = nacl.box.keyPair();
    const sid = transcriptHash(hellos);
    const kp = cpaceKeyPair(cpaceGenerator(password, sid));
    const key = cpaceSharedKey(kp.secret, peerShare);
    const dh = Buffer.from(nacl.scalarMult(e.secretKey, peer.publicKey));
    const th = transcriptHash([...hellos, kp.share, peerShare]);
    const k = deriveSessionKeys(Buffer.concat([key, dh]), th, true);
    confirmTag(k.confirmSend, th);
  }),
]);

const ref = rows[0]![1];
console.log(`| step (${N} runs each, CPU time) | ms | vs one scalar mult |`);
console.log('|---|---|---|');
for (const [name, ms] of rows) console.log(`| ${name} | ${ms.toFixed(2)} | ${(ms / ref).toFixed(2)}× |`);
