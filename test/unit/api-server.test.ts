import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client';
import { startApiServer, type ApiServer } from '../../src/api/server';
import type { DaemonControl } from '../../src/api/types';
import type { AttachRequest, EndpointStatus, ExposeResult } from '../../src/endpoint/types';
import type { ConnectionStatus, PeerStatus, RouterStatus, TargetStatus } from '../../src/router/status';
import { WeavetsError } from '../../src/errors';
import { silentLogger } from '../../src/log';

/** A daemon stand-in that records what the server asked of it. */
class FakeDaemon implements DaemonControl {
  calls: string[] = [];
  isReady = true;
  endpointList: EndpointStatus[] = [];
  shutdownWith: boolean | undefined;

  status(): RouterStatus {
    return {
      version: '0.1.0',
      name: '7e:21:0a:b4:19:c2',
      nickname: 'host1',
      port: 6783,
      encryption: false,
      datapath: 'auto',
      ipallocRange: '10.32.0.0/12',
      peers: 2,
      connections: { established: 1, total: 1 },
      targets: 1,
      networks: [{ name: 'weavets', id: 1, subnet: '10.32.0.0/12', bridge: 'weavets', mtu: 1376 }],
    };
  }
  connections(): ConnectionStatus[] {
    return [
      {
        peer: '7e:21:0a:b4:19:c3',
        nickname: 'host2',
        address: '192.0.2.2:6783',
        state: 'established',
        datapath: 'sleeve',
        encrypted: false,
        outbound: true,
      },
    ];
  }
  peers(): PeerStatus[] {
    return [];
  }
  targets(): TargetStatus[] {
    return [{ address: '192.0.2.2:6783', state: 'connected', attempts: 1, source: 'launch' }];
  }
  connect(addresses: string[]): void {
    this.calls.push(`connect ${addresses.join(',')}`);
  }
  forget(addresses: string[]): void {
    this.calls.push(`forget ${addresses.join(',')}`);
  }
  async attach(req: AttachRequest): Promise<EndpointStatus> {
    if (req.id === 'dup') throw new WeavetsError('EWEAVETS_CONFLICT', 'endpoint dup is already attached');
    if (req.id === 'boom') throw new Error('netlink exploded');
    const ep: EndpointStatus = {
      id: req.id,
      network: req.network ?? 'weavets',
      ifname: req.ifname ?? 'eth0',
      address: req.ip ?? '10.32.0.2/12',
      mac: '02:00:00:00:00:02',
      netns: req.netns,
      hostVeth: 'vethwt0',
    };
    this.endpointList.push(ep);
    return ep;
  }
  async detach(id: string): Promise<void> {
    if (!this.endpointList.some((e) => e.id === id)) throw new WeavetsError('EWEAVETS_NOT_FOUND', `no endpoint ${id}`);
    this.endpointList = this.endpointList.filter((e) => e.id !== id);
  }
  endpoints(): EndpointStatus[] {
    return this.endpointList;
  }
  async expose(network: string | undefined, ip: string | undefined): Promise<ExposeResult> {
    return { network: network ?? 'weavets', address: ip ?? '10.32.0.1/12' };
  }
  async hide(network: string | undefined): Promise<ExposeResult | undefined> {
    return network === 'none' ? undefined : { network: network ?? 'weavets', address: '10.32.0.1/12' };
  }
  async metrics(): Promise<string> {
    return '# HELP weavets_up 1 when up\n# TYPE weavets_up gauge\nweavets_up 1\n';
  }
  ready(): boolean {
    return this.isReady;
  }
  async shutdown(removeState: boolean): Promise<void> {
    this.shutdownWith = removeState;
  }
}

function raw(
  target: { socketPath: string } | { host: string; port: number },
  method: string,
  urlPath: string,
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, method, path: urlPath, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function expectCode(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WeavetsError);
  expect((err as WeavetsError).code).toBe(code);
  if (message) expect((err as WeavetsError).message).toMatch(message);
}

describe('API server', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let fake: FakeDaemon;
  let server: ApiServer;
  let client: ApiClient;
  let tcp: { host: string; port: number };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-api-'));
    stateDir = path.join(dir, 'state');
    socketPath = path.join(stateDir, 'weavets.sock');
    fake = new FakeDaemon();
    server = await startApiServer({ socketPath, httpAddr: '127.0.0.1:0', control: fake, log: silentLogger });
    client = new ApiClient(socketPath);
    tcp = server.httpAddress!;
  });

  afterEach(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates the state dir 0700 and the socket 0600', () => {
    expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
    const st = fs.statSync(socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('serves status routes as JSON', async () => {
    expect((await client.get<RouterStatus>('/status')).name).toBe('7e:21:0a:b4:19:c2');
    expect(await client.get('/status/connections')).toEqual(fake.connections());
    expect(await client.get('/status/peers')).toEqual([]);
    expect(await client.get('/status/targets')).toEqual(fake.targets());
    expect(await client.get('/endpoints')).toEqual([]);
  });

  it('passes mutating requests to the daemon', async () => {
    await client.post('/connect', { peers: ['192.0.2.2', 'host3:6783'] });
    await client.post('/forget', { peers: ['host3:6783'] });
    expect(fake.calls).toEqual(['connect 192.0.2.2,host3:6783', 'forget host3:6783']);

    const ep = await client.post<EndpointStatus>('/attach', { id: 'c1', netns: '/run/netns/c1', ip: '10.32.9.9/12' });
    expect(ep.address).toBe('10.32.9.9/12');
    expect(await client.get<EndpointStatus[]>('/endpoints')).toHaveLength(1);
    await client.post('/detach', { id: 'c1' });
    expect(await client.get<EndpointStatus[]>('/endpoints')).toHaveLength(0);

    expect(await client.post<ExposeResult>('/expose', {})).toEqual({ network: 'weavets', address: '10.32.0.1/12' });
    expect(await client.post('/hide', { network: 'none' })).toBeNull();
    expect(await client.post('/hide', {})).toEqual({ network: 'weavets', address: '10.32.0.1/12' });
  });

  it('maps daemon errors to their codes and HTTP statuses', async () => {
    await expectCode(client.post('/attach', { id: 'dup', netns: '/x' }), 'EWEAVETS_CONFLICT', /already attached/);
    await expectCode(client.post('/detach', { id: 'nope' }), 'EWEAVETS_NOT_FOUND', /no endpoint nope/);
    await expectCode(client.post('/attach', { id: 'boom', netns: '/x' }), 'EWEAVETS_INTERNAL', /netlink exploded/);
    const res = await raw({ socketPath }, 'POST', '/attach', JSON.stringify({ id: 'dup', netns: '/x' }));
    expect(res.status).toBe(409);
    expect(JSON.parse(res.body)).toEqual({ error: 'endpoint dup is already attached', code: 'EWEAVETS_CONFLICT' });
  });

  it('rejects malformed JSON and wrong field types with 400 naming the field', async () => {
    const bad = await raw({ socketPath }, 'POST', '/connect', '{"peers": [');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({
      code: 'EWEAVETS_BAD_REQUEST',
      error: expect.stringMatching(/malformed JSON/),
    });

    const notObject = await raw({ socketPath }, 'POST', '/connect', '[1,2]');
    expect(notObject.status).toBe(400);

    await expectCode(client.post('/connect', { peers: 'host2' }), 'EWEAVETS_BAD_REQUEST', /'peers'/);
    await expectCode(client.post('/attach', { id: 'c1' }), 'EWEAVETS_BAD_REQUEST', /'netns'/);
    await expectCode(client.post('/attach', { id: 'c1', netns: '/x', ip: 5 }), 'EWEAVETS_BAD_REQUEST', /'ip'/);
    await expectCode(client.post('/shutdown', { removeState: 'yes' }), 'EWEAVETS_BAD_REQUEST', /'removeState'/);
    expect(fake.calls).toEqual([]);
    expect(fake.shutdownWith).toBeUndefined();
  });

  it('answers 404 for unknown routes, 405 for the wrong method, 413 for huge bodies', async () => {
    const missing = await raw({ socketPath }, 'GET', '/nope');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).code).toBe('EWEAVETS_NOT_FOUND');
    expect((await raw({ socketPath }, 'GET', '/connect')).status).toBe(405);
    expect((await raw({ socketPath }, 'POST', '/status', '{}')).status).toBe(405);
    const huge = JSON.stringify({ peers: ['x'.repeat(1024 * 1024 + 10)] });
    const tooBig = await raw({ socketPath }, 'POST', '/connect', huge);
    expect(tooBig.status).toBe(413);
    expect(fake.calls).toEqual([]);
  });

  it('answers /shutdown before shutting down', async () => {
    await client.post('/shutdown', { removeState: true });
    await new Promise((r) => setTimeout(r, 50));
    expect(fake.shutdownWith).toBe(true);
  });

  it('serves health, readiness and metrics on both listeners', async () => {
    for (const target of [{ socketPath }, tcp]) {
      expect(await raw(target, 'GET', '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
      fake.isReady = true;
      expect((await raw(target, 'GET', '/readyz')).status).toBe(200);
      fake.isReady = false;
      expect((await raw(target, 'GET', '/readyz')).status).toBe(503);
      const m = await raw(target, 'GET', '/metrics');
      expect(m.status).toBe(200);
      expect(m.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(m.body).toContain('weavets_up 1');
    }
  });

  it('keeps the TCP listener read-only', async () => {
    const status = await raw(tcp, 'GET', '/status/connections');
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toEqual(fake.connections());
    for (const route of ['/connect', '/attach', '/detach', '/shutdown', '/expose', '/hide', '/forget']) {
      const res = await raw(
        tcp,
        'POST',
        route,
        JSON.stringify({ peers: ['x'], id: 'c1', netns: '/x', removeState: true }),
      );
      expect(res.status).toBe(405);
      expect(JSON.parse(res.body).code).toBe('EWEAVETS_BAD_REQUEST');
    }
    expect(fake.calls).toEqual([]);
    expect(fake.endpointList).toEqual([]);
    expect(fake.shutdownWith).toBeUndefined();
  });

  it('answers the TCP listener only for its own address or localhost in Host (DNS rebinding)', async () => {
    const get = (host: string | undefined): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = {};
        if (host !== undefined) headers['host'] = host;
        const req = http.request(
          {
            ...tcp,
            method: 'GET',
            path: '/metrics',
            agent: false,
            setHost: host === undefined ? false : undefined,
            headers,
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (text += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    for (const ok of [
      `127.0.0.1:${tcp.port}`,
      '127.0.0.1',
      'localhost',
      `localhost:${tcp.port}`,
      `LocalHost:${tcp.port}`,
    ]) {
      expect((await get(ok)).status, ok).toBe(200);
    }
    for (const bad of [
      'evil.example',
      `evil.example:${tcp.port}`,
      `127.0.0.1:${tcp.port + 1}`,
      '10.0.0.1',
      `localhost.evil.example:${tcp.port}`,
    ]) {
      const r = await get(bad);
      expect(r.status, String(bad)).toBe(403);
      expect(r.body).not.toContain('weavets_up');
      expect(JSON.parse(r.body).error).toMatch(/is not this listener's address/);
    }
    // No Host at all: Node's server refuses HTTP/1.1 without one before we see it.
    expect((await get(undefined)).status).toBe(400);
    // The unix socket has no Host to check: the socket's permissions are its guard.
    expect((await raw({ socketPath }, 'GET', '/metrics')).status).toBe(200);
  });

  it('keeps container ids and netns paths off the TCP listener', async () => {
    await client.post('/attach', { id: 'secret-container', netns: '/run/netns/secret', ip: '10.32.9.9/12' });
    for (const [method, route] of [
      ['GET', '/endpoints'],
      ['POST', '/dns/lookup'],
    ] as const) {
      const res = await raw(tcp, method, route, method === 'POST' ? JSON.stringify({ name: 'x' }) : undefined);
      expect(res.status, route).toBe(403);
      expect(res.body).not.toContain('secret');
      expect(JSON.parse(res.body).error).toMatch(/use the CLI/);
    }
    for (const route of [
      '/status',
      '/status/connections',
      '/status/peers',
      '/status/targets',
      '/metrics',
      '/healthz',
    ]) {
      const res = await raw(tcp, 'GET', route);
      expect(res.status, route).toBe(200);
      expect(res.body).not.toContain('secret');
    }
    expect((await client.get<EndpointStatus[]>('/endpoints'))[0]!.netns).toBe('/run/netns/secret');
  });

  it('serves the status page on the TCP listener, behind the Host check', async () => {
    const page = await raw(tcp, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(page.body).toContain('<svg id="mesh"');
    const withHost = (host: string, urlPath: string): Promise<number> =>
      new Promise((resolve, reject) => {
        http
          .get({ ...tcp, path: urlPath, agent: false, headers: { host } }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });
    expect(await withHost(`rebind.example:${tcp.port}`, '/')).toBe(403);
    expect(await withHost(`rebind.example:${tcp.port}`, '/status/mesh')).toBe(403);
    expect(await withHost(`localhost:${tcp.port}`, '/')).toBe(200);
    // Without diagnostics (this fake) the diagnostics routes say so.
    expect((await raw(tcp, 'GET', '/status/health')).status).toBe(404);
    expect((await raw(tcp, 'GET', '/status/mesh')).status).toBe(404);
  });

  it('refuses a second server on the same socket', async () => {
    fs.writeFileSync(path.join(stateDir, 'weavets.pid'), '4242\n');
    await expectCode(
      startApiServer({ socketPath, httpAddr: '', control: new FakeDaemon(), log: silentLogger }),
      'EWEAVETS_ALREADY_RUNNING',
      /already running for state dir .* \(pid 4242\)/,
    );
    // The first one is untouched.
    expect((await client.get<RouterStatus>('/status')).nickname).toBe('host1');
  });

  it('removes the socket on close, and the client then says the daemon is not running', async () => {
    await server.close();
    expect(fs.existsSync(socketPath)).toBe(false);
    await expectCode(
      client.get('/status'),
      'EWEAVETS_NOT_RUNNING',
      /weavets is not running \(no daemon at .*weavets\.sock\); start it with `weavets launch`/,
    );
  });
});

describe('API server start', () => {
  it('replaces a stale socket left by a dead daemon', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-api-'));
    const socketPath = path.join(dir, 'weavets.sock');
    try {
      // A process that binds the socket and dies without unlinking it.
      const child = spawn(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ]);
      await new Promise((r) => child.on('exit', r));
      expect(fs.statSync(socketPath).isSocket()).toBe(true);
      const server = await startApiServer({ socketPath, httpAddr: '', control: new FakeDaemon(), log: silentLogger });
      expect(server.httpAddress).toBeUndefined();
      expect((await new ApiClient(socketPath).get<RouterStatus>('/status')).port).toBe(6783);
      await server.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails clearly when the TCP address is taken, leaving no socket behind', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-api-'));
    const socketPath = path.join(dir, 'weavets.sock');
    const blocker = http.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expectCode(
        startApiServer({ socketPath, httpAddr: `127.0.0.1:${port}`, control: new FakeDaemon(), log: silentLogger }),
        'EWEAVETS_CONFLICT',
        /address already in use/,
      );
      expect(fs.existsSync(socketPath)).toBe(false);
    } finally {
      blocker.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
