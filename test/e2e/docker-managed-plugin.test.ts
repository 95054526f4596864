/**
 * The managed (v2) Docker plugin and the image, on two real dockerds in lab hosts
 * (test/e2e/docker-lab.ts): `scripts/docker-plugin build` on each (DOCKER_HOST), settings
 * through `docker plugin set` (PEERS, ETCD and the state and Docker socket mounts),
 * `docker plugin enable`; containers on the two hosts ping each other and find each
 * other by name through it, as network and IPAM driver. Then h2 swaps the plugin for the
 * image (`scripts/image build`, `docker run --net=host`) and does the same with h1's plugin.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ConnectionStatus } from '../../src/router/status';
import { createLab, REPO_ROOT, type Lab } from '../net/harness';
import { ETCD_TOOLS } from './etcd';
import { describeWithTools } from '../require-tools';
import {
  DOCKER_IMAGE,
  DOCKER_TOOLS,
  PLUGIN_DIR,
  docker,
  dockerOk,
  teardownDocker,
  type DockerHost,
  startDockerPair,
  type DockerPair,
} from './docker-lab';

const describeDocker = describeWithTools({ commands: [...DOCKER_TOOLS, 'ldd', 'tar'], files: ETCD_TOOLS.files });
const BUILD_TIMEOUT_MS = 900_000;

let lab: Lab;
const pair: DockerPair = { hosts: [] };
const hosts = pair.hosts;
let plugin = '';
let imageContainer = '';

/** Run one of scripts/* against a lab dockerd; resolves with its stdout, throws with its output. */
function script(d: DockerHost, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(REPO_ROOT, 'scripts', argv[0]!), argv.slice(1), {
      env: { ...process.env, DOCKER_HOST: `unix://${d.socket}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('close', (code) =>
      code === 0
        ? resolve(out.trim())
        : reject(new Error(`scripts/${argv.join(' ')} exited ${code}\n${err.slice(-3000)}`)),
    );
  });
}

async function containerIp(d: DockerHost, name: string, network: string): Promise<string> {
  const ip = (
    await dockerOk(lab, d, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name])
  ).trim();
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`no address for ${name} on ${network}: ${ip}`);
  return ip;
}

/** h2's container reaches db on h1 by address and by name. */
async function reachesDbByName(d2: DockerHost, from: string, ip1: string): Promise<void> {
  await lab.waitFor(async () => (await docker(lab, d2, ['exec', from, 'ping', '-c', '1', '-W', '1', ip1])).code === 0, {
    what: `${from} (h2) to ping db (h1)`,
    timeoutMs: 60_000,
    intervalMs: 500,
  });
  const look = await lab.waitFor(
    async () => {
      const r = await docker(lab, d2, ['exec', from, 'nslookup', 'db']);
      return r.code === 0 && r.stdout.includes(ip1) ? r.stdout : undefined;
    },
    { what: `db's name to resolve in ${from} (h2)`, timeoutMs: 30_000, intervalMs: 500 },
  );
  expect(look).toMatch(new RegExp(`Address:?\\s+(\\d+ )?${ip1.replace(/\./g, '\\.')}\\b`));
  // By name, three in a row answered. Retried: a mesh seconds old may still be moving the
  // pair from the sleeve to the kernel path, which can cost a packet as it switches.
  let last = '';
  await lab.waitFor(
    async () => {
      last = (await docker(lab, d2, ['exec', from, 'ping', '-c', '3', '-W', '2', 'db'])).stdout;
      return /3 packets received/.test(last);
    },
    {
      what: `three pings of db by name from ${from} (h2) to be answered`,
      timeoutMs: 30_000,
      intervalMs: 500,
      lastSeen: () => `ping output ${last}`,
    },
  );
}

describeDocker('the managed Docker plugin and the image on two dockerds', () => {
  beforeAll(async () => {
    lab = await createLab();
    await startDockerPair(lab, pair);
    plugin = `${lab.prefix}/net:test`;
  }, 240_000);

  afterAll(async () => {
    for (const d of hosts) {
      if (d.proc && d.proc.exitCode === null) {
        if (imageContainer !== '') await docker(lab, d, ['rm', '-f', imageContainer], 60_000);
        const ids = (await docker(lab, d, ['ps', '-aq'], 10_000)).stdout.split('\n').filter((s) => s.trim() !== '');
        if (ids.length > 0) await docker(lab, d, ['rm', '-f', ...ids], 60_000);
        await docker(lab, d, ['network', 'rm', 'appnet'], 60_000);
        await docker(lab, d, ['plugin', 'disable', '-f', plugin], 60_000);
        await docker(lab, d, ['plugin', 'rm', '-f', plugin], 60_000);
      }
      await teardownDocker(lab, d).catch(() => undefined);
    }
    await lab?.destroy();
    await pair.etcd?.destroy();
  }, 300_000);

  it(
    'builds the plugin with scripts/docker-plugin and enables it on both dockerds',
    async () => {
      const [d1, d2] = hosts as [DockerHost, DockerHost];
      await Promise.all(hosts.map((d) => script(d, ['docker-plugin', 'build', '--name', plugin])));
      for (const d of hosts) {
        const config = JSON.parse(await dockerOk(lab, d, ['plugin', 'inspect', '-f', '{{json .Config}}', plugin])) as {
          Interface: { Types: string[] };
          Network: { Type: string };
          Linux: { Capabilities: string[] };
          Mounts: { Name: string; Destination: string }[];
          Env: { Name: string }[];
        };
        expect(config.Interface.Types.sort()).toEqual(['docker.ipamdriver/1.0', 'docker.networkdriver/1.0']);
        expect(config.Network.Type).toBe('host');
        expect(config.Linux.Capabilities).toContain('CAP_NET_ADMIN');
        expect(config.Mounts.find((m) => m.Name === 'state')?.Destination).toBe('/var/lib/weavets');
        for (const s of [
          'PEERS',
          'PASSWORD',
          'PASSWORD_FILE',
          'ETCD',
          'ETCD_CA',
          'ETCD_CERT',
          'ETCD_KEY',
          'IPALLOC_RANGE',
          'LOG_LEVEL',
        ]) {
          expect(config.Env.map((e) => e.Name)).toContain(s);
        }
      }
      for (const d of hosts) {
        const peers = d === d1 ? '' : d1.host.ip;
        fs.mkdirSync(d.host.stateDir, { recursive: true, mode: 0o700 });
        await dockerOk(lab, d, [
          'plugin',
          'set',
          plugin,
          `PEERS=${peers}`,
          `ETCD=${pair.etcd!.url}`,
          `state.source=${d.host.stateDir}`,
          `docker-socket.source=${d.socket}`,
        ]);
        // Docker waits 30 s for the plugin's socket by default; a loaded machine took longer.
        await dockerOk(lab, d, ['plugin', 'enable', '--timeout', '120', plugin], 150_000);
      }
      // The plugin's daemon is the host's weavets: the CLI finds it in the state mount.
      for (const d of hosts) {
        const other = d === d1 ? d2 : d1;
        await lab.waitFor(
          async () => {
            const conns = await lab.weavetsJson<ConnectionStatus[]>(d.host, ['status', 'connections']).catch(() => []);
            return (
              conns.some((c) => c.state === 'established' && c.address.startsWith(`${other.host.ip}:`)) || undefined
            );
          },
          {
            what: `${d.host.name}'s plugin daemon connected to ${other.host.name}`,
            timeoutMs: 60_000,
            intervalMs: 500,
          },
        );
      }
    },
    BUILD_TIMEOUT_MS,
  );

  it('carries containers across hosts as network and IPAM driver, with names', async () => {
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    for (const d of hosts)
      await dockerOk(lab, d, ['network', 'create', '-d', plugin, '--ipam-driver', plugin, 'appnet']);
    await dockerOk(lab, d1, ['run', '-d', '--name', 'db', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '900']);
    await dockerOk(lab, d2, ['run', '-d', '--name', 'app', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '900']);
    const ip1 = await containerIp(d1, 'db', 'appnet');
    expect(ip1).toMatch(/^10\.(3[2-9]|4[0-7])\./);
    await reachesDbByName(d2, 'app', ip1);
  }, 180_000);

  it(
    "the image, run by h2's dockerd instead of the plugin, does the same",
    async () => {
      const [d1, d2] = hosts as [DockerHost, DockerHost];
      await dockerOk(lab, d2, ['rm', '-f', 'app']);
      await dockerOk(lab, d2, ['network', 'rm', 'appnet']);
      await dockerOk(lab, d2, ['plugin', 'disable', plugin], 120_000);
      const tag = await script(d2, ['image', 'build', '--tag', `${lab.prefix}-weavets:test`]);
      expect(tag).toBe(`${lab.prefix}-weavets:test`);
      // Its own state dir and a legacy socket plugin under the lab's driver name.
      const state = path.join(lab.dir, 'h2', 'image-state');
      fs.mkdirSync(state, { recursive: true, mode: 0o700 });
      imageContainer = `${lab.prefix}-weavets`;
      // Users run it --privileged; this machine's root lacks CAP_SYS_RESOURCE, which
      // --privileged asks runc for, so the test grants what the managed plugin has instead.
      await dockerOk(lab, d2, [
        'run',
        '-d',
        '--name',
        imageContainer,
        '--net=host',
        '--cap-add',
        'NET_ADMIN',
        '--cap-add',
        'SYS_ADMIN',
        '--cap-add',
        'NET_RAW',
        '--device',
        '/dev/net/tun',
        '--security-opt',
        'seccomp=unconfined',
        '--security-opt',
        'apparmor=unconfined',
        '-v',
        `${state}:/var/lib/weavets`,
        '-v',
        `${PLUGIN_DIR}:${PLUGIN_DIR}`,
        '-v',
        `${d2.socket}:/var/run/docker.sock`,
        '-e',
        `PEERS=${d1.host.ip}`,
        '-e',
        `ETCD=${pair.etcd!.url}`,
        '-e',
        `DOCKER_PLUGIN_SOCKET=${d2.pluginSocket}`,
        tag,
      ]);
      await lab.waitFor(() => fs.existsSync(d2.pluginSocket) || undefined, {
        what: "the image's plugin socket",
        timeoutMs: 60_000,
        intervalMs: 500,
      });
      expect(
        (
          await dockerOk(lab, d2, ['inspect', '-f', '{{.Config.Entrypoint}} {{.State.Running}}', imageContainer])
        ).trim(),
      ).toMatch(/container-entry\.js\] true$/);
      await dockerOk(lab, d2, ['network', 'create', '-d', d2.driver, '--ipam-driver', d2.driver, 'appnet']);
      await dockerOk(lab, d2, ['run', '-d', '--name', 'app2', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '900']);
      await reachesDbByName(d2, 'app2', await containerIp(d1, 'db', 'appnet'));
    },
    BUILD_TIMEOUT_MS,
  );
});
