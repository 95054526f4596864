/**
 * Restarts keep traffic. On fastdp a daemon that stops leaves its VXLAN devices and FDB
 * entries in the kernel and its peer holds its entries for it, so a ping between
 * containers running across `weavets stop` + `weavets launch` loses nothing; the next
 * start adopts the devices (the same ifindex) instead of rebuilding them. On the sleeve
 * the daemon itself carries the frames, so pings stop while it is down; they must answer
 * again within 2 s of the relaunch returning, and nothing may be lost outside that window.
 */
import { describe, expect, it } from 'vitest';
import type { ConnectionStatus } from '../../src/router/status';
import type { Host, Lab, Namespace } from './harness';
import { useLab } from './lab-hooks';

const INTERVAL_S = 0.05;
const ip = (cidr: string): string => cidr.split('/')[0]!;

interface PingRun {
  /** icmp_seq -> reply time (s since the epoch, from ping -D). */
  replies: Map<number, number>;
  transmitted: number;
  output: string;
}

/** `ping -D` from a container for `count` packets; resolves when it exits. */
function pingFor(lab: Lab, from: Namespace, to: string, count: number): Promise<PingRun> {
  const child = lab.spawnIn(from, ['ping', '-D', '-n', '-i', String(INTERVAL_S), '-W', '1', '-c', String(count), to]);
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  return new Promise((resolve) => {
    child.on('close', () => {
      const replies = new Map<number, number>();
      for (const m of output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/gm)) {
        if (!replies.has(Number(m[2]))) replies.set(Number(m[2]), Number(m[1]));
      }
      const transmitted = Number(/(\d+) packets transmitted/.exec(output)?.[1] ?? '0');
      resolve({ replies, transmitted, output });
    });
  });
}

async function waitForPath(lab: Lab, h: Host, nickname: string, datapath: string): Promise<void> {
  await lab.waitFor(
    async () => {
      const conns = await lab.weavetsJson<ConnectionStatus[]>(h, ['status', 'connections']).catch(() => []);
      return conns.some((c) => c.nickname === nickname && c.state === 'established' && c.datapath === datapath);
    },
    { what: `${h.name} to reach ${nickname} on ${datapath}`, timeoutMs: 30_000 },
  );
}

async function ifindex(lab: Lab, h: Host, type: string): Promise<string> {
  const r = await lab.execOk(h, ['ip', '-o', 'link', 'show', 'type', type]);
  return r.stdout
    .split('\n')
    .filter((l) => /wtv[0-9a-f]{6}/.test(l))
    .map((l) => l.split(':')[0])
    .join(',');
}

for (const datapath of ['fastdp', 'sleeve'] as const) {
  describe(`a daemon restart on ${datapath}`, () => {
    let lab: Lab;
    let h1: Host;
    let h2: Host;
    let c1: Namespace;
    let ip2 = '';
    const launchArgs = ['--datapath', datapath];

    useLab(async (l) => {
      lab = l;
      h1 = await lab.addHost('h1');
      h2 = await lab.addHost('h2');
      c1 = await lab.addContainer(h1, 'c1');
      const c2 = await lab.addContainer(h2, 'c2');
      await lab.launch(h1, [], launchArgs);
      await lab.launch(h2, [h1.ip], launchArgs);
      await lab.attach(h1, c1);
      ip2 = ip(await lab.attach(h2, c2));
      await waitForPath(lab, h1, 'h2', datapath);
      await waitForPath(lab, h2, 'h1', datapath);
      await lab.waitFor(async () => (await lab.ping(c1, ip2, { count: 1, timeoutS: 1 })).ok, {
        what: 'c1 to reach c2',
        timeoutMs: 15_000,
      });
    });

    it(
      datapath === 'fastdp'
        ? 'loses no ping while the daemon stops and starts again'
        : 'answers pings again within 2 s of the daemon being back',
      async () => {
        const devicesBefore = datapath === 'fastdp' ? await ifindex(lab, h2, 'vxlan') : '';
        // 30 s of pings, 20 a second; the restart happens in the middle.
        const pinging = pingFor(lab, c1, ip2, 600);
        await new Promise((r) => setTimeout(r, 3000));
        const stoppedAt = Date.now() / 1000;
        await lab.stopDaemon(h2);
        expect(lab.daemonPid(h2)).toBeUndefined();
        // Down for a moment, as in an upgrade: the kernel carries fastdp traffic alone.
        await new Promise((r) => setTimeout(r, 1500));
        await lab.launch(h2, [h1.ip], launchArgs);
        const readyAt = Date.now() / 1000;
        await waitForPath(lab, h2, 'h1', datapath);
        const run = await pinging;
        expect(run.transmitted, run.output.slice(-500)).toBe(600);
        // Everything was sent well after the relaunch, so the window was covered.
        expect(readyAt - stoppedAt).toBeGreaterThan(1.5);
        const missing = [...Array(run.transmitted).keys()].map((i) => i + 1).filter((seq) => !run.replies.has(seq));
        if (datapath === 'fastdp') {
          expect(missing, 'pings lost across the restart').toEqual([]);
          // Adopted, not rebuilt: the same network device.
          expect(await ifindex(lab, h2, 'vxlan')).toBe(devicesBefore);
          expect(lab.logTail(h2, 200)).toMatch(/adopted the network device the last run left/);
        } else {
          // One gap, around the restart; the first answer after it within 2 s of ready.
          expect(missing.length).toBeGreaterThan(0);
          const first = missing[0]!;
          const last = missing[missing.length - 1]!;
          expect(missing.length, `losses outside one window: ${missing.join(',')}`).toBe(last - first + 1);
          const resumedAt = run.replies.get(last + 1);
          expect(resumedAt, 'no reply after the gap').toBeDefined();
          expect(resumedAt! - readyAt).toBeLessThanOrEqual(2);
          // And the gap began with the stop, not before it.
          expect(run.replies.get(first - 1)!).toBeGreaterThanOrEqual(stoppedAt - 2 * INTERVAL_S);
        }
      },
      90_000,
    );
  });
}
