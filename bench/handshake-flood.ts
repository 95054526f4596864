/**
 * A daemon under a handshake flood: CPU, memory, and whether a peer with the right
 * password still gets in.
 *
 *   npx tsx bench/handshake-flood.ts [--seconds 30] [--addresses 10] [--per-address 16]
 *
 * Lab: host "victim" runs weavets with a network password; host "att" on the same
 * underlay floods TCP 6783 from --addresses source addresses, --per-address connections
 * at a time from each, three kinds mixed:
 *   cpu  - a HELLO with the password flag and a random KEYX share at once, then hang up
 *          and reconnect: the daemon does a whole key exchange for nothing;
 *   hold - the start of a HELLO, then one byte every 3 s (an idle timer never fires);
 *   mem  - a frame header declaring 4 MiB, then 64 KiB every 100 ms.
 * Five seconds into the flood, host "peer" is launched with the password and the
 * victim as its target; the time from its daemon being ready until its connection is
 * established is measured.
 *
 * The reference column is the same daemon idle, measured in the same run just before the
 * flood; the ratio column is flood / idle. CPU is the daemon's user+system time over the
 * window, in % of one core; memory is its peak resident set size (VmRSS, sampled every
 * 250 ms) and VmHWM at the end.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ConnectionStatus } from '../src/router/status';
import { createLab, type Host, type Lab } from '../test/net/harness';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const SECONDS = arg('seconds', 30);
const ADDRESSES = arg('addresses', 10);
const PER_ADDRESS = arg('per-address', 16);
const CLK_TCK = 100;

const FLOOD_JS = String.raw`
'use strict';
const net = require('node:net');
const crypto = require('node:crypto');
const cfg = JSON.parse(process.argv[2]);
const deadline = Date.now() + cfg.seconds * 1000;
const stats = { cpu: 0, hold: 0, mem: 0, memBytes: 0, refusedFast: 0 };

function hello() {
  const nick = Buffer.from('flood');
  const b = Buffer.alloc(5 + 59 + nick.length);
  b.writeUInt32BE(1 + 59 + nick.length, 0);
  b[4] = 1;
  b.writeUInt32BE(0x57565453, 5);
  b[9] = 1; b[10] = 1;
  b.writeUInt16BE(1, 11); // password flag
  const name = crypto.randomBytes(6); name[0] = (name[0] & 0xfe) | 0x02;
  name.copy(b, 13);
  crypto.randomBytes(8).copy(b, 19);
  b.writeUInt16BE(6783, 27);
  b.writeUInt16BE(6783, 29);
  crypto.randomBytes(32).copy(b, 31);
  b[63] = nick.length;
  nick.copy(b, 64);
  return b;
}
function keyx() {
  const b = Buffer.alloc(5 + 32);
  b.writeUInt32BE(33, 0);
  b[4] = 6;
  crypto.randomBytes(32).copy(b, 5);
  return b;
}

function one(kind, from) {
  return new Promise((resolve) => {
    const s = net.connect({ host: cfg.target, port: 6783, localAddress: from });
    const timers = [];
    const t0 = Date.now();
    const done = () => { for (const t of timers) clearInterval(t); s.destroy(); resolve(Date.now() - t0); };
    s.on('error', done);
    s.on('close', done);
    s.on('data', () => {});
    s.on('connect', () => {
      if (kind === 'cpu') {
        stats.cpu++;
        s.write(Buffer.concat([hello(), keyx()]));
        timers.push(setTimeout(done, 300));
      } else if (kind === 'hold') {
        stats.hold++;
        const h = hello();
        let i = 0;
        timers.push(setInterval(() => { if (i < h.length - 1) s.write(h.subarray(i, ++i)); }, 3000));
      } else {
        stats.mem++;
        const head = Buffer.alloc(5);
        head.writeUInt32BE(4 * 1024 * 1024, 0);
        head[4] = 1;
        s.write(head);
        const chunk = Buffer.alloc(65536, 0x41);
        let sent = 0;
        timers.push(setInterval(() => {
          if (sent < 4 * 1024 * 1024 - 65536) { s.write(chunk); sent += 65536; stats.memBytes += 65536; }
        }, 100));
      }
    });
  });
}

async function worker(kind, from) {
  while (Date.now() < deadline) {
    const ms = await one(kind, from);
    if (ms < 50) { stats.refusedFast++; await new Promise((r) => setTimeout(r, 20)); }
  }
}

const kinds = ['cpu', 'cpu', 'cpu', 'cpu', 'cpu', 'cpu', 'hold', 'hold', 'hold', 'hold', 'hold', 'mem', 'mem', 'mem', 'mem', 'mem'];
const workers = [];
for (const from of cfg.sources) for (let i = 0; i < cfg.perAddress; i++) workers.push(worker(kinds[i % kinds.length], from));
const stop = setTimeout(() => { process.stdout.write(JSON.stringify(stats)); process.exit(0); }, cfg.seconds * 1000 + 500);
Promise.all(workers).then(() => { clearTimeout(stop); process.stdout.write(JSON.stringify(stats)); process.exit(0); });
`;

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

function memKb(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${key}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

interface Window {
  cpuPct: number;
  peakRssMb: number;
}

async function measure(pid: number, ms: number): Promise<Window> {
  const t0 = Date.now();
  const c0 = cpuTicks(pid);
  let peak = memKb(pid, 'VmRSS');
  while (Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 250));
    peak = Math.max(peak, memKb(pid, 'VmRSS'));
  }
  const cpuPct = ((cpuTicks(pid) - c0) / CLK_TCK / ((Date.now() - t0) / 1000)) * 100;
  return { cpuPct, peakRssMb: peak / 1024 };
}

async function main(): Promise<void> {
  const lab: Lab = await createLab();
  try {
    lab.requireCli();
    const pw = path.join(lab.dir, 'password');
    fs.writeFileSync(pw, 'handshake-flood-password\n', { mode: 0o600 });
    const victim: Host = await lab.addHost('victim');
    const peer: Host = await lab.addHost('peer');
    const att: Host = await lab.addHost('att');
    const sources: string[] = [];
    for (let i = 0; i < ADDRESSES; i++) {
      const ip = `192.0.2.${100 + i}`;
      await lab.execOk(att, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      sources.push(ip);
    }
    await lab.launch(victim, [], ['--password-file', pw, '--datapath', 'sleeve']);
    const pid = lab.daemonPid(victim)!;

    await new Promise((r) => setTimeout(r, 3000));
    const idle = await measure(pid, 5000);

    const script = path.join(lab.dir, 'flood.js');
    fs.writeFileSync(script, FLOOD_JS);
    const cfg = { target: victim.ip, sources, perAddress: PER_ADDRESS, seconds: SECONDS };
    const flood = lab.exec(att, [process.execPath, script, JSON.stringify(cfg)], { timeoutMs: (SECONDS + 30) * 1000 });
    const under = measure(pid, SECONDS * 1000);

    // A real peer joins five seconds into the flood.
    await new Promise((r) => setTimeout(r, 5000));
    let joinedMs: number | undefined;
    await lab.launch(peer, [victim.ip], ['--password-file', pw, '--datapath', 'sleeve', '--log-level', 'debug']);
    const joinStart = Date.now(); // from the peer's daemon being ready (launch is slow under load)
    while (Date.now() - joinStart < (SECONDS - 6) * 1000) {
      const conns = await lab.weavetsJson<ConnectionStatus[]>(peer, ['status', 'connections']).catch(() => []);
      if (conns.some((c) => c.state === 'established')) {
        joinedMs = Date.now() - joinStart;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    if (joinedMs === undefined) {
      process.stderr.write(
        `peer targets: ${JSON.stringify(await lab.weavetsJson(peer, ['status', 'targets']).catch((e: Error) => e.message))}\n`,
      );
      const victimLog = fs.readFileSync(path.join(victim.stateDir, 'weavets.log'), 'utf8').split('\n');
      process.stderr.write(`peer log:\n${lab.logTail(peer, 25)}\n`);
      process.stderr.write(
        `victim log about the peer:\n${victimLog
          .filter((l) => l.includes(peer.ip))
          .slice(-20)
          .join('\n')}\n`,
      );
    }
    const nstat = await lab.exec(victim, [
      'nstat',
      '-az',
      'TcpExtListenOverflows',
      'TcpExtListenDrops',
      'TcpExtSyncookiesSent',
      'TcpExtTCPReqQFullDrop',
    ]);
    const listenDrops = nstat.stdout
      .split('\n')
      .filter((l) => /^TcpExt/.test(l))
      .map((l) => l.split(/\s+/).slice(0, 2).join('='))
      .join(' ');
    const w = await under;
    const hwm = memKb(pid, 'VmHWM') / 1024;
    const r = await flood;
    const alive = fs.existsSync(`/proc/${pid}`);
    const metrics = alive ? (await lab.http(victim, '/metrics')).body : '';
    const rejected = metrics
      .split('\n')
      .filter((l) => l.startsWith('weavets_control_rejected_total{'))
      .map((l) => l.replace('weavets_control_rejected_total', ''))
      .join(' ');

    console.log(
      `flood: ${SECONDS} s from ${ADDRESSES} addresses x ${PER_ADDRESS} connections; attacker: ${r.stdout.trim()}`,
    );
    console.log('| victim daemon | idle (reference) | under flood | ratio |');
    console.log('|---|---|---|---|');
    console.log(
      `| CPU, % of one core | ${idle.cpuPct.toFixed(1)} | ${w.cpuPct.toFixed(1)} | ${(w.cpuPct / Math.max(idle.cpuPct, 0.1)).toFixed(1)}× |`,
    );
    console.log(
      `| peak RSS, MB | ${idle.peakRssMb.toFixed(0)} | ${w.peakRssMb.toFixed(0)} (VmHWM ${hwm.toFixed(0)}) | ${(w.peakRssMb / idle.peakRssMb).toFixed(2)}× |`,
    );
    console.log(
      `| peer with the password established | — | ${joinedMs === undefined ? `not within ${SECONDS - 6} s` : `after ${(joinedMs / 1000).toFixed(1)} s`} | — |`,
    );
    console.log(`daemon alive: ${alive}; rejected: ${rejected}`);
    console.log(`victim kernel: ${listenDrops}`);
  } finally {
    await lab.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
