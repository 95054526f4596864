/**
 * weavets-cni against a real daemon: one host namespace running weavets, containers as
 * namespaces, the plugin run inside the host namespace the way a runtime runs it (env
 * and stdin). Covers what needs real links: ADD/CHECK/DEL in every version, runtime ips
 * and mac, idempotent DEL after the namespace is gone, GC, STATUS, concurrency, and
 * chaining with the reference tuning plugin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, createLab, type Host, type Lab, type Namespace } from './harness';

const PLUGIN = path.join(REPO_ROOT, 'bin', 'weavets-cni');
const REF_PLUGINS = '/usr/lib/cni';

interface EndpointJson {
  id: string;
  address: string;
  mac: string;
  hostVeth: string;
  netns: string;
  name?: string;
}

interface CniResultJson {
  cniVersion: string;
  interfaces: { name: string; mac: string; sandbox?: string }[];
  ips: { address: string; gateway?: string; interface: number; version?: string }[];
  routes: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; search?: string[] };
}

let lab: Lab;
let host: Host;

function conf(version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: version, name: 'wtnet', type: 'weavets-cni', stateDir: host.stateDir, ...extra };
}

async function cni(
  command: string,
  ctr: Namespace | undefined,
  config: Record<string, unknown>,
  opts: { id?: string; ifname?: string; args?: string; netns?: string; plugin?: string } = {},
): Promise<{ code: number | null; json: Record<string, unknown> | undefined; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    CNI_COMMAND: command,
    CNI_CONTAINERID: opts.id ?? ctr?.name ?? '',
    CNI_NETNS: opts.netns ?? ctr?.netns ?? '',
    CNI_IFNAME: opts.ifname ?? 'eth0',
    CNI_PATH: REF_PLUGINS,
    CNI_ARGS: opts.args ?? '',
  };
  const argv = opts.plugin ? [opts.plugin] : [process.execPath, PLUGIN];
  const r = await lab.exec(host, argv, { env, input: JSON.stringify(config), timeoutMs: 30_000 });
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { code: r.code, json, stdout: r.stdout, stderr: r.stderr };
}

async function addOk(
  ctr: Namespace,
  version: string,
  extra: Record<string, unknown> = {},
  args = '',
): Promise<CniResultJson> {
  const r = await cni('ADD', ctr, conf(version, extra), { args });
  if (r.code !== 0) throw new Error(`ADD ${ctr.name} failed: ${r.stdout} ${r.stderr}\n${lab.logTail(host, 20)}`);
  return r.json as unknown as CniResultJson;
}

async function endpoints(): Promise<EndpointJson[]> {
  return lab.weavetsJson<EndpointJson[]>(host, ['ps']);
}

async function linkExists(ns: Namespace | Host, name: string): Promise<boolean> {
  return (await lab.exec(ns, ['ip', 'link', 'show', name])).code === 0;
}

beforeAll(async () => {
  lab = await createLab();
  host = await lab.addHost('h1');
  await lab.launch(host);
}, 90_000);

afterAll(async () => {
  await lab?.destroy();
});

describe('weavets-cni with a real daemon', () => {
  it.each(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])('ADD, CHECK, DEL in cniVersion %s', async (version) => {
    const ctr = await lab.addContainer(host, `v${version.replace(/\./g, '')}`);
    const res = await addOk(ctr, version);
    expect(res.cniVersion).toBe(version);
    const [hostIf, ctrIf] = res.interfaces;
    expect(ctrIf).toMatchObject({ name: 'eth0', sandbox: ctr.netns });
    expect(ctrIf!.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(hostIf!.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(hostIf).not.toHaveProperty('sandbox');
    const ip = res.ips[0]!;
    expect(ip.interface).toBe(1);
    expect(ip.version === '4').toBe(version.startsWith('0.'));
    expect(res.routes).toEqual([{ dst: '0.0.0.0/0', gw: ip.gateway }]);
    // The interface, address, mac and default route are really there.
    const addr = await lab.execOk(ctr, ['ip', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(addr.stdout).toContain(`inet ${ip.address}`);
    const link = await lab.execOk(ctr, ['ip', '-o', 'link', 'show', 'dev', 'eth0']);
    expect(link.stdout).toContain(ctrIf!.mac);
    const route = await lab.execOk(ctr, ['ip', 'route', 'show', 'default']);
    expect(route.stdout).toContain(`via ${ip.gateway} dev eth0`);
    expect(await linkExists(host, hostIf!.name)).toBe(true);
    // The gateway is the host's own address on the network: reachable.
    expect((await lab.ping(ctr, ip.gateway!, { count: 1 })).ok).toBe(true);

    if (version !== '0.3.0' && version !== '0.3.1') {
      const check = await cni('CHECK', ctr, conf(version, { prevResult: res }));
      expect(check.stderr).toBe('');
      expect(check.code).toBe(0);
    }
    const del = await cni('DEL', ctr, conf(version, { prevResult: res }));
    expect(del.code).toBe(0);
    expect(await linkExists(host, hostIf!.name)).toBe(false);
    expect(await linkExists(ctr, 'eth0')).toBe(false);
    expect((await endpoints()).map((e) => e.id)).not.toContain(`cni:wtnet:${ctr.name}:eth0`);
    const again = await cni('DEL', ctr, conf(version, { prevResult: res }));
    expect(again.code).toBe(0);
  });

  it('CHECK notices a removed address and a removed route', async () => {
    const ctr = await lab.addContainer(host, 'chk');
    const res = await addOk(ctr, '1.0.0');
    await lab.execOk(ctr, ['ip', 'route', 'del', 'default']);
    const noRoute = await cni('CHECK', ctr, conf('1.0.0', { prevResult: res }));
    expect(noRoute.json).toMatchObject({ code: 103, msg: expect.stringMatching(/no default route/) });
    await lab.execOk(ctr, ['ip', 'addr', 'del', res.ips[0]!.address, 'dev', 'eth0']);
    const noAddr = await cni('CHECK', ctr, conf('1.0.0', { prevResult: res }));
    expect(noAddr.json).toMatchObject({ code: 103, msg: expect.stringMatching(/lacks address/) });
    expect((await cni('DEL', ctr, conf('1.0.0'))).code).toBe(0);
  });

  it('honours runtimeConfig ips and mac, names the endpoint POD.NAMESPACE from K8S_POD_NAME and K8S_POD_NAMESPACE, ignores unknown CNI_ARGS', async () => {
    const ctr = await lab.addContainer(host, 'rc');
    const res = await addOk(
      ctr,
      '1.0.0',
      { runtimeConfig: { ips: ['10.32.200.7/12'], mac: '0a:58:0a:20:c8:07' } },
      'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-7;K8S_POD_INFRA_CONTAINER_ID=abc;WHATEVER=1',
    );
    expect(res.ips[0]!.address).toBe('10.32.200.7/12');
    expect(res.interfaces[1]!.mac).toBe('0a:58:0a:20:c8:07');
    const ep = (await endpoints()).find((e) => e.id === 'cni:wtnet:rc:eth0');
    expect(ep).toMatchObject({ name: 'web-7.default', address: '10.32.200.7/12', mac: '0a:58:0a:20:c8:07' });
    expect((await cni('DEL', ctr, conf('1.0.0'))).code).toBe(0);
  });

  it('DEL succeeds when the namespace is already gone, or CNI_NETNS is empty', async () => {
    const ctr = await lab.addContainer(host, 'gone');
    const res = await addOk(ctr, '1.0.0');
    await lab.execOk(host, ['ip', 'netns', 'del', ctr.netnsName]);
    const del = await cni('DEL', ctr, conf('1.0.0', { prevResult: res }), { netns: '' });
    expect(del.code).toBe(0);
    expect((await endpoints()).map((e) => e.id)).not.toContain('cni:wtnet:gone:eth0');
    expect(await linkExists(host, res.interfaces[0]!.name)).toBe(false);
    // And for a container the daemon never saw.
    expect((await cni('DEL', undefined, conf('1.0.0'), { id: 'never-added', netns: '' })).code).toBe(0);
  });

  it('concurrent ADDs and DELs of different containers get distinct addresses and leave nothing behind', async () => {
    const ctrs = await Promise.all(['p1', 'p2', 'p3', 'p4', 'p5', 'p6'].map((n) => lab.addContainer(host, n)));
    const results = await Promise.all(ctrs.map((c) => addOk(c, '1.0.0')));
    const addrs = results.map((r) => r.ips[0]!.address);
    expect(new Set(addrs).size).toBe(ctrs.length);
    expect((await lab.ping(ctrs[0]!, addrs[5]!.split('/')[0]!, { count: 1 })).ok).toBe(true);
    const dels = await Promise.all(ctrs.map((c) => cni('DEL', c, conf('1.0.0'))));
    expect(dels.map((d) => d.code)).toEqual(ctrs.map(() => 0));
    const left = (await endpoints()).filter((e) => /^cni:wtnet:p\d:/.test(e.id));
    expect(left).toEqual([]);
  });

  it('GC releases endpoints missing from cni.dev/valid-attachments and keeps the rest', async () => {
    const [a, b] = await Promise.all([lab.addContainer(host, 'gca'), lab.addContainer(host, 'gcb')]);
    await addOk(a, '1.1.0');
    const resB = await addOk(b, '1.1.0');
    await lab.attach(host, await lab.addContainer(host, 'plain'));
    const gc = await cni(
      'GC',
      undefined,
      conf('1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'gca', ifname: 'eth0' }] }),
    );
    expect(gc.code).toBe(0);
    const ids = (await endpoints()).map((e) => e.id);
    expect(ids).toContain('cni:wtnet:gca:eth0');
    expect(ids).toContain('plain');
    expect(ids).not.toContain('cni:wtnet:gcb:eth0');
    expect(await linkExists(host, resB.interfaces[0]!.name)).toBe(false);
    await cni('DEL', a, conf('1.1.0'));
  });

  it('chains with the reference tuning plugin (prevResult passed along)', async () => {
    const tuning = path.join(REF_PLUGINS, 'tuning');
    if (!fs.existsSync(tuning)) return;
    const ctr = await lab.addContainer(host, 'tun');
    const res = await addOk(ctr, '1.0.0');
    const t = await cni(
      'ADD',
      ctr,
      { cniVersion: '1.0.0', name: 'wtnet', type: 'tuning', mtu: 1300, prevResult: res },
      { plugin: tuning },
    );
    expect(t.code, t.stdout + t.stderr).toBe(0);
    expect((t.json as unknown as CniResultJson).interfaces[1]!.mac).toBe(res.interfaces[1]!.mac);
    expect((await lab.execOk(ctr, ['ip', '-o', 'link', 'show', 'eth0'])).stdout).toContain('mtu 1300');
    expect((await cni('DEL', ctr, conf('1.0.0'))).code).toBe(0);
  });

  it('the native fast path gives the same answers as the Node plugin, and hands over to it when the daemon is away', async () => {
    // As setup-cni installs it: the binary, and beside it the fallback file naming the Node plugin.
    const binDir = path.join(lab.dir, 'cni-bin');
    await lab.weavetsOk(host, ['setup-cni', '--bin-dir', binDir, '--conf-dir', path.join(lab.dir, 'cni-conf')]);
    const fast = path.join(binDir, 'weavets-cni');
    expect(fs.readFileSync(fast).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    for (const version of ['0.4.0', '1.0.0', '1.1.0']) {
      const ctr = await lab.addContainer(host, `f${version.replace(/\./g, '')}`);
      const add = await cni('ADD', ctr, conf(version), { plugin: fast });
      expect(add.code).toBe(0);
      const res = add.json as unknown as CniResultJson;
      expect(res.cniVersion).toBe(version);
      expect(res.interfaces[1]).toMatchObject({ name: 'eth0', sandbox: ctr.netns });
      // weavets DNS answers on the host's address on the network, which is the gateway.
      expect(res.dns?.nameservers).toEqual([res.ips[0]!.gateway]);
      expect(res.dns?.search).toContain('weavets.local');
      const addr = await lab.execOk(ctr, ['ip', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(addr.stdout).toContain(`inet ${res.ips[0]!.address}`);
      expect((await cni('CHECK', ctr, conf(version, { prevResult: res }), { plugin: fast })).code).toBe(0);
      expect((await cni('DEL', ctr, conf(version, { prevResult: res }), { plugin: fast })).code).toBe(0);
      expect(await linkExists(ctr, 'eth0')).toBe(false);
    }
    // Errors come back as the plugin's own CNI error JSON and exit status.
    const badCtr = await lab.addContainer(host, 'fbad');
    const bad = await cni('ADD', badCtr, conf('1.0.0', { network: 'no such/network' }), { plugin: fast });
    expect(bad.code).toBe(1);
    expect(bad.json).toMatchObject({ cniVersion: '1.0.0', code: 7 });
    // A configuration the forwarder will not parse (escapes in stateDir) goes to the Node plugin.
    const escaped = JSON.stringify(conf('1.0.0')).replace(/"stateDir":"\//, '"stateDir":"\\/');
    const r = await lab.exec(host, [fast], {
      env: {
        PATH: process.env['PATH'],
        CNI_COMMAND: 'VERSION',
        CNI_CONTAINERID: '',
        CNI_NETNS: '',
        CNI_IFNAME: 'eth0',
        CNI_PATH: REF_PLUGINS,
      },
      input: escaped,
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      cniVersion: '1.0.0',
      supportedVersions: expect.arrayContaining(['1.1.0']),
    });
  });

  it('STATUS is ready with the daemon up and 51 once it is stopped; ADD is then 11', async () => {
    const ok = await cni('STATUS', undefined, conf('1.1.0'));
    expect(ok.code).toBe(0);
    await lab.stopDaemon(host);
    const down = await cni('STATUS', undefined, conf('1.1.0'));
    expect(down.json).toMatchObject({ code: 51 });
    const ctr = await lab.addContainer(host, 'late');
    const add = await cni('ADD', ctr, conf('1.0.0'));
    expect(add.json).toMatchObject({ code: 11 });
    // The native fast path, with no daemon to forward to, hands over to the Node plugin.
    const fast = path.join(lab.dir, 'cni-bin', 'weavets-cni');
    const fastAdd = await cni('ADD', ctr, conf('1.0.0'), { plugin: fast });
    expect(fastAdd.code).toBe(1);
    expect(fastAdd.json).toMatchObject({ cniVersion: '1.0.0', code: 11 });
    const fastStatus = await cni('STATUS', undefined, conf('1.1.0'), { plugin: fast });
    expect(fastStatus.json).toMatchObject({ code: 51 });
  });
});
