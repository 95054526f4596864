/**
 * Real dockerd (Debian docker.io 20.10) beside weavets on lab hosts, shared by the Docker
 * e2e test and bench/docker.ts. Each dockerd runs in its host's namespace (nsenter --net,
 * see DESIGN.md) with its own data-root, exec-root, pidfile and API socket under the lab
 * dir, vfs storage, --bridge=none and no iptables. It finds weavets through
 * /run/docker/plugins/<prefix><host>.sock (dockerd looks there whatever its exec-root);
 * the driver name is that base name. stop() removes containers, stops dockerd and
 * unmounts what it left; the plugin sockets are removed by the daemons and again here.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExecResult, Host, Lab } from '../net/harness';
import { startEtcdIn, type EtcdServer } from './etcd';

export const DOCKER_IMAGE = 'wtbusybox:latest';
export const PLUGIN_DIR = '/run/docker/plugins';

/** Commands a suite running dockerd beside weavets needs (test/require-tools.ts). */
export const DOCKER_TOOLS = ['dockerd', 'docker', 'busybox', 'nft'];

export interface DockerHost {
  host: Host;
  dir: string;
  socket: string;
  /** Driver (and IPAM driver) name: the plugin socket's base name. */
  driver: string;
  pluginSocket: string;
  proc?: ChildProcess;
}

/** weavets launch flags that point a host's daemon at its dockerd. */
export function weavetsDockerArgs(d: DockerHost): string[] {
  return ['--docker-plugin-socket', d.pluginSocket, '--docker-host', `unix://${d.socket}`];
}

export function dockerHostFor(lab: Lab, host: Host): DockerHost {
  const dir = path.join(lab.dir, host.name, 'docker');
  fs.mkdirSync(dir, { recursive: true });
  const driver = `${lab.prefix}${host.name}`;
  return {
    host,
    dir,
    socket: path.join(dir, 'docker.sock'),
    driver,
    pluginSocket: path.join(PLUGIN_DIR, `${driver}.sock`),
  };
}

export function docker(lab: Lab, d: DockerHost, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return lab.exec(d.host, ['docker', '-H', `unix://${d.socket}`, ...args], { timeoutMs });
}

export async function dockerOk(lab: Lab, d: DockerHost, args: string[], timeoutMs?: number): Promise<string> {
  const r = await docker(lab, d, args, timeoutMs);
  if (r.code !== 0) {
    throw new Error(
      `docker ${args.join(' ')} on ${d.host.name} exited ${r.code}\n${r.stderr}\n${r.stdout}\n--- weavets log ---\n${lab.logTail(d.host, 30)}\n--- dockerd log ---\n${dockerdLog(d, 15)}`,
    );
  }
  return r.stdout;
}

export function dockerdLog(d: DockerHost, lines: number): string {
  try {
    return fs
      .readFileSync(path.join(d.dir, 'dockerd.log'), 'utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '';
  }
}

export async function startDockerd(lab: Lab, d: DockerHost): Promise<void> {
  const log = fs.openSync(path.join(d.dir, 'dockerd.log'), 'a');
  const argv = [
    'nsenter',
    `--net=${d.host.netns}`,
    '--',
    'dockerd',
    '--storage-driver=vfs',
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--data-root',
    path.join(d.dir, 'data'),
    '--exec-root',
    path.join(d.dir, 'exec'),
    '--pidfile',
    path.join(d.dir, 'docker.pid'),
    '--host',
    `unix://${d.socket}`,
  ];
  d.proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  await lab.waitFor(
    async () => (await docker(lab, d, ['version', '--format', '{{.Server.Version}}'], 5000)).code === 0,
    {
      what: `dockerd on ${d.host.name}`,
      timeoutMs: 30_000,
      intervalMs: 300,
    },
  );
}

/** SIGTERM dockerd and wait; it stops its containers first. */
export async function stopDockerd(d: DockerHost): Promise<void> {
  const p = d.proc;
  d.proc = undefined;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

/** A rootfs tarball with busybox-static and its applet links, plus a page for httpd. */
export function buildImageTar(dir: string): string {
  const root = path.join(dir, 'rootfs');
  for (const d of ['bin', 'www', 'etc', 'tmp', 'proc', 'sys', 'dev'])
    fs.mkdirSync(path.join(root, d), { recursive: true });
  const busybox = fs.realpathSync(spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim());
  fs.copyFileSync(busybox, path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'ping', 'sleep', 'httpd', 'nc', 'ip', 'cat', 'wget', 'hostname', 'nslookup', 'true']) {
    fs.symlinkSync('busybox', path.join(root, 'bin', applet));
  }
  fs.writeFileSync(path.join(root, 'www', 'index.html'), 'hello from weavets\n');
  const tar = path.join(dir, 'rootfs.tar');
  const r = spawnSync('tar', ['-C', root, '-cf', tar, '.']);
  if (r.status !== 0) throw new Error(`tar failed: ${String(r.stderr)}`);
  return tar;
}

/** Remove containers, stop dockerd, unmount leftovers under its dir, remove the plugin socket. */
export async function teardownDocker(lab: Lab, d: DockerHost): Promise<void> {
  if (d.proc && d.proc.exitCode === null) {
    const ids = (await docker(lab, d, ['ps', '-aq'], 10_000)).stdout.split('\n').filter((s) => s.trim() !== '');
    if (ids.length > 0) await docker(lab, d, ['rm', '-f', ...ids], 60_000);
  }
  await stopDockerd(d);
  const mounts = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(d.dir))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  fs.rmSync(d.pluginSocket, { force: true });
}

/** What startDockerPair started: filled in as each part comes up, so a teardown finds it even after a failure. */
export interface DockerPair {
  etcd?: EtcdServer;
  hosts: DockerHost[];
}

/**
 * The set-up the Docker e2e suites share: hosts h1 and h2 in `lab`, etcd in h1's
 * namespace, and on each host a dockerd with the busybox image imported (weavets is not
 * launched: each suite launches it with its own flags). `beforeEtcd` runs once both
 * hosts exist.
 */
export async function startDockerPair(
  lab: Lab,
  pair: DockerPair,
  opts: { beforeEtcd?: (h1: Host, h2: Host) => Promise<void> } = {},
): Promise<void> {
  const h1 = await lab.addHost('h1');
  const h2 = await lab.addHost('h2');
  await opts.beforeEtcd?.(h1, h2);
  pair.etcd = await startEtcdIn(lab, h1);
  pair.hosts.push(dockerHostFor(lab, h1), dockerHostFor(lab, h2));
  const tar = buildImageTar(lab.dir);
  for (const d of pair.hosts) {
    await startDockerd(lab, d);
    await dockerOk(lab, d, ['import', tar, DOCKER_IMAGE]);
  }
}

/** Tear down the dockerds (quietly), the lab, then etcd. */
export async function stopDockerPair(lab: Lab | undefined, pair: DockerPair): Promise<void> {
  if (lab) for (const d of pair.hosts) await teardownDocker(lab, d).catch(() => undefined);
  await lab?.destroy();
  await pair.etcd?.destroy();
}
