/**
 * Which daemon the CNI plugin talks to: the top-level "stateDir" only (never one nested
 * in "args", which a meta-plugin may fill from a pod annotation), and only a state dir and
 * socket owned by root that no one else can write. Both the native forwarder
 * (native/build/Release/weavets-cni, installed as setup-cni does: the binary and its
 * weavets-cni.fallback naming the Node plugin) and the Node plugin (dist/cni/main.js).
 * Fake daemons on unix sockets in temp dirs; needs root (uid 0 owns the sockets).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..', '..');
const NODE_PLUGIN = path.join(ROOT, 'dist', 'cni', 'main.js');
const NATIVE = path.join(ROOT, 'native', 'build', 'Release', 'weavets-cni');

interface Run {
  code: number | null;
  json: Record<string, unknown> | undefined;
  stderr: string;
}

function run(argv: string[], env: Record<string, string>, stdin: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
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
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      resolve({ code, json, stderr });
    });
    child.stdin.end(stdin);
  });
}

/** A daemon stand-in: answers /cni (the forwarder) and /readyz (the Node plugin's STATUS); counts requests. */
class FakeDaemon {
  hits: string[] = [];
  private server: http.Server | undefined;
  constructor(readonly stateDir: string) {}
  async start(): Promise<void> {
    fs.mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.stateDir, 0o700);
    this.server = http.createServer((req, res) => {
      this.hits.push(`${req.method} ${req.url}`);
      req.resume();
      if (req.url === '/cni') {
        const body = '{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}\n';
        res.writeHead(200, { 'x-cni-exit': '0', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      } else {
        res.end('ready\n');
      }
    });
    const sock = path.join(this.stateDir, 'weavets.sock');
    await new Promise<void>((r) => this.server!.listen(sock, r));
    fs.chmodSync(sock, 0o600);
  }
  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

const statusEnv = { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' };

describe('CNI plugin: which state dir', () => {
  let tmp: string;
  let bin: string;
  let good: FakeDaemon;
  let nested: FakeDaemon;
  const daemons: FakeDaemon[] = [];

  beforeAll(() => {
    for (const f of [NODE_PLUGIN, NATIVE])
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: build first (npm ci / npx tsc)`);
    if (process.getuid?.() !== 0) throw new Error('needs root: the sockets must be owned by uid 0');
  });

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-cni-sd-'));
    bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    fs.copyFileSync(NATIVE, path.join(bin, 'weavets-cni'));
    fs.chmodSync(path.join(bin, 'weavets-cni'), 0o755);
    fs.writeFileSync(path.join(bin, 'weavets-cni.fallback'), `${process.execPath}\n${NODE_PLUGIN}\n`);
    good = new FakeDaemon(path.join(tmp, 'good'));
    nested = new FakeDaemon(path.join(tmp, 'nested'));
    daemons.push(good, nested);
    await good.start();
    await nested.start();
  });

  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  afterAll(() => undefined);

  /** "args" (with its own stateDir) comes first, so "the first stateDir in the text" is the nested one. */
  function conf(stateDir: string): string {
    return `{"cniVersion":"1.1.0","name":"wtnet","type":"weavets-cni","args":{"cni":{"x":"}"},"stateDir":${JSON.stringify(nested.stateDir)}},"stateDir":${JSON.stringify(stateDir)}}`;
  }

  it('the native forwarder reads the top-level stateDir, not one nested in args', async () => {
    const r = await run([path.join(bin, 'weavets-cni')], statusEnv, conf(good.stateDir));
    expect(r.code, r.stderr).toBe(0);
    expect(good.hits).toEqual(['POST /cni']);
    expect(nested.hits).toEqual([]);
  });

  it('the native forwarder is not fooled by a stateDir inside strings, arrays or deeper objects', async () => {
    const evil = JSON.stringify(nested.stateDir);
    const good_ = JSON.stringify(good.stateDir);
    const head = '"cniVersion":"1.1.0","name":"wtnet","type":"weavets-cni"';
    const confs = [
      `{${head},"note":"\\"stateDir\\": ${evil.slice(1, -1)}","stateDir":${good_}}`,
      `{${head},"list":[{"stateDir":${evil}},"]",{"a":["stateDir",${evil}]}],"stateDir":${good_}}`,
      `{ ${head} , "args" : { "labels" : [ { "key" : "stateDir" , "value" : ${evil} } ] , "stateDir" : ${evil} } ,\n "stateDir" :\t${good_} }`,
      `{${head},"n":-1.5e3,"t":true,"z":null,"args":{"cni":{"stateDir":${evil}}},"stateDir":${good_}}`,
    ];
    for (const c of confs) {
      expect(JSON.parse(c).stateDir, c).toBe(good.stateDir);
      const r = await run([path.join(bin, 'weavets-cni')], statusEnv, c);
      expect(r.code, `${c}\n${r.stderr}`).toBe(0);
    }
    expect(good.hits).toEqual(confs.map(() => 'POST /cni'));
    expect(nested.hits).toEqual([]);
  });

  it('the Node plugin reads the top-level stateDir, not one nested in args', async () => {
    const r = await run([process.execPath, NODE_PLUGIN], statusEnv, conf(good.stateDir));
    expect(r.code, r.stderr).toBe(0);
    expect(good.hits).toEqual(['GET /readyz']);
    expect(nested.hits).toEqual([]);
  });

  it('a duplicate or escaped top-level stateDir goes to the Node plugin, which takes what JSON.parse takes', async () => {
    const dup = `{"cniVersion":"1.1.0","name":"wtnet","type":"weavets-cni","stateDir":${JSON.stringify(nested.stateDir)},"stateDir":${JSON.stringify(good.stateDir)}}`;
    const r = await run([path.join(bin, 'weavets-cni')], statusEnv, dup);
    expect(r.code, r.stderr).toBe(0);
    expect(good.hits).toEqual(['GET /readyz']);
    const escaped = `{"cniVersion":"1.1.0","name":"wtnet","type":"weavets-cni","state\\u0044ir":${JSON.stringify(good.stateDir)}}`;
    const r2 = await run([path.join(bin, 'weavets-cni')], statusEnv, escaped);
    expect(r2.code, r2.stderr).toBe(0);
    expect(good.hits).toEqual(['GET /readyz', 'GET /readyz']);
    expect(nested.hits).toEqual([]);
  });

  const unsafe: [string, (d: FakeDaemon) => void, RegExp][] = [
    [
      'a state dir others can write',
      (d) => fs.chmodSync(d.stateDir, 0o777),
      /good is writable by group or others \(mode 0777\)/,
    ],
    [
      'a state dir not owned by root',
      (d) => fs.chownSync(d.stateDir, 1000, 1000),
      /good is owned by uid 1000, not root/,
    ],
    [
      'a socket not owned by root',
      (d) => fs.chownSync(path.join(d.stateDir, 'weavets.sock'), 1000, 1000),
      /weavets\.sock is owned by uid 1000, not root/,
    ],
    [
      'a socket others can write',
      (d) => fs.chmodSync(path.join(d.stateDir, 'weavets.sock'), 0o666),
      /weavets\.sock is writable by group or others/,
    ],
    [
      'a parent directory others can write (not sticky)',
      () => fs.chmodSync(tmp, 0o777),
      /weavets-cni-sd-\w+ is writable by group or others/,
    ],
  ];

  it.each(unsafe)(
    'refuses %s: CNI error 7 with the reason, nothing sent (both plugins)',
    async (_what, spoil, reason) => {
      spoil(good);
      for (const argv of [[path.join(bin, 'weavets-cni')], [process.execPath, NODE_PLUGIN]]) {
        const r = await run(argv, statusEnv, conf(good.stateDir));
        expect(r.code).toBe(1);
        expect(r.json).toMatchObject({
          cniVersion: '1.1.0',
          code: 7,
          msg: expect.stringMatching(/^refusing stateDir /),
        });
        expect(r.json?.['msg']).toMatch(reason);
      }
      // Without the Node plugin to hand over to, the forwarder answers the CNI error itself.
      fs.rmSync(path.join(bin, 'weavets-cni.fallback'));
      const r = await run([path.join(bin, 'weavets-cni')], statusEnv, conf(good.stateDir));
      expect(r.code).toBe(1);
      expect(r.json).toMatchObject({ code: 7, msg: expect.stringMatching(reason) });
      expect(good.hits).toEqual([]);
      expect(nested.hits).toEqual([]);
    },
  );

  it('connects through a symlinked state dir to the checked real path', async () => {
    const link = path.join(tmp, 'link');
    fs.symlinkSync(good.stateDir, link);
    const r = await run([path.join(bin, 'weavets-cni')], statusEnv, conf(link));
    expect(r.code, r.stderr).toBe(0);
    expect(good.hits).toEqual(['POST /cni']);
  });
});
