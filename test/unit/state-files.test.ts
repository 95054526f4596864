import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonStateFile, StateFileError } from '../../src/state/json-state-file';
import { StateDir } from '../../src/state/state-dir';
import { LINKS_STATE_FORMAT, LinkLedger } from '../../src/endpoint/ledger';
import { ENDPOINTS_STATE_FORMAT } from '../../src/endpoint/registry';
import { DOCKER_STATE_FORMAT } from '../../src/docker/plugin';
import { DNS_STATE_FORMAT } from '../../src/dns/service';
import { KEPT_STATE_FORMAT } from '../../src/datapath/fastdp/fastdp';

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-state-'));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function readJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

describe('StateDir', () => {
  it('names every file where earlier releases kept it', () => {
    const s = new StateDir('/var/lib/weavets');
    expect([s.socket, s.pid, s.log, s.peerName, s.links, s.endpoints, s.docker, s.dns, s.fastdpKept]).toEqual([
      '/var/lib/weavets/weavets.sock',
      '/var/lib/weavets/weavets.pid',
      '/var/lib/weavets/weavets.log',
      '/var/lib/weavets/peer-name',
      '/var/lib/weavets/links.json',
      '/var/lib/weavets/endpoints.json',
      '/var/lib/weavets/docker.json',
      '/var/lib/weavets/dns.json',
      '/var/lib/weavets/fastdp-kept.json',
    ]);
    expect([s.fileStore, s.meshStore]).toEqual(['/var/lib/weavets/store.json', '/var/lib/weavets/mesh-store.json']);
  });

  it('creates the directory root-only', () => {
    const s = new StateDir(path.join(dir, 'a', 'state'));
    s.ensure();
    expect(fs.statSync(s.root).mode & 0o777).toBe(0o700);
  });
});

describe('JsonStateFile', () => {
  it('writes {version, ...} root-only and leaves no temp file behind', async () => {
    const f = new JsonStateFile(path.join(dir, 'links.json'), LINKS_STATE_FORMAT);
    await f.write(['wtb0', 'vwt1']);
    expect(readJson(f.file)).toEqual({ version: 1, links: ['wtb0', 'vwt1'] });
    expect(fs.statSync(f.file).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['links.json']);
    expect(await f.read()).toEqual(['wtb0', 'vwt1']);
    expect(f.readSync()).toEqual(['wtb0', 'vwt1']);
  });

  it('reads no file as undefined', async () => {
    const f = new JsonStateFile(path.join(dir, 'links.json'), LINKS_STATE_FORMAT);
    expect(await f.read()).toBeUndefined();
    expect(f.readSync()).toBeUndefined();
  });

  it('concurrent writes land in call order: the last one wins', async () => {
    const f = new JsonStateFile(path.join(dir, 'links.json'), LINKS_STATE_FORMAT);
    await Promise.all([f.write(['a']), f.write(['a', 'b']), f.write(['c'])]);
    expect(await f.read()).toEqual(['c']);
    expect(fs.readdirSync(dir)).toEqual(['links.json']);
  });

  it('a corrupt file is a StateFileError naming the file and what to do', async () => {
    const file = path.join(dir, 'links.json');
    fs.writeFileSync(file, '["wtb0",');
    const f = new JsonStateFile(file, LINKS_STATE_FORMAT);
    const err = await f.read().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as StateFileError).code).toBe('EWEAVETS_STATE_INVALID');
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/not valid JSON .*fix the file or delete it/);
    expect((err as Error).cause).toBeInstanceOf(SyntaxError);
  });

  it('a field of the wrong type is refused, naming the field', () => {
    const f = new JsonStateFile(path.join(dir, 'links.json'), LINKS_STATE_FORMAT);
    expect(() => f.parse('{"version": 1, "links": ["wtb0", 7]}')).toThrow(
      /links\.json: field 'links' must be an array of non-empty strings/,
    );
    expect(() => f.parse('{"version": 1}')).toThrow(/field 'links' must be an array/);
  });

  it('a file from a newer weavets is refused, saying so', () => {
    const f = new JsonStateFile(path.join(dir, 'links.json'), LINKS_STATE_FORMAT);
    expect(() => f.parse('{"version": 2, "links": []}')).toThrow(
      /written by a newer weavets \(format version 2; this one reads 1\)/,
    );
    expect(() => f.parse('{"version": "1", "links": []}')).toThrow(/unknown format version "1"/);
  });
});

describe('upgrading from unversioned state files', () => {
  it('links.json: a bare array is read, and rewritten versioned at the next change', async () => {
    const file = new StateDir(dir).links;
    fs.writeFileSync(file, JSON.stringify(['wtb0', 'vwt1']) + '\n');
    const ledger = await LinkLedger.load(dir);
    expect(ledger.list()).toEqual(['wtb0', 'vwt1']);
    await ledger.record('wtv000001');
    expect(readJson(file)).toEqual({ version: 1, links: ['wtb0', 'vwt1', 'wtv000001'] });
    expect((await LinkLedger.load(dir)).list()).toEqual(['wtb0', 'vwt1', 'wtv000001']);
  });

  it('links.json: an old file that is not a list of names is refused, not half-read', async () => {
    fs.writeFileSync(new StateDir(dir).links, JSON.stringify(['wtb0', 3]));
    await expect(LinkLedger.load(dir)).rejects.toThrow(/links\.json: field 'links' must be an array/);
  });

  it('endpoints.json as the previous release wrote it', () => {
    const old = {
      endpoints: [
        {
          id: 'ctr1',
          network: 'default',
          ifname: 'eth0',
          address: '10.32.0.2/12',
          mac: '02:00:0a:20:00:02',
          netns: '/proc/123/ns/net',
          hostVeth: 'vwtabcdef12',
          hostMac: '02:11:22:33:44:55',
          name: 'web',
          gateway: '10.32.0.1',
          labels: { app: 'web' },
        },
        {
          id: 'docker:e1',
          network: 'appnet',
          ifname: 'eth0',
          address: '10.32.0.3/12',
          mac: '02:00:0a:20:00:03',
          netns: '',
          hostVeth: 'vwt0123',
          externalAddress: true,
        },
      ],
      exposed: [{ network: 'default', address: '10.32.0.1/12' }],
    };
    const f = new JsonStateFile(new StateDir(dir).endpoints, ENDPOINTS_STATE_FORMAT);
    expect(f.parse(JSON.stringify(old))).toEqual(old);
    expect(() => f.parse(JSON.stringify({ endpoints: [{ ...old.endpoints[0], address: 5 }] }))).toThrow(
      /field 'endpoints\[0\]\.address' must be a string/,
    );
  });

  it('docker.json as the previous release wrote it (ids such as __proto__ are plain keys)', () => {
    const text =
      '{"networks": {"__proto__": {"segment": "blue", "gateway": "10.32.0.1/12", "options": {"weavets.segment": "blue"}}},' +
      ' "addresses": {"10.32.0.5": {"id": "docker:pool", "ifname": "10.32.0.5"}},' +
      ' "endpoints": {"e1": {"networkId": "__proto__", "address": "10.32.0.5/12", "sandbox": "/var/run/docker/netns/x",' +
      ' "ports": [{"proto": "tcp", "port": 80, "hostIp": "", "hostPort": 8080, "hostPortEnd": 8080}]}}}';
    const f = new JsonStateFile(new StateDir(dir).docker, DOCKER_STATE_FORMAT);
    const state = f.parse(text);
    expect([...state.networks.keys()]).toEqual(['__proto__']);
    expect(state.networks.get('__proto__')).toEqual({
      segment: 'blue',
      gateway: '10.32.0.1/12',
      options: { 'weavets.segment': 'blue' },
    });
    expect(state.addresses.get('10.32.0.5')).toEqual({ id: 'docker:pool', ifname: '10.32.0.5' });
    expect(state.endpoints.get('e1')?.ports).toEqual([
      { proto: 'tcp', port: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080 },
    ]);
    expect(() =>
      f.parse('{"endpoints": {"e1": {"networkId": "n", "address": "a", "ports": [{"proto": "icmp"}]}}}'),
    ).toThrow(/endpoints\["e1"\]\.ports\[0\]\.proto' must be tcp, udp or sctp/);
  });

  it('dns.json as the previous release wrote it', () => {
    const f = new JsonStateFile(new StateDir(dir).dns, DNS_STATE_FORMAT);
    expect(f.parse('{"records": [{"name": "db", "ip": "10.32.0.9"}]}')).toEqual([{ name: 'db', ip: '10.32.0.9' }]);
    expect(() => f.parse('{"records": [{"name": "db"}]}')).toThrow(/records\[0\]\.ip/);
  });

  it('fastdp-kept.json as the previous release wrote it', () => {
    const f = new JsonStateFile(new StateDir(dir).fastdpKept, KEPT_STATE_FORMAT);
    const kept = f.parse('{"networks":[{"id":1,"vteps":["192.168.1.2"],"macs":[[2199023255553,"192.168.1.2"]]}]}\n');
    expect([...kept.networks]).toEqual([[1, { vteps: ['192.168.1.2'], macs: [[2199023255553, '192.168.1.2']] }]]);
    expect(() => f.parse('{"networks":[{"id":16777215,"vteps":[],"macs":[]}]}')).toThrow(/networks\[0\]\.id/);
    expect(() => f.parse('{"networks":[{"id":1,"vteps":["x"],"macs":[]}]}')).toThrow(/vteps' must hold IPv4/);
  });
});
