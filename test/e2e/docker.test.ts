/**
 * Real Docker with the weavets network + IPAM plugin: two lab hosts, each with a weavets
 * daemon and a dockerd beside it, one etcd (in h1's namespace) so IPAM is shared. See
 * test/e2e/docker-lab.ts for how dockerd runs here.
 */
import * as http from 'node:http';
import type { NetworkInfo } from '../../src/endpoint/types';
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest';
import { createLab, type Lab } from '../net/harness';
import { ETCD_TOOLS } from './etcd';
import { describeWithTools } from '../require-tools';
import {
  DOCKER_IMAGE,
  docker,
  DOCKER_TOOLS,
  dockerOk,
  startDockerd,
  stopDockerd,
  weavetsDockerArgs,
  type DockerHost,
  startDockerPair,
  stopDockerPair,
  type DockerPair,
} from './docker-lab';

const describeDocker = describeWithTools({ commands: DOCKER_TOOLS, files: ETCD_TOOLS.files });

let lab: Lab;
const pair: DockerPair = { hosts: [] };
const hosts = pair.hosts;

interface EndpointJson {
  id: string;
  address: string;
  hostVeth: string;
}

/** POST to the plugin socket directly; answers status and parsed body. */
function pluginPost(
  socket: string,
  method: string,
  body: string | undefined,
  contentType?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, path: method, method: 'POST', headers: contentType ? { 'content-type': contentType } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function launch(d: DockerHost, peers: string[]): Promise<void> {
  await lab.launch(d.host, peers, ['--etcd', pair.etcd!.url, ...weavetsDockerArgs(d)]);
}

async function containerIp(d: DockerHost, name: string, network: string): Promise<string> {
  const ip = (
    await dockerOk(lab, d, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name])
  ).trim();
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`no address for ${name} on ${network}: ${ip}`);
  return ip;
}

async function dockerEndpoints(d: DockerHost): Promise<EndpointJson[]> {
  return (await lab.weavetsJson<EndpointJson[]>(d.host, ['ps'])).filter((e) => e.id.startsWith('docker:'));
}

/** Addresses in use on `network` (appnet's are its own subnet's: docs/DOCKER.md, Subnet). */
async function ipamUsed(d: DockerHost, network = 'appnet'): Promise<number> {
  const st = await lab.weavetsJson<{ networks: { network: string; used: number }[] }>(d.host, ['status', 'ipam']);
  return st.networks.find((n) => n.network === network)?.used ?? 0;
}

describeDocker('Docker network and IPAM plugin on two hosts', () => {
  beforeAll(async () => {
    lab = await createLab();
    await startDockerPair(lab, pair);
    const h1 = hosts[0]!.host;
    await launch(hosts[0]!, []);
    await launch(hosts[1]!, [h1.ip]);
  }, 240_000);

  afterAll(async () => {
    await stopDockerPair(lab, pair);
  }, 180_000);

  it('creates the default weavets network in Docker at launch', async () => {
    for (const d of hosts) {
      const out = await lab.waitFor(
        async () => {
          const r = await docker(lab, d, [
            'network',
            'ls',
            '--filter',
            'name=^weavets$',
            '--format',
            '{{.Name}} {{.Driver}}',
          ]);
          return r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
        },
        { what: `default network on ${d.host.name}`, timeoutMs: 20_000, intervalMs: 500 },
      );
      expect(out).toBe(`weavets ${d.driver}`);
    }
  });

  it('containers on a network created on both hosts ping each other by address', async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    // A route of someone else's in the main table overlapping the range: Docker would ask
    // for another pool forever; the plugin stops that with an error saying what to do.
    await lab.execOk(d1.host, ['ip', 'route', 'add', '10.40.0.0/16', 'dev', 'lo']);
    const clash = await docker(lab, d1, ['network', 'create', '-d', d1.driver, '--ipam-driver', d1.driver, 'appnet']);
    await lab.execOk(d1.host, ['ip', 'route', 'del', '10.40.0.0/16', 'dev', 'lo']);
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toMatch(
      /overlaps the weavets range 10\.32\.0\.0\/12.*add --subnet 10\.32\.0\.0\/12, or remove that route/,
    );
    // The command as written: no --subnet. The hosts already route the range (the
    // default network's gateway), but in their own table, which Docker does not check.
    for (const d of hosts)
      await dockerOk(lab, d, ['network', 'create', '-d', d.driver, '--ipam-driver', d.driver, 'appnet']);
    for (const d of hosts) {
      expect((await lab.execOk(d.host, ['ip', '-4', 'route', 'show', 'table', 'main'])).stdout).not.toMatch(
        /^10\.(3[2-9]|4[0-7])\./m,
      );
      expect((await lab.execOk(d.host, ['ip', '-4', 'route', 'show', 'table', '6783'])).stdout).toMatch(
        /^10\.32\.0\.0\/12 dev \S+ .*src 10\./m,
      );
      expect((await lab.execOk(d.host, ['ip', 'rule'])).stdout).toMatch(
        /^6783:\s+from all to 10\.32\.0\.0\/12 lookup 6783/m,
      );
    }
    await dockerOk(lab, d1, ['run', '-d', '--name', 'db', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '600']);
    await dockerOk(lab, d2, ['run', '-d', '--name', 'app', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '600']);
    const ip1 = await containerIp(d1, 'db', 'appnet');
    const ip2 = await containerIp(d2, 'app', 'appnet');
    expect(ip1).not.toBe(ip2);
    await lab.waitFor(
      async () => (await docker(lab, d2, ['exec', 'app', 'ping', '-c', '1', '-W', '1', ip1])).code === 0,
      {
        what: 'app (h2) to ping db (h1)',
        timeoutMs: 30_000,
        intervalMs: 500,
      },
    );
    expect(await dockerOk(lab, d1, ['exec', 'db', 'ping', '-c', '3', '-W', '2', ip2])).toMatch(/3 packets received/);
    // The container got our interface, gateway and route.
    const route = await dockerOk(lab, d1, ['exec', 'db', 'ip', 'route']);
    expect(route).toMatch(/^default via \d+\.\d+\.\d+\.\d+ dev eth0/m);
    // inspect shows the range and a gateway from our IPAM.
    const insp = JSON.parse(await dockerOk(lab, d1, ['network', 'inspect', 'appnet'])) as {
      Driver: string;
      IPAM: { Driver: string; Config: { Subnet: string; Gateway: string }[] };
    }[];
    expect(insp[0]!.Driver).toBe(d1.driver);
    expect(insp[0]!.IPAM.Driver).toBe(d1.driver);
    expect(insp[0]!.IPAM.Config[0]!.Subnet).toBe('10.32.0.0/12');
    // Different networks are different segments: a container on the default network is not reachable from appnet.
    expect((await dockerEndpoints(d1)).length).toBe(1);
  });

  it('containers find containers of other hosts by name, with no flags (issue #8)', async () => {
    // Reuses appnet, db (h1) and app (h2) of the case above. Docker's embedded resolver
    // knows only its own dockerd's containers and forwards other names, from the
    // container's namespace, to the container's external servers: weavets redirects those
    // queries on the network's bridge to its DNS, which knows every host's names (etcd).
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    const ip1 = await containerIp(d1, 'db', 'appnet');
    const ip2 = await containerIp(d2, 'app', 'appnet');
    for (const d of hosts) {
      const table = (await lab.execOk(d.host, ['nft', 'list', 'table', 'ip', 'weavets_dns'])).stdout;
      expect(table).toMatch(
        /th dport 53 ip daddr != 10\.32\.0\.0\/12 fib daddr type != local dnat ip to iifname map @resolvers/,
      );
      expect(table).toMatch(/"wtb[0-9a-f]{6}" : 10\.\d+\.\d+\.\d+ \. 53/);
    }
    // The records travel through etcd: wait until h2's DNS has db, then the issue's command.
    await lab.waitFor(
      async () =>
        (
          await lab.weavetsJson<{ addresses?: string[] }>(d2.host, ['dns-lookup', 'db']).catch(() => undefined)
        )?.addresses?.includes(ip1) === true,
      {
        what: "db (h1) in h2's DNS",
        timeoutMs: 10_000,
        intervalMs: 200,
      },
    );
    const t0 = Date.now();
    const ping = await dockerOk(lab, d2, [
      'run',
      '--rm',
      '--network',
      'appnet',
      DOCKER_IMAGE,
      'ping',
      '-c1',
      '-W2',
      'db',
    ]);
    expect(ping).toContain(`(${ip1})`);
    expect(ping).toMatch(/1 packets received/);
    const look = await dockerOk(lab, d2, ['exec', 'app', 'nslookup', 'db']);
    expect(look).toMatch(new RegExp(`Address:?\\s+(\\d+ )?${ip1.replace(/\./g, '\\.')}\\b`));
    // And the other way: h1 to a container on h2.
    const back = await dockerOk(lab, d1, [
      'run',
      '--rm',
      '--network',
      'appnet',
      DOCKER_IMAGE,
      'ping',
      '-c1',
      '-W2',
      'app',
    ]);
    expect(back).toContain(`(${ip2})`);
    expect(back).toMatch(/1 packets received/);
    // A name nobody has still fails (forwarded upstream, which the lab cannot reach), without hanging.
    const none = await docker(lab, d2, ['exec', 'app', 'nslookup', 'nosuch-container']);
    expect(none.code).not.toBe(0);
    console.log(`names across hosts: two docker runs and two lookups in ${Date.now() - t0} ms`);
  });

  it('refuses a --subnet outside the weavets range with a clear error', async () => {
    const d = hosts[0]!;
    const r = await docker(lab, d, [
      'network',
      'create',
      '-d',
      d.driver,
      '--ipam-driver',
      d.driver,
      '--subnet',
      '192.168.7.0/24',
      'badnet',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /--subnet 192\.168\.7\.0\/24: 192\.168\.7\.0\/24 lies outside the weavets range 10\.32\.0\.0\/12/,
    );
    const o = await docker(lab, d, [
      'network',
      'create',
      '-d',
      d.driver,
      '--ipam-driver',
      d.driver,
      '--subnet',
      '10.32.0.0/12',
      '-o',
      'nosuch=1',
      'badnet2',
    ]);
    expect(o.code).not.toBe(0);
    expect(o.stderr).toMatch(/unknown option -o nosuch/);
  });

  it('publishes a port with -p', async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    await dockerOk(lab, d1, [
      'run',
      '-d',
      '--name',
      'web',
      '--network',
      'appnet',
      '-p',
      '8080:80',
      DOCKER_IMAGE,
      'httpd',
      '-f',
      '-p',
      '80',
      '-h',
      '/www',
    ]);
    onTestFinished(async () => {
      await docker(lab, d1, ['rm', '-f', 'web']);
    });
    const url = `http://${d1.host.ip}:8080/`;
    const body = await lab.waitFor(
      async () => {
        const r = await lab.exec(d2.host, ['curl', '-sS', '--max-time', '3', url]);
        return r.code === 0 ? r.stdout : undefined;
      },
      { what: `curl ${url} from h2`, timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(body).toBe('hello from weavets\n');
    await dockerOk(lab, d1, ['rm', '-f', 'web']);
  });

  it('stop, start and rm release and reuse addresses', async () => {
    const d1 = hosts[0]!;
    await dockerOk(lab, d1, ['run', '-d', '--name', 'cyc', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '600']);
    const before = await ipamUsed(d1);
    const eps = (await dockerEndpoints(d1)).length;
    await dockerOk(lab, d1, ['stop', '-t', '0', 'cyc']);
    expect(await ipamUsed(d1)).toBe(before - 1);
    expect((await dockerEndpoints(d1)).length).toBe(eps - 1);
    await dockerOk(lab, d1, ['start', 'cyc']);
    expect(await ipamUsed(d1)).toBe(before);
    await containerIp(d1, 'cyc', 'appnet');
    await dockerOk(lab, d1, ['rm', '-f', 'cyc']);
    expect(await ipamUsed(d1)).toBe(before - 1);
    expect((await dockerEndpoints(d1)).length).toBe(eps - 1);
    // Many more starts than a few: released addresses are reused, the count stays put.
    for (let i = 0; i < 3; i++) await dockerOk(lab, d1, ['run', '--rm', '--network', 'appnet', DOCKER_IMAGE, 'true']);
    expect(await ipamUsed(d1)).toBe(before - 1);
  });

  it('a weavets restart with running containers loses nothing', async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    const ip1 = await containerIp(d1, 'db', 'appnet');
    await lab.stopDaemon(d1.host);
    await launch(d1, []);
    await lab.waitFor(
      async () => (await docker(lab, d2, ['exec', 'app', 'ping', '-c', '1', '-W', '1', ip1])).code === 0,
      {
        what: 'app (h2) to ping db (h1) after the restart',
        timeoutMs: 30_000,
        intervalMs: 500,
      },
    );
    // The restarted daemon still knows the endpoint: removing the container cleans up.
    const used = await ipamUsed(d1);
    await dockerOk(lab, d1, ['rm', '-f', 'db']);
    expect(await ipamUsed(d1)).toBe(used - 1);
    expect(await dockerEndpoints(d1)).toEqual([]);
  });

  it('a dockerd restart re-activates the plugin', async () => {
    const d2 = hosts[1]!;
    await dockerOk(lab, d2, ['rm', '-f', 'app']);
    await stopDockerd(d2);
    await startDockerd(lab, d2);
    const nets = await dockerOk(lab, d2, ['network', 'ls', '--format', '{{.Name}}']);
    expect(nets.split('\n')).toContain('appnet');
    await dockerOk(lab, d2, ['run', '--rm', '--network', 'appnet', DOCKER_IMAGE, 'ip', 'addr', 'show', 'eth0']);
  });

  it('network rm on both hosts; the catalog network goes with the last one', async () => {
    const catalogHas = async (d: DockerHost): Promise<boolean> =>
      (await lab.weavetsJson<NetworkInfo[]>(d.host, ['network', 'ls'])).some((n) => n.name === 'appnet');
    expect(await catalogHas(hosts[0]!)).toBe(true);
    for (const [i, d] of hosts.entries()) {
      await dockerOk(lab, d, ['network', 'rm', 'appnet']);
      expect(await dockerOk(lab, d, ['network', 'ls', '--format', '{{.Name}}'])).not.toMatch(/^appnet$/m);
      // After the first host, the other still holds its gateway on appnet: it stays.
      if (i === 0) expect(await catalogHas(hosts[1]!)).toBe(true);
    }
    for (const d of hosts)
      await lab.waitFor(async () => !(await catalogHas(d)), {
        what: `appnet gone from ${d.host.name}'s catalog`,
        timeoutMs: 10_000,
      });
  });

  it('answers malformed plugin requests with errors both Docker proxies read', async () => {
    const sock = hosts[0]!.pluginSocket;
    const act = await pluginPost(sock, '/Plugin.Activate', undefined);
    expect(act).toEqual({ status: 200, body: { Implements: ['NetworkDriver', 'IpamDriver'] } });
    const junk = await pluginPost(sock, '/NetworkDriver.CreateNetwork', '{not json');
    expect(junk.status).toBe(400);
    expect(junk.body['Err']).toMatch(/not JSON/);
    expect(junk.body['Error']).toBe(junk.body['Err']);
    const missing = await pluginPost(sock, '/NetworkDriver.Join', '{}', 'application/json');
    expect(missing.status).toBe(400);
    expect(missing.body['Err']).toMatch(/NetworkID/);
    const unknownEp = await pluginPost(
      sock,
      '/NetworkDriver.Join',
      JSON.stringify({ NetworkID: 'n', EndpointID: 'e', SandboxKey: '/x' }),
    );
    expect(unknownEp.status).toBe(500);
    expect(unknownEp.body['Err']).toMatch(/no endpoint/);
    const pool = await pluginPost(sock, '/IpamDriver.RequestAddress', JSON.stringify({ PoolID: 'other' }));
    expect(pool.status).toBe(400);
    expect(pool.body['Error']).toMatch(/unknown pool/);
    const nope = await pluginPost(sock, '/NetworkDriver.Frobnicate', '{}');
    expect(nope.status).toBe(404);
    expect(nope.body['Err']).toMatch(/no such plugin method/);
  });
});
