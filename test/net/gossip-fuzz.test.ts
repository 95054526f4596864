/**
 * Hostile gossip: three connected daemons (no password, so anyone reaching TCP 6783 may
 * handshake), and a fuzzer on the underlay that joins each of them as a fake peer and
 * sends gossip built field by field: mostly well-formed messages in which one field takes
 * a hostile value (port 0, version 2^53-1, a claim about a real peer at the version
 * ceiling, invalid UTF-8, an edge to itself, ...), some with random bytes flipped on top.
 * Whatever a daemon accepts it relays to the others, so one bad entry that gets through
 * reaches every daemon. None may die, and the mesh must still carry traffic afterwards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import type { RouterStatus } from '../../src/router/status';
import { PROTOCOL_MAX_VERSION } from '../../src/router/control-codec';
import { parsePeerName, type PeerName } from '../../src/net/peername';
import { type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const PORT = 6783;
const FUZZ_BUDGET_MS = 12_000;
/** The version ceiling of docs/protocol-gossip.md (MAX_GOSSIP_VERSION), as a wire value to probe around. */
const VERSION_CEILING = 2 ** 52;

/** The fuzzer, run by node inside the fuzzer namespace. Plain JS: no build step there. */
const FUZZER_JS = String.raw`
'use strict';
const net = require('node:net');
const cfg = JSON.parse(process.argv[2]);
const deadline = Date.now() + cfg.budgetMs;
const rnd = (n) => Math.floor(Math.random() * n);
const pick = (a) => a[rnd(a.length)];
const randomBytes = (n) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = rnd(256); return b; };
const realPeers = cfg.realPeers; // numbers (48-bit)
const fakeName = () => 0x0a0000000000 + rnd(0xffffff) + 1;

function frame(type, body) {
  const f = Buffer.alloc(5 + body.length);
  f.writeUInt32BE(1 + body.length, 0);
  f[4] = type;
  body.copy(f, 5);
  return f;
}

function hello(name) {
  const nick = Buffer.from('fuzzer');
  const b = Buffer.alloc(59 + nick.length);
  b.writeUInt32BE(0x57565453, 0);
  b[4] = 1; b[5] = cfg.protocolVersion;
  b.writeUInt16BE(0, 6);
  b.writeUIntBE(name, 8, 6);
  b.writeBigUInt64BE(BigInt(rnd(2 ** 31)), 14);
  b.writeUInt16BE(cfg.port, 22);
  b.writeUInt16BE(cfg.port, 24);
  randomBytes(32).copy(b, 26);
  b[58] = nick.length;
  nick.copy(b, 59);
  return frame(1, b);
}

// Hostile values per field, next to ordinary ones. Addresses stay inside the lab's
// underlay (or are not addresses at all): a daemon may dial what it accepts.
const labIp = () => pick([...cfg.hostIps, '192.0.2.' + (200 + rnd(50))]);
const ADDRESSES = [
  () => labIp() + ':' + cfg.port,
  () => labIp() + ':0',
  () => labIp() + ':65536',
  () => labIp() + ':99999',
  () => labIp() + ':-1',
  () => labIp(),
  () => ':' + cfg.port,
  () => '',
  () => 'host.invalid:' + cfg.port,
  () => '[::1]:0',
  () => '::1:' + cfg.port,
  () => labIp() + ':0' + cfg.port,
  () => Buffer.from([0xff, 0xfe, 0x3a, 0x30]).toString('latin1'),
];
const VERSIONS = [1n, 2n, 7n, BigInt(cfg.maxVersion) - 1n, BigInt(cfg.maxVersion), BigInt(cfg.maxVersion) + 1n,
  2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n, 0n];
const NICKS = [Buffer.from('fake'), Buffer.from([0xff]), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from('a\nb'),
  Buffer.alloc(255, 0x41), Buffer.from('bé')];

function str(b) { return Buffer.concat([Buffer.from([Math.min(255, b.length)]), b.subarray(0, 255)]); }

function entry(name, names) {
  const parts = [];
  const h = Buffer.alloc(22);
  h.writeUIntBE(name, 0, 6);
  h.writeBigUInt64BE(BigInt(rnd(2 ** 31)) * BigInt(rnd(2 ** 31) + 1), 6);
  h.writeBigUInt64BE(rnd(3) === 0 ? pick(VERSIONS) : BigInt(1 + rnd(1000)), 14);
  parts.push(h, str(rnd(3) === 0 ? pick(NICKS) : Buffer.from('fake')));
  const n = rnd(4);
  const cnt = Buffer.alloc(2);
  cnt.writeUInt16BE(n, 0);
  parts.push(cnt);
  for (let i = 0; i < n; i++) {
    const e = Buffer.alloc(7);
    e.writeUIntBE(rnd(8) === 0 ? name : pick(names), 0, 6);
    e[6] = rnd(8) === 0 ? rnd(256) : 2 | rnd(2);
    parts.push(e, str(Buffer.from(rnd(2) === 0 ? pick(ADDRESSES)() : labIp() + ':' + cfg.port, 'latin1')));
  }
  return Buffer.concat(parts);
}

function gossip(self) {
  const names = [self, ...realPeers, fakeName()];
  // Entries about ourselves (the fake peer), about real peers (a forged claim), and
  // about made-up ones; never two about the same name unless a mutation makes it so.
  const subjects = [...new Set([self, pick(realPeers), fakeName(), ...(rnd(2) ? [pick(realPeers)] : [])])];
  const body = Buffer.concat([Buffer.from([1, 0, subjects.length]), ...subjects.map((s) => entry(s, names))]);
  if (rnd(4) === 0) for (let k = 0, n = 1 + rnd(3); k < n; k++) body[rnd(body.length)] = rnd(256);
  return frame(4, body);
}

const stats = { sessions: 0, ready: 0, sent: 0, closedByPeer: 0, errors: 0 };

function session(ip) {
  return new Promise((resolve) => {
    stats.sessions++;
    const self = fakeName();
    const s = net.connect({ host: ip, port: cfg.port });
    let buf = Buffer.alloc(0);
    let ready = false;
    let timer;
    const done = () => { clearInterval(timer); s.destroy(); resolve(); };
    s.setTimeout(3000, done);
    s.on('error', () => { stats.errors++; done(); });
    s.on('close', () => { stats.closedByPeer++; done(); });
    s.on('connect', () => s.write(hello(self)));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (ready || buf.length < 5) return;
      ready = true;
      stats.ready++;
      // The daemon's HELLO is here: without a password we are now a peer. Send gossip
      // until it throws us out (or the budget ends).
      timer = setInterval(() => {
        if (Date.now() > deadline) return done();
        s.write(gossip(self));
        stats.sent++;
      }, 20);
    });
  });
}

async function worker(ip) {
  while (Date.now() < deadline) {
    await session(ip);
    await new Promise((r) => setTimeout(r, 60));
  }
}

Promise.all(cfg.hostIps.flatMap((ip) => [worker(ip), worker(ip)])).then(() => {
  process.stdout.write(JSON.stringify(stats));
});
`;

function metricValue(text: string, name: string, label: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(label)) sum += Number(line.split(/\s+/).pop());
  }
  return sum;
}

describe('structure-aware gossip fuzzing against three connected daemons', () => {
  let lab: Lab;
  let hosts: Host[] = [];
  let fuzzer: Host;
  let c1: Namespace;
  let c3: Namespace;
  let ip1 = '';
  let ip3 = '';

  useLab(
    async (l) => {
      lab = l;
      lab.requireCli();
      hosts = [await lab.addHost('host1'), await lab.addHost('host2'), await lab.addHost('host3')];
      fuzzer = await lab.addHost('fuzz'); // on the underlay, no daemon
      c1 = await lab.addContainer(hosts[0]!, 'c1');
      c3 = await lab.addContainer(hosts[2]!, 'c3');
      await lab.launch(hosts[0]!, [], ['--datapath', 'sleeve']);
      await lab.launch(hosts[1]!, [hosts[0]!.ip], ['--datapath', 'sleeve']);
      await lab.launch(hosts[2]!, [hosts[1]!.ip], ['--datapath', 'sleeve']);
      ip1 = (await lab.attach(hosts[0]!, c1)).split('/')[0]!;
      ip3 = (await lab.attach(hosts[2]!, c3)).split('/')[0]!;
      await lab.waitFor(async () => (await lab.ping(c1, ip3, { count: 1, timeoutS: 1 })).ok, {
        what: `c1 (${ip1}) to reach c3 (${ip3}) before fuzzing`,
        timeoutMs: 45_000,
      });
    },
    { timeoutMs: 150_000 },
  );

  it('no daemon dies, hostile entries are refused before they are relayed, and the mesh still works', async () => {
    const realPeers: PeerName[] = [];
    for (const h of hosts) realPeers.push(parsePeerName((await lab.weavetsJson<RouterStatus>(h, ['status'])).name));
    const pids = hosts.map((h) => lab.daemonPid(h));
    const script = path.join(lab.dir, 'gossip-fuzzer.js');
    fs.writeFileSync(script, FUZZER_JS);
    const cfg = {
      hostIps: hosts.map((h) => h.ip),
      port: PORT,
      realPeers,
      budgetMs: FUZZ_BUDGET_MS,
      maxVersion: VERSION_CEILING,
      protocolVersion: PROTOCOL_MAX_VERSION,
    };
    const r = await lab.execOk(fuzzer, [process.execPath, script, JSON.stringify(cfg)], {
      timeoutMs: FUZZ_BUDGET_MS + 30_000,
    });
    const stats = JSON.parse(r.stdout) as { sessions: number; ready: number; sent: number };
    process.stderr.write(`gossip fuzzer: ${r.stdout}\n`);
    // Every daemon is the same process as before and still answers.
    for (const [i, h] of hosts.entries()) {
      const pid = lab.daemonPid(h);
      expect(pid, `${h.name}: pid file`).toBe(pids[i]);
      expect(fs.existsSync(`/proc/${pid}`), `${h.name} daemon is gone`).toBe(true);
      const st = await lab.weavets(h, ['status']);
      expect(st.code, `${h.name}: ${st.stderr}`).toBe(0);
    }
    expect(stats.ready, 'the fuzzer completed handshakes').toBeGreaterThan(10);
    expect(stats.sent, 'the fuzzer sent gossip').toBeGreaterThan(50);

    // Hostile gossip was refused and counted.
    let refused = 0;
    for (const h of hosts)
      refused += metricValue(
        (await lab.http(h, '/metrics')).body,
        'weavets_control_rejected_total',
        'reason="bad_gossip"',
      );
    expect(refused).toBeGreaterThan(0);

    // The mesh still carries traffic end to end (c1 on host1, c3 on host3, two hops or one).
    await lab.waitFor(async () => (await lab.ping(c1, ip3, { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c3 after the fuzzing',
      timeoutMs: 30_000,
    });
    const back = await lab.ping(c3, ip1, { count: 3 });
    expect(back.received, back.output).toBe(3);
  }, 120_000);
});
