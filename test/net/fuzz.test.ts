/**
 * Hostile underlay: while two containers ping each other across two hosts, a third
 * namespace on the underlay throws random and mutated datagrams at UDP 6783 and junk at
 * TCP 6783 for about ten seconds. The daemons must stay up, keep forwarding, and count
 * what they dropped.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import type { RouterStatus } from '../../src/router/status';
import {
  encode as encodeControl,
  MessageType,
  PROTOCOL_MAX_VERSION,
  PROTOCOL_MIN_VERSION,
} from '../../src/router/control-codec';
import {
  encode as encodeDatagram,
  DATAGRAM_HEADER_LENGTH,
  DatagramKind,
  OFFLOAD_LENGTH,
} from '../../src/datapath/sleeve/codec';
import { parsePeerName, type PeerName } from '../../src/net/peername';
import { type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const PORT = 6783;
const UDP_PACKETS = 20_000;
const TCP_CONNECTIONS = 400;
const FUZZ_BUDGET_MS = 10_000;

/** Well-formed messages for the fuzzer to truncate, mutate and extend. */
function seeds(realPeers: PeerName[]): Buffer[] {
  const out: Buffer[] = [];
  const fake = 0x0a0b0c0d0e0f;
  for (const sender of [fake, ...realPeers]) {
    const frame = Buffer.alloc(60);
    frame.fill(0xff, 0, 6); // broadcast destination
    frame.writeUIntBE(0x02aabbccddee, 6, 6);
    frame.writeUInt16BE(0x0806, 12); // ARP
    out.push(
      encodeDatagram({
        kind: DatagramKind.Frames,
        sender,
        frames: [{ src: sender, dst: 0, network: 1, hops: 0, offload: Buffer.alloc(OFFLOAD_LENGTH), frame }],
      }),
    );
    out.push(encodeDatagram({ kind: DatagramKind.Fragment, sender, frameId: 7, offset: 0, total: 3000, chunk: frame }));
    out.push(encodeDatagram({ kind: DatagramKind.Heartbeat, sender, receiver: realPeers[0] ?? fake, seq: 1, echo: 0 }));
  }
  return out;
}

/**
 * Datagrams as host2 sends them to host1 (sender, source address, network, learned MACs):
 * what the express path (native/src/express.c) forwards without JS, small frames and a
 * fragment series, for the fuzzer to
 * mutate from host2's own address, so every check of its parser is exercised.
 */
function expressSeeds(from: PeerName, to: PeerName, network: number, srcMac: number, dstMac: number): Buffer[] {
  const out: Buffer[] = [];
  for (const size of [60, 98, 600]) {
    const frame = Buffer.alloc(size, 0x5a);
    frame.writeUIntBE(dstMac, 0, 6);
    frame.writeUIntBE(srcMac, 6, 6);
    frame.writeUInt16BE(0x0800, 12);
    const record = { src: from, dst: to, network, hops: 0, offload: Buffer.alloc(OFFLOAD_LENGTH), frame };
    out.push(encodeDatagram({ kind: DatagramKind.Frames, sender: from, frames: [record] }));
    out.push(encodeDatagram({ kind: DatagramKind.Frames, sender: from, frames: [record, record] }));
  }
  // A fragment series of one 3,000-byte frame (the express path rebuilds a clear peer's
  // series in C): each fragment is a seed, so offsets, ids and totals get mutated too.
  const frame = Buffer.alloc(3000, 0x5b);
  frame.writeUIntBE(dstMac, 0, 6);
  frame.writeUIntBE(srcMac, 6, 6);
  frame.writeUInt16BE(0x0800, 12);
  const record = { src: from, dst: to, network, hops: 0, offload: Buffer.alloc(OFFLOAD_LENGTH), frame };
  const unit = encodeDatagram({ kind: DatagramKind.Frames, sender: from, frames: [record] }).subarray(
    DATAGRAM_HEADER_LENGTH,
  );
  for (let offset = 0; offset < unit.length; offset += 1200) {
    const chunk = unit.subarray(offset, offset + 1200);
    out.push(
      encodeDatagram({ kind: DatagramKind.Fragment, sender: from, frameId: 7, offset, total: unit.length, chunk }),
    );
  }
  return out;
}

function helloSeed(): Buffer {
  return encodeControl({
    type: MessageType.Hello,
    hello: {
      minVersion: PROTOCOL_MIN_VERSION,
      maxVersion: PROTOCOL_MAX_VERSION,
      flags: 0,
      name: 0x0e0d0c0b0a09,
      uid: 42n,
      controlPort: PORT,
      dataPort: PORT,
      publicKey: Buffer.alloc(32, 7),
      nickname: 'fuzzer',
    },
  });
}

/** The fuzzer, run by node inside the fuzzer namespace. Plain JS: no build step there. */
const FUZZER_JS = String.raw`
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');
const cfg = JSON.parse(process.argv[2]);
const seeds = cfg.seeds.map((h) => Buffer.from(h, 'hex'));
const hello = Buffer.from(cfg.hello, 'hex');
const deadline = Date.now() + cfg.budgetMs;
const rnd = (n) => Math.floor(Math.random() * n);
const randomBytes = (n) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = rnd(256); return b; };
const pick = (a) => a[rnd(a.length)];

function udpPayload(i) {
  const seed = pick(seeds);
  switch (i % 5) {
    case 0: return randomBytes(rnd(2001));                       // random bytes, 0..2000
    case 1: return seed.subarray(0, rnd(seed.length));            // truncated valid prefix
    case 2: {                                                     // mutated valid datagram
      const b = Buffer.from(seed);
      for (let k = 0, n = 1 + rnd(4); k < n; k++) b[rnd(b.length)] = rnd(256);
      return b;
    }
    case 3: return Buffer.concat([seed.subarray(0, 12), randomBytes(rnd(1989))]); // good header, junk body
    default: return Buffer.concat([seed, randomBytes(rnd(2001 - seed.length))]);  // valid + trailing junk
  }
}

async function udp() {
  const sock = dgram.createSocket('udp4');
  let sent = 0, errors = 0;
  const send = (buf, ip) => new Promise((res) => sock.send(buf, cfg.port, ip, (err) => { if (err) errors++; else sent++; res(); }));
  for (let i = 0; i < cfg.udpPackets && Date.now() < deadline; i++) {
    await send(udpPayload(i), cfg.targets[i % cfg.targets.length]);
    if (i % 256 === 255) await new Promise((r) => setTimeout(r, 5));
  }
  sock.close();
  return { sent, errors };
}

function tcpPayload(i) {
  switch (i % 7) {
    case 0: return randomBytes(1 + rnd(2000));                                       // junk
    case 1: return Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]);                   // absurd length
    case 2: return Buffer.concat([hello.subarray(0, 9), randomBytes(1 + rnd(500))]); // magic, then garbage
    case 3: return Buffer.concat([hello, randomBytes(1 + rnd(500))]);                // whole hello, then garbage
    case 4: return hello.subarray(0, rnd(hello.length));                             // truncated hello, then silence
    case 5: { const b = Buffer.from(hello); b[rnd(b.length)] ^= 0xff; return b; }    // mutated hello
    default: return Buffer.alloc(0);                                                 // connect and hang up
  }
}

function tcpOne(i, ip) {
  return new Promise((resolve) => {
    const s = net.connect({ host: ip, port: cfg.port });
    let outcome = 'open';
    const done = (o) => { if (outcome === 'open') outcome = o; s.destroy(); resolve(outcome); };
    s.setTimeout(Math.max(100, Math.min(800, deadline - Date.now())), () => done('held'));
    s.on('error', () => done('error'));
    s.on('close', () => done('closed_by_peer'));
    s.on('data', () => {});
    s.on('connect', () => {
      const p = tcpPayload(i);
      if (p.length) s.write(p);
      if (i % 7 === 6) done('hung_up');
    });
  });
}

async function tcp() {
  const outcomes = {};
  let next = 0;
  const worker = async () => {
    while (next < cfg.tcpConnections && Date.now() < deadline) {
      const i = next++;
      const o = await tcpOne(i, cfg.targets[i % cfg.targets.length]);
      outcomes[o] = (outcomes[o] || 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return outcomes;
}

Promise.all([udp(), tcp()]).then(([u, t]) => {
  process.stdout.write(JSON.stringify({ udp: u, tcp: t }));
});
`;

/** Sum of all samples of a metric family (any labels). */
function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

function nonZeroDropLines(text: string): string[] {
  return text.split('\n').filter((line) => {
    if (line.startsWith('#')) return false;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    return m !== null && m[1]!.includes('drop') && Number(m[3]) > 0;
  });
}

describe('fuzzing the data and control ports', () => {
  let lab: Lab;
  let host1: Host;
  let host2: Host;
  let fuzzer: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    host1 = await lab.addHost('host1');
    host2 = await lab.addHost('host2');
    fuzzer = await lab.addHost('fuzz'); // on the underlay, no daemon
    c1 = await lab.addContainer(host1, 'c1');
    c2 = await lab.addContainer(host2, 'c2');
    await lab.launch(host1, [], ['--datapath', 'sleeve']);
    await lab.launch(host2, [host1.ip], ['--datapath', 'sleeve']);
    ip1 = (await lab.attach(host1, c1)).split('/')[0]!;
    ip2 = (await lab.attach(host2, c2)).split('/')[0]!;
    await lab.waitFor(async () => (await lab.ping(c1, ip2, { count: 1, timeoutS: 1 })).ok, {
      what: `c1 (${ip1}) to reach c2 (${ip2}) before fuzzing`,
      timeoutMs: 30_000,
    });
  });

  it('survives 20k junk datagrams and hundreds of junk connections, and counts the drops', async () => {
    const realPeers: PeerName[] = [];
    for (const h of [host1, host2]) {
      const st = await lab.weavetsJson<RouterStatus>(h, ['status']);
      realPeers.push(parsePeerName(st.name));
    }
    const script = path.join(lab.dir, 'fuzzer.js');
    fs.writeFileSync(script, FUZZER_JS);
    const cfg = {
      targets: [host1.ip, host2.ip],
      port: PORT,
      udpPackets: UDP_PACKETS,
      tcpConnections: TCP_CONNECTIONS,
      budgetMs: FUZZ_BUDGET_MS,
      seeds: seeds(realPeers).map((b) => b.toString('hex')),
      hello: helloSeed().toString('hex'),
    };

    // Containers keep pinging while the junk flies.
    const during = lab.ping(c1, ip2, { count: 40, intervalS: 0.25, timeoutS: 1 });
    const r = await lab.execOk(fuzzer, [process.execPath, script, JSON.stringify(cfg)], {
      timeoutMs: FUZZ_BUDGET_MS + 20_000,
    });
    const report = JSON.parse(r.stdout) as { udp: { sent: number; errors: number }; tcp: Record<string, number> };
    const pingDuring = await during;
    process.stderr.write(
      `fuzzer: ${JSON.stringify(report)}; ping during fuzz: ${pingDuring.received}/${pingDuring.sent}\n`,
    );
    expect(report.udp.sent).toBeGreaterThan(UDP_PACKETS * 0.9);
    expect(Object.values(report.tcp).reduce((a, b) => a + b, 0)).toBeGreaterThan(50);
    expect(pingDuring.received).toBeGreaterThan(0);

    // Both daemons are still up and answering.
    for (const h of [host1, host2]) {
      const pid = lab.daemonPid(h);
      expect(pid !== undefined && fs.existsSync(`/proc/${pid}`), `${h.name} daemon is gone`).toBe(true);
      const st = await lab.weavets(h, ['status']);
      expect(st.code, `${h.name}: ${st.stderr}`).toBe(0);
    }

    // Forwarding still works, both ways.
    const after = await lab.ping(c1, ip2, { count: 5 });
    expect(after.received, after.output).toBe(5);
    const back = await lab.ping(c2, ip1, { count: 3 });
    expect(back.received, back.output).toBe(3);

    // And the junk was counted, on both ports.
    for (const h of [host1, host2]) {
      const m = await lab.http(h, '/metrics');
      expect(m.status).toBe(200);
      expect(nonZeroDropLines(m.body).length, `${h.name}: no non-zero *drop* metric`).toBeGreaterThan(0);
      expect(
        metricSum(m.body, 'weavets_dropped_datagrams_total'),
        `${h.name}: weavets_dropped_datagrams_total`,
      ).toBeGreaterThan(0);
      expect(
        metricSum(m.body, 'weavets_control_rejected_total'),
        `${h.name}: weavets_control_rejected_total`,
      ).toBeGreaterThan(0);
    }
  }, 90_000);

  it("survives junk sent from a peer's own address with its name (the express path's parser), and keeps forwarding", async () => {
    const names: PeerName[] = [];
    for (const h of [host1, host2])
      names.push(parsePeerName((await lab.weavetsJson<RouterStatus>(h, ['status'])).name));
    const networks = await lab.weavetsJson<{ name: string; id: number }[]>(host1, ['network', 'ls']);
    const network = networks[0]!.id;
    const macOf = async (ns: Namespace): Promise<number> =>
      parseInt((await lab.execOk(ns, ['cat', '/sys/class/net/eth0/address'])).stdout.trim().replace(/:/g, ''), 16);
    const script = path.join(lab.dir, 'fuzzer.js');
    fs.writeFileSync(script, FUZZER_JS);
    const before = metricSum((await lab.http(host1, '/metrics')).body, 'weavets_dropped_datagrams_total');
    const cfg = {
      targets: [host1.ip],
      port: PORT,
      udpPackets: UDP_PACKETS,
      tcpConnections: 0,
      budgetMs: FUZZ_BUDGET_MS,
      seeds: expressSeeds(names[1]!, names[0]!, network, await macOf(c2), await macOf(c1)).map((b) =>
        b.toString('hex'),
      ),
      hello: helloSeed().toString('hex'),
    };
    const during = lab.ping(c1, ip2, { count: 40, intervalS: 0.25, timeoutS: 1 });
    // From host2's namespace: the source address the daemons accept host2's datagrams from.
    const r = await lab.execOk(host2, [process.execPath, script, JSON.stringify(cfg)], {
      timeoutMs: FUZZ_BUDGET_MS + 20_000,
    });
    const report = JSON.parse(r.stdout) as { udp: { sent: number; errors: number } };
    const pingDuring = await during;
    process.stderr.write(`fuzzer as host2: ${JSON.stringify(report)}; ping during: ${pingDuring.received}/40\n`);
    expect(report.udp.sent).toBeGreaterThan(UDP_PACKETS * 0.9);
    expect(pingDuring.received).toBeGreaterThan(0);
    const pid = lab.daemonPid(host1);
    expect(pid !== undefined && fs.existsSync(`/proc/${pid}`), 'host1 daemon is gone').toBe(true);
    const after = await lab.ping(c1, ip2, { count: 5 });
    expect(after.received, after.output).toBe(5);
    const back = await lab.ping(c2, ip1, { count: 3 });
    expect(back.received, back.output).toBe(3);
    // Malformed ones were counted (the well-formed ones were delivered to c1's bridge).
    expect(metricSum((await lab.http(host1, '/metrics')).body, 'weavets_dropped_datagrams_total')).toBeGreaterThan(
      before,
    );
  }, 90_000);
});
