/**
 * Encryption end to end: peers with the password join and seal everything; a wrong
 * password or no password never joins; the underlay shows no plaintext; captured
 * datagrams replayed, bit-flipped or forged in bulk are dropped and counted while real
 * traffic keeps flowing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import type { ConnectionStatus } from '../../src/router/status';
import { sleep, type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

const ip = (cidr: string): string => cidr.split('/')[0]!;
const PASSWORD = 'correct horse battery staple';
/** A payload the containers send, to look for on the wire. */
const PATTERN = 'a5c3e1f70b19d2e4';

/** UDP payloads sent to `port` in a pcap file (Ethernet, IPv4, no options assumed away). */
function udpPayloadsTo(pcapFile: string, port: number): Buffer[] {
  const b = fs.readFileSync(pcapFile);
  const out: Buffer[] = [];
  let o = 24;
  while (o + 16 <= b.length) {
    const incl = b.readUInt32LE(o + 8);
    const pkt = b.subarray(o + 16, o + 16 + incl);
    o += 16 + incl;
    if (pkt.length < 42 || pkt.readUInt16BE(12) !== 0x0800) continue;
    const ihl = (pkt[14]! & 0x0f) * 4;
    if (pkt[14 + 9] !== 17) continue; // UDP
    const frag = pkt.readUInt16BE(14 + 6);
    if ((frag & 0x3fff) !== 0) continue; // skip IP fragments
    const udp = 14 + ihl;
    if (pkt.readUInt16BE(udp + 2) !== port) continue;
    out.push(Buffer.from(pkt.subarray(udp + 8)));
  }
  return out;
}

/** Prometheus value of weavets_dropped_datagrams_total{reason}, 0 when absent. */
function dropped(metrics: string, reason: string): number {
  const m = new RegExp(`^weavets_dropped_datagrams_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(metrics);
  return m ? Number(m[1]) : 0;
}

describe('encryption', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';
  let pwFile = '';

  const connections = (h: Host): Promise<ConnectionStatus[]> =>
    lab.weavetsJson<ConnectionStatus[]>(h, ['status', 'connections']);
  const metrics = async (h: Host): Promise<string> => (await lab.http(h, '/metrics')).body;

  /** Start tcpdump in a namespace; resolves once it is capturing. */
  async function capture(ns: Host | Namespace, args: string[]): Promise<{ stop(): Promise<void> }> {
    // --immediate-mode: without it packets wait in the kernel's capture ring for up to a
    // second, and a capture stopped sooner comes back empty.
    const p = lab.spawnIn(ns, ['tcpdump', '-U', '--immediate-mode', ...args]);
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 15_000);
      p.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (/listening on/.test(err)) {
          clearTimeout(t);
          resolve();
        }
      });
      p.on('exit', () => reject(new Error(`tcpdump exited: ${err}`)));
    });
    return {
      stop: () =>
        new Promise<void>((resolve) => {
          p.removeAllListeners('exit');
          p.on('exit', () => resolve());
          p.kill('SIGINT');
        }),
    };
  }

  /** Send hex payloads as UDP datagrams from inside a namespace to host:port. */
  async function sendFrom(ns: Host, to: Host, payloads: Buffer[]): Promise<void> {
    const file = path.join(lab.dir, `send-${Date.now()}.json`);
    fs.writeFileSync(file, JSON.stringify(payloads.map((p) => p.toString('hex'))));
    const script = `
      const dgram = require('node:dgram');
      const list = JSON.parse(require('node:fs').readFileSync(${JSON.stringify(file)}, 'utf8'));
      const s = dgram.createSocket('udp4');
      let i = 0;
      const next = () => {
        if (i >= list.length) { s.close(); return; }
        const b = Buffer.from(list[i++], 'hex');
        s.send(b, 6783, ${JSON.stringify(to.ip)}, () => (i % 200 === 0 ? setImmediate(next) : next()));
      };
      next();`;
    await lab.execOk(ns, [process.execPath, '-e', script], { timeoutMs: 60_000 });
  }

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    pwFile = path.join(lab.dir, 'password');
    fs.writeFileSync(pwFile, PASSWORD + '\n', { mode: 0o600 });
    h1 = await lab.addHost('h1');
    h2 = await lab.addHost('h2');
    c1 = await lab.addContainer(h1, 'c1');
    c2 = await lab.addContainer(h2, 'c2');
    await lab.launch(h1, [], ['--password-file', pwFile]);
    // The other way in: the environment variable.
    await lab.launch(h2, [h1.ip], [], { env: { WEAVETS_PASSWORD: PASSWORD } });
    ip1 = await lab.attach(h1, c1);
    ip2 = await lab.attach(h2, c2);
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2',
      timeoutMs: 30_000,
    });
  });

  it('peers with the password are connected, and every connection says encrypted', async () => {
    const conns = await connections(h1);
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({ nickname: 'h2', state: 'established', encrypted: true });
    const status = await lab.weavetsJson<{ encryption: boolean }>(h1, ['status']);
    expect(status.encryption).toBe(true);
  });

  it('keeps the password out of argv, logs, status and the environment', async () => {
    for (const h of [h1, h2]) {
      const pid = lab.daemonPid(h)!;
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
      expect(cmdline).not.toContain(PASSWORD);
      expect(environ).not.toContain(PASSWORD);
      expect(environ).not.toContain('WEAVETS_PASSWORD');
      expect(fs.readFileSync(path.join(h.stateDir, 'weavets.log'), 'utf8')).not.toContain(PASSWORD);
      expect(await lab.weavetsOk(h, ['status', '--json'])).not.toContain(PASSWORD);
    }
  });

  it('refuses a password file that others can read', async () => {
    const loose = path.join(lab.dir, 'loose-password');
    fs.writeFileSync(loose, PASSWORD, { mode: 0o644 });
    fs.chmodSync(loose, 0o644);
    const h = await lab.addHost('loose');
    const r = await lab.weavets(h, ['launch', '--password-file', loose]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/chmod 600/);
  });

  it('a peer with a wrong password never joins, and both sides say why', async () => {
    const bad = await lab.addHost('wrongpw');
    await lab.launch(bad, [h1.ip], [], { env: { WEAVETS_PASSWORD: 'not the password' } });
    await lab.waitFor(async () => /network password/.test(lab.logTail(bad, 100)), {
      what: 'the wrong-password peer to log the refusal',
      timeoutMs: 15_000,
    });
    await lab.waitFor(async () => /failed to prove the network password/.test(lab.logTail(h1, 200)), {
      what: 'h1 to log the refusal',
      timeoutMs: 15_000,
    });
    expect((await connections(h1)).some((c) => c.nickname === 'wrongpw')).toBe(false);
    expect((await connections(bad)).some((c) => c.state === 'established')).toBe(false);
    await lab.stopDaemon(bad);
  });

  it('a peer without a password is refused, and a peer with one refuses to talk to it', async () => {
    const plain = await lab.addHost('nopw');
    await lab.launch(plain, [h1.ip]);
    await lab.waitFor(async () => /requires a network password/.test(lab.logTail(plain, 100)), {
      what: 'the plain peer to log why it was refused',
      timeoutMs: 15_000,
    });
    expect(lab.logTail(h1, 300)).toMatch(/refusing peer: password mismatch/);
    expect((await connections(h1)).some((c) => c.nickname === 'nopw')).toBe(false);
    await lab.stopDaemon(plain);
  });

  it("the underlay never carries the containers' plaintext", async () => {
    const file = path.join(lab.dir, 'underlay.pcap');
    const inner = path.join(lab.dir, 'inner.pcap');
    const outer = await capture(h1, ['-i', 'eth0', '-w', file, 'udp port 6783']);
    const innerCap = await capture(c1, ['-i', 'eth0', '-w', inner, 'icmp']);
    await lab.execOk(c1, ['ping', '-c', '5', '-i', '0.2', '-s', '600', '-p', PATTERN, ip(ip2)]);
    await sleep(300);
    await outer.stop();
    await innerCap.stop();
    const needle = Buffer.from(PATTERN.repeat(4), 'hex');
    // The pattern is really on the wire inside the container...
    expect(fs.readFileSync(inner).includes(needle)).toBe(true);
    // ...and the underlay carried the pings (sealed datagrams), but never the pattern.
    const wire = fs.readFileSync(file);
    expect(udpPayloadsTo(file, 6783).length).toBeGreaterThanOrEqual(10);
    expect(wire.includes(needle)).toBe(false);
  });

  it('trusted subnets: data goes in clear between peers that both trust each other, control stays sealed', async () => {
    const t1 = await lab.addHost('t1');
    const t2 = await lab.addHost('t2');
    const d1 = await lab.addContainer(t1, 'd1');
    const d2 = await lab.addContainer(t2, 'd2');
    const trust = [
      '--password-file',
      pwFile,
      '--trusted-subnets',
      '192.0.2.0/24',
      '--port',
      '6790',
      '--http-addr',
      '127.0.0.1:6792',
    ];
    await lab.launch(t1, [], trust);
    await lab.launch(t2, [`${t1.ip}:6790`], trust);
    await lab.attach(t1, d1);
    const a2 = await lab.attach(t2, d2);
    await lab.waitFor(async () => (await lab.ping(d1, ip(a2), { count: 1, timeoutS: 1 })).ok, {
      what: 'd1 to reach d2',
      timeoutMs: 30_000,
    });
    const conns = await connections(t1);
    expect(conns[0]).toMatchObject({ state: 'established', encrypted: false });
    expect(conns[0]!.info).toMatch(/trusted subnet/);
    // The same capture that finds nothing on a sealed mesh finds the pattern here.
    const file = path.join(lab.dir, 'trusted.pcap');
    const cap = await capture(t1, ['-i', 'eth0', '-w', file, 'udp port 6790']);
    await lab.execOk(d1, ['ping', '-c', '3', '-i', '0.2', '-s', '600', '-p', PATTERN, ip(a2)]);
    await sleep(300);
    await cap.stop();
    expect(fs.readFileSync(file).includes(Buffer.from(PATTERN.repeat(4), 'hex'))).toBe(true);
    await lab.stopDaemon(t1);
    await lab.stopDaemon(t2);
  });

  it('drops replayed, bit-flipped and forged datagrams, counts them, and keeps forwarding', async () => {
    const file = path.join(lab.dir, 'replay.pcap');
    const cap = await capture(h1, ['-i', 'eth0', '-w', file, `udp and src host ${h2.ip} and dst port 6783`]);
    await lab.execOk(c2, ['ping', '-c', '10', '-i', '0.1', ip(ip1)]);
    await sleep(300);
    await cap.stop();
    const captured = udpPayloadsTo(file, 6783);
    expect(captured.length).toBeGreaterThanOrEqual(10);
    const before = await metrics(h1);

    // 1. The very same datagrams again, from h2's own address: replays.
    await sendFrom(h2, h1, captured);
    // 2. One bit flipped, at every byte position of a captured datagram.
    const sample = captured.find((d) => d.length > 60) ?? captured[0]!;
    const flipped: Buffer[] = [];
    for (let i = 0; i < sample.length; i++) {
      const d = Buffer.from(sample);
      d[i]! ^= 1 << (i % 8);
      flipped.push(d);
    }
    await sendFrom(h2, h1, flipped);
    // 3. A flood of forgeries: sealed-looking datagrams with random boxes and counters.
    const forged: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) {
      const d = Buffer.from(sample);
      for (let j = 12; j < d.length; j++) d[j] = (Math.random() * 256) | 0;
      d[12] = sample[12]!; // current epoch: forces a real authentication attempt
      forged.push(d);
    }
    await sendFrom(h2, h1, forged);
    await sleep(500);

    const after = await metrics(h1);
    expect(dropped(after, 'replayed') - dropped(before, 'replayed')).toBeGreaterThanOrEqual(captured.length - 2);
    expect(dropped(after, 'forged') - dropped(before, 'forged')).toBeGreaterThanOrEqual(15_000);
    const total = (m: string): number =>
      [...m.matchAll(/^weavets_dropped_datagrams_total\{reason="[^"]+"\} (\d+)/gm)].reduce(
        (a, x) => a + Number(x[1]),
        0,
      );
    // Every flipped datagram was dropped for some reason (header, epoch, MAC or replay).
    expect(total(after) - total(before)).toBeGreaterThanOrEqual(captured.length + flipped.length + forged.length - 50);
    // And the real traffic never noticed.
    const ping = await lab.ping(c1, ip(ip2), { count: 5 });
    expect(ping.received).toBe(5);
    expect((await connections(h1))[0]).toMatchObject({ state: 'established', encrypted: true });
  });
  it('the sealed path recovers after a 20 s UDP outage (the control connection stays up throughout)', async () => {
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2 before the outage',
      timeoutMs: 20_000,
    });
    const drops = async (): Promise<Map<string, number>> => {
      const m = new Map<string, number>();
      for (const h of [h1, h2]) {
        for (const line of (await metrics(h)).split('\n')) {
          const r = /^weavets_dropped_datagrams_total\{.*reason="([^"]+)".*\}\s+(\S+)/.exec(line);
          if (r) m.set(`${h.name}:${r[1]}`, (m.get(`${h.name}:${r[1]}`) ?? 0) + Number(r[2]));
        }
      }
      return m;
    };
    const before = await drops();
    await lab.blockUdpPort(h1, h2, 6783);
    try {
      await lab.waitFor(async () => (await connections(h1))[0]?.state === 'handshaking', {
        what: 'h1 to notice the data path is down',
        timeoutMs: 15_000,
      });
      await sleep(20_000 - 5_000);
      expect((await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, 'ping during the outage').toBe(false);
    } finally {
      await lab.unblockUdpPort(h1, h2, 6783);
    }
    const since = Date.now();
    await lab.waitFor(async () => (await lab.ping(c1, ip(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2 after the outage',
      timeoutMs: 60_000,
    });
    const after = await drops();
    const delta = [...after]
      .filter(([k, v]) => v !== (before.get(k) ?? 0))
      .map(([k, v]) => `${k}+${v - (before.get(k) ?? 0)}`);
    process.stderr.write(
      `sealed path answered ${Date.now() - since} ms after a 20 s UDP outage; drops during and after: ${delta.join(' ') || 'none'}\n`,
    );
    // Nothing sealed after the outage may be refused for its epoch: that was the failure.
    for (const h of [h1, h2])
      expect(after.get(`${h.name}:bad_epoch`) ?? 0, `${h.name} bad_epoch drops`).toBe(
        before.get(`${h.name}:bad_epoch`) ?? 0,
      );
    const back = await lab.ping(c2, ip(ip1), { count: 3 });
    expect(back.received, back.output).toBe(3);
    const conns = await connections(h1);
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({ state: 'established', encrypted: true });
  }, 180_000);
});
