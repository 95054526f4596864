/**
 * Four hosts in a mesh: the health matrix (every host's row, gossiped) with all up, then
 * with one host silenced on the underlay (its row goes stale, the others see it down
 * and say why); the status page in headless chromium draws every host and turns a
 * killed host "down" in words within 5 s (screenshots saved with the test output); and
 * `weavets flows` puts a known iperf3 pair on top.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import type { HealthStatus } from '../../src/diagnostics';
import type { FlowsStatus } from '../../src/diagnostics/flows';
import { REPO_ROOT, type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';
import { HeadlessChromium, chromiumAvailable } from './headless-chromium';

/** Screenshots go with the test output: test-output/ at the repo root (or WEAVETS_TEST_OUTPUT). */
const OUTPUT_DIR = process.env['WEAVETS_TEST_OUTPUT'] ?? path.join(REPO_ROOT, 'test-output');

describe('health matrix, status page and flows on four hosts', () => {
  let lab: Lab;
  let a: Host;
  let b: Host;
  let c: Host;
  let d: Host;
  let client: Namespace;
  let server: Namespace;
  let bystander: Namespace;
  let serverIp = '';
  let browser: HeadlessChromium | undefined;

  const health = (h: Host): Promise<HealthStatus> => lab.weavetsJson<HealthStatus>(h, ['status', 'health']);

  useLab(
    async (l) => {
      lab = l;
      lab.requireCli();
      a = await lab.addHost('a');
      b = await lab.addHost('b');
      c = await lab.addHost('c');
      d = await lab.addHost('d');
      client = await lab.addContainer(a, 'client');
      bystander = await lab.addContainer(a, 'bystander');
      server = await lab.addContainer(b, 'server');
      // The sleeve carries everything here, so `flows` counts in userspace (fastdp's
      // kernel counters are tested in trace.test.ts).
      await lab.launch(a, [], ['--datapath', 'sleeve']);
      for (const h of [b, c, d]) await lab.launch(h, [a.ip], ['--datapath', 'sleeve']);
      await lab.attach(a, client, ['--name', 'iperf-client']);
      await lab.attach(a, bystander, ['--name', 'bystander']);
      serverIp = (await lab.attach(b, server, ['--name', 'iperf-server'])).split('/')[0]!;
    },
    { timeoutMs: 180_000 },
  );

  afterAll(async () => {
    await browser?.close();
  });

  it('every host contributes a row, and every host sees every other up', async () => {
    const m = await lab.waitFor(
      async () => {
        const s = await health(a);
        const fresh = s.rows.filter((r) => !r.stale);
        const allUp = fresh.length === 4 && fresh.every((r) => r.peers.length === 3 && r.peers.every((p) => p.up));
        return allUp ? s : undefined;
      },
      { what: 'a 4x4 health matrix with every path up on host a', timeoutMs: 60_000, intervalMs: 1000 },
    );
    expect(m.rows.map((r) => r.nickname).sort()).toEqual(['a', 'b', 'c', 'd']);
    for (const r of m.rows) {
      for (const p of r.peers) {
        expect(p.datapath).toBe('sleeve');
        expect(p.rttMs, `${r.nickname} -> ${p.nickname}`).not.toBeNull();
        expect(p.pmtu).toBeGreaterThan(1000);
        expect(p.reason).toBe('');
      }
    }
    // Another host holds the same matrix: rows are gossiped, not asked for. (Waited for:
    // under load a relayed row can be a few seconds late and briefly count as stale.)
    const freshOnD = async (): Promise<string[]> =>
      (await health(d)).rows
        .filter((r) => !r.stale)
        .map((r) => r.nickname)
        .sort();
    await lab.waitFor(async () => (await freshOnD()).length === 4, {
      what: 'host d to hold a fresh row from every host',
      timeoutMs: 15_000,
      intervalMs: 500,
    });
    expect(await freshOnD()).toEqual(['a', 'b', 'c', 'd']);
    const text = await lab.weavetsOk(a, ['status', 'health']);
    expect(text).toMatch(/^FROM\s+TO\s+STATE\s+RTT\s+LOSS\s+PMTU\s+DATAPATH/);
    const metrics = (await lab.http(a, '/metrics')).body;
    expect(metrics).toMatch(/weavets_peer_up\{peer="[0-9a-f:]+",nickname="d"\} 1/);
    expect(metrics).toMatch(/weavets_peer_rtt_seconds\{peer="[0-9a-f:]+",nickname="b"\} [0-9.e-]+/);
  });

  it('the status page loads in chromium and draws every host, up', async () => {
    if (!chromiumAvailable()) {
      if (process.env['CI'] === 'true')
        throw new Error('chromium (/usr/bin/chromium) is missing: install Debian chromium');
      console.warn('skipping the page checks: no /usr/bin/chromium');
      return;
    }
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    browser = await HeadlessChromium.open(a.netns, 'http://127.0.0.1:6782/');
    const states = await lab.waitFor(
      async () => {
        const s = await browser!.evaluate<[string, string][]>(
          "[...document.querySelectorAll('#hosts .host')].map(g => [g.querySelector('text').textContent, g.querySelector('.state').textContent])",
        );
        return s.length === 4 && s.every(([, st]) => st === 'up') ? s : undefined;
      },
      { what: 'the page to draw four hosts, all up', timeoutMs: 30_000, intervalMs: 500 },
    );
    expect(states.map(([n]) => n.replace(' (this host)', '')).sort()).toEqual(['a', 'b', 'c', 'd']);
    const text = await browser.text();
    expect(text).toContain('iperf-server');
    expect(text).toContain(serverIp);
    expect(text).toMatch(/Health matrix/);
    expect(await browser.evaluate<number>("document.querySelectorAll('#edges .edge[data-state=up]').length")).toBe(6);
    await browser.screenshot(path.join(OUTPUT_DIR, 'status-page-all-up.png'));
    // Another origin's name is refused (DNS rebinding), the listener's own is served.
    const rebound = await lab.execOk(a, [
      process.execPath,
      '-e',
      "require('http').get({host:'127.0.0.1',port:6782,path:'/status/mesh',headers:{host:'evil.example:6782'}},r=>{process.stdout.write(String(r.statusCode));r.resume()})",
    ]);
    expect(rebound.stdout).toBe('403');
  });

  it('a silenced host: its row goes stale and every other host says it is down, and why', async () => {
    for (const h of [a, b, c]) await lab.block(d, h);
    const m = await lab.waitFor(
      async () => {
        const s = await health(a);
        const dRow = s.rows.find((r) => r.nickname === 'd');
        const others = s.rows.filter((r) => r.nickname !== 'd');
        const seeDown =
          others.length === 3 && others.every((r) => !r.stale && r.peers.some((p) => p.nickname === 'd' && !p.up));
        return dRow?.stale && seeDown ? s : undefined;
      },
      { what: "d's row stale and a, b, c seeing d down", timeoutMs: 60_000, intervalMs: 1000 },
    );
    for (const r of m.rows.filter((x) => x.nickname !== 'd')) {
      const toD = r.peers.find((p) => p.nickname === 'd')!;
      expect(toD.reason, `${r.nickname} -> d`).toMatch(/no heartbeat answer for \d+ s/);
      // The rest of the mesh is unaffected.
      expect(r.peers.filter((p) => p.nickname !== 'd').every((p) => p.up)).toBe(true);
    }
    expect(await lab.weavetsOk(a, ['status', 'health'])).toMatch(/^d \(STALE \d+ s\)/m);
    await lab.waitFor(
      async () => /weavets_peer_up\{peer="[0-9a-f:]+",nickname="d"\} 0/.test((await lab.http(a, '/metrics')).body),
      {
        what: 'weavets_peer_up for d to be 0 on a',
        timeoutMs: 15_000,
      },
    );
    if (browser) {
      await lab.waitFor(
        async () =>
          (await browser!.evaluate<string>(
            "[...document.querySelectorAll('#hosts .host')].filter(g => g.querySelector('text').textContent === 'd').map(g => g.querySelector('.state').textContent).join()",
          )) === 'down',
        { what: 'the page to show d down', timeoutMs: 30_000, intervalMs: 500 },
      );
    }
  });

  it('the page shows a killed host "down" in words within 5 s', async () => {
    if (!browser) {
      if (process.env['CI'] === 'true') throw new Error('chromium (/usr/bin/chromium) is missing');
      return;
    }
    const pid = lab.daemonPid(c);
    expect(pid).toBeDefined();
    const killedAt = Date.now();
    process.kill(pid!, 'SIGKILL');
    const stateOf = (): Promise<string> =>
      browser!.evaluate<string>(
        "[...document.querySelectorAll('#hosts .host')].filter(g => g.querySelector('text').textContent === 'c').map(g => g.querySelector('.state').textContent).join()",
      );
    await lab.waitFor(async () => (await stateOf()) === 'down', {
      what: 'the page to show c down',
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const elapsed = Date.now() - killedAt;
    console.log(`status page: killed host c shown "down" after ${elapsed} ms`);
    // No edge to c is drawn up any more (drawn edges to a host a cannot reach are down).
    const upToC = await browser.evaluate<number>(
      "document.querySelectorAll('#edges .edge[data-state=up][data-from=c], #edges .edge[data-state=up][data-to=c]').length",
    );
    expect(upToC).toBe(0);
    const text = await browser.text();
    expect(text).toMatch(/\bc\b[^\n]*\tdown/);
    await browser.screenshot(path.join(OUTPUT_DIR, 'status-page-host-killed.png'));
  });

  it('flows puts a known iperf3 pair on top, by name', async () => {
    const iperfServer = lab.spawnIn(server, ['iperf3', '-s', '-B', serverIp]);
    try {
      await lab.waitFor(async () => (await lab.ping(client, serverIp, { count: 1, timeoutS: 1 })).ok, {
        what: 'client to reach the server',
        timeoutMs: 20_000,
      });
      await lab.ping(bystander, serverIp, { count: 3, intervalS: 0.2 });
      let last = '';
      await lab.waitFor(
        async () => {
          const r = await lab.exec(client, ['iperf3', '-c', serverIp, '-t', '2'], { timeoutMs: 20_000 });
          last = r.stdout.slice(-300) + r.stderr;
          return r.code === 0;
        },
        {
          what: 'iperf3 to run from client to server',
          timeoutMs: 30_000,
          intervalMs: 500,
          lastSeen: () => `iperf3 output ${last}`,
        },
      );
    } finally {
      iperfServer.kill('SIGKILL');
    }
    const f = await lab.weavetsJson<FlowsStatus>(a, ['flows']);
    expect(f.enabled).toBe(true);
    expect(f.windowSeconds).toBe(60);
    const top = f.flows[0]!;
    expect(top, JSON.stringify(f.flows.slice(0, 3))).toMatchObject({
      network: 'weavets',
      src: { name: 'iperf-client', host: 'a' },
      dst: { name: 'iperf-server', host: 'b', address: serverIp },
      datapath: 'sleeve',
    });
    expect(top.bytes).toBeGreaterThan(10_000_000);
    expect(f.flows.some((x) => x.src.name === 'bystander' && x.dst.name === 'iperf-server')).toBe(true);
    expect(await lab.weavetsOk(a, ['flows'])).toMatch(/^FROM\s+TO\s+NETWORK\s+BYTES[^\n]*\niperf-client \(a, /);
  });
});
