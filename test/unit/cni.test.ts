/**
 * weavets-cni invoked as a runtime would: the built plugin (dist/cni/main.js) as a child
 * process, CNI_* variables in its environment and the network configuration on stdin.
 * A fake daemon on a unix socket in a temp dir stands in for weavets (no root needed);
 * test/net/cni.test.ts runs the same commands against a real daemon in namespaces.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conflist, pluginShim, setupCni } from '../../src/cli/cni';
import { endpointId, parseCniArgs, parseEndpointId } from '../../src/cni/invocation';
import { SUPPORTED_VERSIONS } from '../../src/cni/spec';

const PLUGIN = path.resolve(__dirname, '..', '..', 'dist', 'cni', 'main.js');

interface PluginRun {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
}

function runPlugin(env: Record<string, string>, stdin: string): Promise<PluginRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PLUGIN], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() === '' ? undefined : (JSON.parse(stdout) as Record<string, unknown>);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(stdin);
  });
}

/** A stand-in daemon: the routes the plugin uses, with endpoints in a map. */
class FakeDaemon {
  readonly endpoints = new Map<string, Record<string, unknown>>();
  ready = true;
  requests: { path: string; body: Record<string, unknown> }[] = [];
  private server: http.Server | undefined;

  constructor(readonly stateDir: string) {}

  async start(): Promise<void> {
    fs.mkdirSync(this.stateDir, { recursive: true });
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const body = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
        this.requests.push({ path: req.url ?? '', body });
        const send = (status: number, v: unknown): void => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(v));
        };
        switch (req.url) {
          case '/readyz':
            res.writeHead(this.ready ? 200 : 503);
            res.end(this.ready ? 'ready\n' : 'not ready\n');
            return;
          case '/expose':
            return send(200, { network: body['network'], address: '10.32.0.1/12' });
          case '/attach': {
            // Container ids that make the fake daemon fail the way the real one can.
            const failure: Record<string, [number, string]> = {
              conflict: [409, 'EWEAVETS_CONFLICT'],
              full: [507, 'EWEAVETS_RANGE_EXHAUSTED'],
              rejected: [400, 'EWEAVETS_BAD_REQUEST'],
              boom: [500, 'EWEAVETS_INTERNAL'],
            };
            const f = failure[String(body['id']).split(':')[2] ?? ''];
            if (f) return send(f[0], { error: `fake ${f[1]}`, code: f[1] });
            const n = this.endpoints.size + 2;
            const ep: Record<string, unknown> = {
              id: body['id'],
              network: body['network'],
              ifname: body['ifname'],
              address: typeof body['ip'] === 'string' ? body['ip'] : `10.32.0.${n}/12`,
              mac: typeof body['mac'] === 'string' ? body['mac'] : `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
              netns: body['netns'],
              hostVeth: `vwt0000000${n}`,
              hostMac: '02:ff:00:00:00:01',
            };
            if (typeof body['name'] === 'string') ep['name'] = body['name'];
            if (typeof body['gateway'] === 'string') ep['gateway'] = body['gateway'];
            this.endpoints.set(String(body['id']), ep);
            return send(200, ep);
          }
          case '/detach': {
            const id = String(body['id']);
            if (!this.endpoints.delete(id) && body['missingOk'] !== true) {
              return send(404, { error: `no endpoint ${id}`, code: 'EWEAVETS_NOT_FOUND' });
            }
            return send(200, { ok: true });
          }
          case '/endpoints':
            return send(200, [...this.endpoints.values()]);
          case '/endpoints/check': {
            const ep = this.endpoints.get(String(body['id']));
            if (!ep) return send(404, { error: 'no such endpoint', code: 'EWEAVETS_NOT_FOUND' });
            return send(200, { endpoint: ep, problems: [] });
          }
          default:
            return send(404, { error: 'no route', code: 'EWEAVETS_NOT_FOUND' });
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(path.join(this.stateDir, 'weavets.sock'), r));
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

let tmp: string;
let daemon: FakeDaemon;
const NETNS = '/proc/self/ns/net';

function conf(version: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    cniVersion: version,
    name: 'wtnet',
    type: 'weavets-cni',
    stateDir: daemon.stateDir,
    ...extra,
  });
}

function env(command: string, containerId = 'ctr1', extra: Record<string, string> = {}): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: NETNS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
    ...extra,
  };
}

beforeAll(async () => {
  if (!fs.existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: run \`npm run build\` first`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-cni-unit-'));
  daemon = new FakeDaemon(path.join(tmp, 'state'));
  await daemon.start();
});

afterAll(async () => {
  await daemon?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('pure helpers', () => {
  it('endpoint ids round-trip and are scoped by CNI network name', () => {
    const id = endpointId('wtnet', 'abc.1-2', 'eth0');
    expect(id).toBe('cni:wtnet:abc.1-2:eth0');
    expect(parseEndpointId(id, 'wtnet')).toEqual({ containerId: 'abc.1-2', ifname: 'eth0' });
    expect(parseEndpointId(id, 'other')).toBeUndefined();
    expect(parseEndpointId('c1', 'wtnet')).toBeUndefined();
  });

  it('CNI_ARGS keeps unknown keys and rejects pairs without "="', () => {
    const a = parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=web;FOO=a=b;');
    expect(a.get('K8S_POD_NAME')).toBe('web');
    expect(a.get('FOO')).toBe('a=b');
    expect(() => parseCniArgs('JUNK')).toThrow(/CNI_ARGS/);
  });

  it('setup-cni writes an executable shim and a conflist chaining portmap', () => {
    const dir = path.join(tmp, 'setup');
    const res = setupCni({
      binDir: path.join(dir, 'bin'),
      confDir: path.join(dir, 'conf'),
      stateDir: '/var/lib/weavets',
      name: 'weavets',
      network: 'weavets',
      pluginEntry: PLUGIN,
      nodePath: process.execPath,
    });
    expect(fs.statSync(res.plugin).mode & 0o111).not.toBe(0);
    expect(fs.readFileSync(res.plugin, 'utf8')).toBe(pluginShim(process.execPath, PLUGIN));
    const list = JSON.parse(fs.readFileSync(res.conflist, 'utf8')) as ReturnType<typeof conflist> & {
      plugins: { type: string }[];
    };
    expect(list).toMatchObject({ cniVersion: '1.0.0', name: 'weavets' });
    expect(list.plugins.map((p) => p.type)).toEqual(['weavets-cni', 'portmap']);
    expect(list.plugins[1]).toEqual({ type: 'portmap', capabilities: { portMappings: true } });
  });
});

describe('VERSION', () => {
  it.each([...SUPPORTED_VERSIONS])('answers in %s with every supported version', async (v) => {
    const r = await runPlugin({ CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }));
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: v, supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it('answers with empty stdin too', async () => {
    const r = await runPlugin({ CNI_COMMAND: 'VERSION' }, '');
    expect(r.code).toBe(0);
    expect(r.json?.['supportedVersions']).toContain('1.1.0');
  });
});

describe('ADD, CHECK, DEL in every version (fake daemon)', () => {
  it.each([...SUPPORTED_VERSIONS])('cniVersion %s', async (v) => {
    const id = `v${v.replace(/\./g, '')}`;
    const dns = { nameservers: ['10.32.0.1'], search: ['weavets.local'] };
    const add = await runPlugin(
      env('ADD', id, { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web-0;SOMETHING=else' }),
      conf(v, { dns }),
    );
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    const res = add.json as {
      cniVersion: string;
      interfaces: { name: string; mac: string; sandbox?: string }[];
      ips: Record<string, unknown>[];
      routes: unknown[];
      dns: unknown;
    };
    expect(res.cniVersion).toBe(v);
    expect(res.interfaces).toHaveLength(2);
    expect(res.interfaces[0]).toEqual({ name: expect.stringMatching(/^vwt/), mac: '02:ff:00:00:00:01' });
    expect(res.interfaces[1]).toEqual({ name: 'eth0', mac: expect.stringMatching(/^02:/), sandbox: NETNS });
    expect(res.ips).toHaveLength(1);
    expect(res.ips[0]).toMatchObject({
      address: expect.stringMatching(/^10\.32\.0\.\d+\/12$/),
      gateway: '10.32.0.1',
      interface: 1,
    });
    if (v.startsWith('0.')) expect(res.ips[0]!['version']).toBe('4');
    else expect(res.ips[0]).not.toHaveProperty('version');
    expect(res.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.32.0.1' }]);
    expect(res.dns).toEqual(dns);
    const ep = daemon.endpoints.get(`cni:wtnet:${id}:eth0`);
    expect(ep?.['name']).toBe('web-0');
    // A pod (containerd's CRI plugin sends its namespace too) is named POD.NAMESPACE.
    const pod = await runPlugin(
      env('ADD', `${id}p`, { CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x' }),
      conf(v, { dns }),
    );
    expect(pod.code).toBe(0);
    expect(daemon.endpoints.get(`cni:wtnet:${id}p:eth0`)?.['name']).toBe('web-0.shop');
    expect((await runPlugin(env('DEL', `${id}p`), conf(v))).code).toBe(0);

    if (v !== '0.3.0' && v !== '0.3.1') {
      const check = await runPlugin(env('CHECK', id), conf(v, { prevResult: res }));
      expect(check.code).toBe(0);
      expect(check.stdout).toBe('');
      // CHECK compares with prevResult: a different address there is a failure.
      const wrong = { ...res, ips: [{ ...res.ips[0], address: '10.32.9.9/12' }] };
      const bad = await runPlugin(env('CHECK', id), conf(v, { prevResult: wrong }));
      expect(bad.code).toBe(1);
      expect(bad.json).toMatchObject({ cniVersion: v, code: 103 });
    }
    const del = await runPlugin(env('DEL', id), conf(v, { prevResult: res }));
    expect(del.code).toBe(0);
    expect(del.stdout).toBe('');
    expect(daemon.endpoints.has(`cni:wtnet:${id}:eth0`)).toBe(false);
    // Idempotent: again, and without a netns.
    const again = await runPlugin(env('DEL', id, { CNI_NETNS: '' }), conf(v));
    expect(again.code).toBe(0);
    // Every DEL names the interface, so the daemon releases by (id, ifname) even with no endpoint.
    const dels = daemon.requests.filter((r) => r.path === '/detach' && r.body['id'] === `cni:wtnet:${id}:eth0`);
    expect(dels.length).toBeGreaterThanOrEqual(2);
    for (const d of dels) expect(d.body).toMatchObject({ ifname: 'eth0', missingOk: true });
  });

  it('honours runtimeConfig ips and mac; gateway off leaves no routes', async () => {
    const add = await runPlugin(
      env('ADD', 'rc1'),
      conf('1.0.0', {
        gateway: false,
        runtimeConfig: { ips: ['fd00::5/64', '10.32.7.7/12'], mac: '0A:58:0A:20:07:07' },
      }),
    );
    expect(add.code).toBe(0);
    const res = add.json as {
      ips: { address: string; gateway?: string }[];
      routes: unknown[];
      interfaces: { mac: string }[];
    };
    expect(res.ips[0]).toEqual({ address: '10.32.7.7/12', interface: 1 });
    expect(res.interfaces[1]!.mac).toBe('0a:58:0a:20:07:07');
    expect(res.routes).toEqual([]);
    const attach = daemon.requests.filter((r) => r.path === '/attach').pop()!;
    expect(attach.body).toMatchObject({ ip: '10.32.7.7/12', mac: '0a:58:0a:20:07:07', network: 'weavets' });
    expect(attach.body).not.toHaveProperty('gateway');
    await runPlugin(env('DEL', 'rc1'), conf('1.0.0'));
  });

  it('passes labels from args.cni.labels, runtimeConfig.labels and the pod of CNI_ARGS to attach', async () => {
    const add = await runPlugin(
      env('ADD', 'lb1', { CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db-0;IgnoreUnknown=1' }),
      conf('1.0.0', {
        args: {
          cni: {
            labels: [
              { key: 'app', value: 'db' },
              { key: 'tier', value: 'cold' },
            ],
          },
        },
        runtimeConfig: { labels: { tier: 'data' } },
      }),
    );
    expect(add.code, add.stdout).toBe(0);
    const attach = daemon.requests.filter((r) => r.path === '/attach').pop()!;
    expect(attach.body).toMatchObject({
      labels: { app: 'db', tier: 'data', 'k8s.namespace': 'shop', 'k8s.pod': 'db-0' },
    });
    await runPlugin(env('DEL', 'lb1'), conf('1.0.0'));
    const bad = await runPlugin(
      env('ADD', 'lb2'),
      conf('1.0.0', { args: { cni: { labels: [{ key: 'bad key', value: 'x' }] } } }),
    );
    expect(bad.code).toBe(1);
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringMatching(/args\.cni\.labels: label key/) });
  });

  it('CHECK of an endpoint the daemon does not hold fails with 103', async () => {
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: NETNS }],
      ips: [{ address: '10.32.0.9/12', interface: 0 }],
    };
    const r = await runPlugin(env('CHECK', 'ghost'), conf('1.0.0', { prevResult }));
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ code: 103, msg: expect.stringMatching(/holds no endpoint/) });
  });
});

describe('GC and STATUS (1.1.0)', () => {
  it("GC releases only this network's endpoints missing from the valid attachments", async () => {
    for (const id of ['keep1', 'keep2', 'stale1'])
      expect((await runPlugin(env('ADD', id), conf('1.1.0'))).code).toBe(0);
    daemon.endpoints.set('plain-cli-attach', { id: 'plain-cli-attach' });
    daemon.endpoints.set('cni:othernet:stale2:eth0', { id: 'cni:othernet:stale2:eth0' });
    const r = await runPlugin(
      { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' },
      conf('1.1.0', {
        'cni.dev/valid-attachments': [{ containerID: 'keep1', ifname: 'eth0' }],
        // The older key is read too.
        'cni.dev/attachments': [{ containerID: 'keep2', ifname: 'eth0' }],
      }),
    );
    expect(r.code).toBe(0);
    expect([...daemon.endpoints.keys()].sort()).toEqual([
      'cni:othernet:stale2:eth0',
      'cni:wtnet:keep1:eth0',
      'cni:wtnet:keep2:eth0',
      'plain-cli-attach',
    ]);
    daemon.endpoints.clear();
  });

  it('GC without valid attachments is an invalid config (7), not "release everything"', async () => {
    const r = await runPlugin({ CNI_COMMAND: 'GC' }, conf('1.1.0'));
    expect(r.json).toMatchObject({ code: 7 });
  });

  it('STATUS: 0 when ready, 50 when the daemon is not ready, 51 when it is unreachable', async () => {
    const ok = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf('1.1.0'));
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe('');
    daemon.ready = false;
    try {
      const notReady = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf('1.1.0'));
      expect(notReady.code).toBe(1);
      expect(notReady.json).toMatchObject({ cniVersion: '1.1.0', code: 50 });
    } finally {
      daemon.ready = true;
    }
    const gone = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf('1.1.0', { stateDir: path.join(tmp, 'nodaemon') }));
    expect(gone.json).toMatchObject({ code: 51, msg: expect.stringMatching(/unreachable/) });
  });

  it.each(['GC', 'STATUS'])('%s needs cniVersion 1.1.0 (1: incompatible version)', async (cmd) => {
    const r = await runPlugin({ CNI_COMMAND: cmd }, conf('1.0.0', { 'cni.dev/valid-attachments': [] }));
    expect(r.json).toMatchObject({ cniVersion: '1.0.0', code: 1 });
  });
});

describe('error codes', () => {
  const cases: [string, Record<string, string>, string, number, RegExp][] = [
    ['no CNI_COMMAND', {}, '{"cniVersion":"1.0.0"}', 4, /CNI_COMMAND/],
    ['unknown CNI_COMMAND', { CNI_COMMAND: 'FROB' }, '{"cniVersion":"1.0.0"}', 4, /CNI_COMMAND/],
    ['bad CNI_CONTAINERID', { ...env('ADD'), CNI_CONTAINERID: '-x' }, '', 4, /CNI_CONTAINERID/],
    ['missing CNI_IFNAME', { ...env('ADD'), CNI_IFNAME: '' }, '', 4, /CNI_IFNAME/],
    ['ifname too long', { ...env('ADD'), CNI_IFNAME: 'a23456789012345x' }, '', 4, /CNI_IFNAME/],
    ['missing CNI_NETNS on ADD', { ...env('ADD'), CNI_NETNS: '' }, '', 4, /CNI_NETNS/],
    ['bad CNI_ARGS', { ...env('ADD'), CNI_ARGS: 'novalue' }, '', 4, /CNI_ARGS/],
    ['empty stdin', env('ADD'), '', 6, /no network configuration/],
    ['junk stdin', env('ADD'), '{not json', 6, /not valid JSON/],
    ['stdin not an object', env('ADD'), '[1,2]', 6, /JSON object/],
    ['no cniVersion', env('ADD'), '{"name":"n","type":"weavets-cni"}', 7, /cniVersion/],
    ['no name', env('ADD'), '{"cniVersion":"1.0.0","type":"weavets-cni"}', 7, /name/],
    ['relative stateDir', env('ADD'), '{"cniVersion":"1.0.0","name":"n","stateDir":"rel"}', 7, /stateDir/],
    ['bad network', env('ADD'), '{"cniVersion":"1.0.0","name":"n","network":"a b"}', 7, /network/],
    [
      'bad runtimeConfig ips',
      env('ADD'),
      '{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["10.1.2.300/12"]}}',
      7,
      /ips/,
    ],
    ['bad runtimeConfig mac', env('ADD'), '{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"mac":"zz"}}', 7, /mac/],
    ['gateway not boolean', env('ADD'), '{"cniVersion":"1.0.0","name":"n","gateway":"yes"}', 7, /gateway/],
    [
      'bare address in runtimeConfig ips',
      env('ADD'),
      '{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["10.32.1.2"]}}',
      7,
      /ips/,
    ],
    ['unsupported version', env('ADD'), '{"cniVersion":"0.2.0","name":"n"}', 1, /not supported/],
    ['CHECK before 0.4.0', env('CHECK'), '{"cniVersion":"0.3.1","name":"n"}', 1, /CHECK needs/],
  ];
  it.each(cases)('%s', async (_what, e, stdin, code, msg) => {
    const r = await runPlugin(e, stdin);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ code, msg: expect.stringMatching(msg) });
    expect(typeof r.json?.['cniVersion']).toBe('string');
    expect(r.stderr).toMatch(/weavets-cni/);
  });

  it('a netns that does not exist on ADD is 3 (container unknown)', async () => {
    const r = await runPlugin(env('ADD', 'x', { CNI_NETNS: '/run/netns/does-not-exist-weavets' }), conf('1.0.0'));
    expect(r.json).toMatchObject({ code: 3 });
  });

  it('a CNI_NETNS that is a regular file is 4 (invalid environment), before the daemon is asked anything', async () => {
    const file = path.join(tmp, 'not-a-netns');
    fs.writeFileSync(file, 'x');
    const before = daemon.requests.length;
    for (const netns of [file, tmp]) {
      const r = await runPlugin(env('ADD', 'regular', { CNI_NETNS: netns }), conf('1.0.0'));
      expect(r.code).toBe(1);
      expect(r.json).toMatchObject({
        code: 4,
        msg: expect.stringMatching(/CNI_NETNS .* is not a network namespace file/),
      });
    }
    expect(daemon.requests.slice(before)).toEqual([]);
  });

  it.each(['ADD', 'DEL', 'CHECK'])('%s with no daemon is 11 (try again later)', async (cmd) => {
    const prevResult = { cniVersion: '1.0.0', interfaces: [], ips: [] };
    const r = await runPlugin(env(cmd), conf('1.0.0', { stateDir: path.join(tmp, 'nodaemon'), prevResult }));
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ cniVersion: '1.0.0', code: 11, msg: expect.stringMatching(/not running/) });
  });

  it.each([
    ['conflict', 100],
    ['full', 101],
    ['boom', 102],
    ['rejected', 104],
  ])('daemon failure on ADD of %s maps to %i', async (id, code) => {
    const r = await runPlugin(env('ADD', id), conf('0.4.0'));
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ cniVersion: '0.4.0', code, msg: expect.stringMatching(/^ADD: fake/) });
  });

  it('GC with no daemon is 11', async () => {
    const r = await runPlugin(
      { CNI_COMMAND: 'GC' },
      conf('1.1.0', { stateDir: path.join(tmp, 'nodaemon'), 'cni.dev/valid-attachments': [] }),
    );
    expect(r.json).toMatchObject({ code: 11 });
  });
});
