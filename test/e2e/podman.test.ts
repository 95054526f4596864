/**
 * Real podman (4.3, CNI backend) as the CNI client: two hosts as lab namespaces, each
 * running weavets and its own podman (own containers.conf, storage, run and tmp dirs in
 * the lab's temp dir, so the machine's podman state is never touched). `weavets
 * setup-cni` installs the plugin and conflist; containers on the two hosts ping each
 * other; -p publishes a port through the chained portmap; podman rm leaves nothing.
 *
 * How podman runs here: `nsenter --net=<host>` so its CNI plugins (ours, portmap) act in
 * the host namespace, inside a private mount namespace where the hybrid cgroup2 mount
 * (/sys/fs/cgroup/unified) is unmounted: crun refuses hybrid mode ("cgroups in hybrid
 * mode not supported") and this machine has no runc. /run/netns stays shared, so the
 * netns podman creates there is visible to the weavets daemon.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLab, type ExecResult, type Host, type Lab } from '../net/harness';
import { ETCD_TOOLS, startEtcdIn, type EtcdServer } from './etcd';
import { describeWithTools } from '../require-tools';

const IMAGE = 'localhost/wtbusybox:latest';
const describePodman = describeWithTools({
  commands: ['podman', 'crun', 'conmon', 'busybox'],
  files: [...ETCD_TOOLS.files, '/usr/lib/cni/portmap'],
});

interface PodmanHost {
  host: Host;
  dir: string;
  binDir: string;
  confDir: string;
  confFile: string;
}

let lab: Lab;
let etcd: EtcdServer | undefined;
const hosts: PodmanHost[] = [];

function podmanArgs(p: PodmanHost, args: string[]): string[] {
  const podman = [
    'podman',
    '--root',
    path.join(p.dir, 'root'),
    '--runroot',
    path.join(p.dir, 'runroot'),
    '--tmpdir',
    path.join(p.dir, 'tmp'),
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
    ...args,
  ];
  // Make /sys a slave in the new mount namespace first, so the unmount can never propagate.
  const script =
    'mount --make-rslave /sys && { ! mountpoint -q /sys/fs/cgroup/unified || umount /sys/fs/cgroup/unified; } && exec "$@"';
  return ['unshare', '--mount', '--propagation', 'unchanged', 'sh', '-c', script, 'sh', ...podman];
}

function podman(p: PodmanHost, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return lab.exec(p.host, podmanArgs(p, args), {
    env: { ...process.env, CONTAINERS_CONF: p.confFile, CONTAINERS_STORAGE_CONF: path.join(p.dir, 'storage.conf') },
    timeoutMs,
  });
}

async function podmanOk(p: PodmanHost, args: string[], timeoutMs?: number): Promise<string> {
  const r = await podman(p, args, timeoutMs);
  if (r.code !== 0) {
    throw new Error(
      `podman ${args.join(' ')} on ${p.host.name} exited ${r.code}\n${r.stderr}\n${r.stdout}\n--- weavets log ---\n${lab.logTail(p.host, 20)}`,
    );
  }
  return r.stdout;
}

/** A rootfs tarball with busybox-static and its applet links, plus a page for httpd. */
function buildImageTar(dir: string): string {
  const root = path.join(dir, 'rootfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'www'), { recursive: true });
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.copyFileSync(
    fs.realpathSync(spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim()),
    path.join(root, 'bin', 'busybox'),
  );
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'ping', 'sleep', 'httpd', 'nc', 'ip', 'cat', 'wget', 'hostname', 'nslookup']) {
    fs.symlinkSync('busybox', path.join(root, 'bin', applet));
  }
  fs.writeFileSync(path.join(root, 'www', 'index.html'), 'hello from weavets\n');
  const tar = path.join(dir, 'rootfs.tar');
  const r = spawnSync('tar', ['-C', root, '-cf', tar, '.']);
  if (r.status !== 0) throw new Error(`tar failed: ${String(r.stderr)}`);
  return tar;
}

async function preparePodmanHost(host: Host, tar: string): Promise<PodmanHost> {
  const dir = path.join(lab.dir, host.name, 'podman');
  const p: PodmanHost = {
    host,
    dir,
    binDir: path.join(dir, 'cni-bin'),
    confDir: path.join(dir, 'net.d'),
    confFile: path.join(dir, 'containers.conf'),
  };
  for (const d of ['root', 'runroot', 'tmp']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(
    p.confFile,
    [
      '[containers]',
      // This sandbox forbids raising rlimits.
      'default_ulimits = []',
      '',
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = ["${p.binDir}", "/usr/lib/cni"]`,
      `network_config_dir = "${p.confDir}"`,
      '',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    path.join(dir, 'storage.conf'),
    `[storage]\ndriver = "vfs"\ngraphroot = "${path.join(dir, 'root')}"\nrunroot = "${path.join(dir, 'runroot')}"\n`,
  );
  await lab.weavetsOk(host, ['setup-cni', '--bin-dir', p.binDir, '--conf-dir', p.confDir]);
  await podmanOk(p, ['import', tar, IMAGE]);
  return p;
}

async function containerAddress(p: PodmanHost, name: string): Promise<string> {
  const out = await podmanOk(p, ['exec', name, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
  const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out);
  if (!m) throw new Error(`no IPv4 address on eth0 of ${name}: ${out}`);
  return m[1]!;
}

interface EndpointJson {
  id: string;
  name?: string;
  hostVeth: string;
}

describePodman('podman with weavets-cni on two hosts', () => {
  beforeAll(async () => {
    lab = await createLab();
    const h1 = await lab.addHost('h1');
    const h2 = await lab.addHost('h2');
    // Two hosts share an address space only through the cluster store: etcd in h1's namespace.
    etcd = await startEtcdIn(lab, h1);
    await lab.launch(h1, [], ['--etcd', etcd.url]);
    await lab.launch(h2, [h1.ip], ['--etcd', etcd.url]);
    const tar = buildImageTar(lab.dir);
    hosts.push(await preparePodmanHost(h1, tar), await preparePodmanHost(h2, tar));
  }, 180_000);

  afterAll(async () => {
    // Containers first (their processes live outside the lab's namespaces), then the lab.
    for (const p of hosts) await podman(p, ['rm', '--all', '--force', '--time', '0']).catch(() => undefined);
    await lab?.destroy();
    await etcd?.destroy();
  }, 120_000);

  it('containers on two hosts ping each other through the overlay', async () => {
    const [p1, p2] = hosts as [PodmanHost, PodmanHost];
    await podmanOk(p1, ['run', '-d', '--name', 'c1', '--network', 'weavets', IMAGE, 'sleep', '600']);
    await podmanOk(p2, ['run', '-d', '--name', 'c2', '--network', 'weavets', IMAGE, 'sleep', '600']);
    const ip1 = await containerAddress(p1, 'c1');
    const ip2 = await containerAddress(p2, 'c2');
    expect(ip1).not.toBe(ip2);
    await lab.waitFor(async () => (await podman(p1, ['exec', 'c1', 'ping', '-c', '1', '-W', '1', ip2])).code === 0, {
      what: 'c1 (h1) to ping c2 (h2)',
      timeoutMs: 30_000,
      intervalMs: 500,
    });
    const back = await podmanOk(p2, ['exec', 'c2', 'ping', '-c', '3', '-W', '2', ip1]);
    expect(back).toMatch(/3 packets received/);
    // By name, across hosts: podman writes the resolver weavets-cni returned (weavets DNS
    // on the host's address) into the container's resolv.conf.
    const resolv = await podmanOk(p2, ['exec', 'c2', 'cat', '/etc/resolv.conf']);
    expect(resolv).toMatch(/search .*weavets\.local/);
    await lab.waitFor(async () => (await podman(p2, ['exec', 'c2', 'ping', '-c', '1', '-W', '1', 'c1'])).code === 0, {
      what: 'c2 (h2) to ping c1 (h1) by name',
      timeoutMs: 15_000,
      intervalMs: 500,
    });
    const byName = await podmanOk(p2, ['exec', 'c2', 'ping', '-c', '1', 'c1.weavets.local']);
    expect(byName).toContain(`(${ip1})`);
    // The daemon holds the endpoint under the CNI id, with the container's name.
    const eps = await lab.weavetsJson<EndpointJson[]>(p1.host, ['ps']);
    const ep = eps.find((e) => e.id.startsWith('cni:weavets:'));
    expect(ep?.name).toBe('c1');
  });

  it('publishes a port with -p through the chained portmap', async () => {
    const [p1, p2] = hosts as [PodmanHost, PodmanHost];
    // Forwarding for connections from other hosts (portmap DNATs, it does not enable it).
    await lab.execOk(p1.host, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await podmanOk(p1, [
      'run',
      '-d',
      '--name',
      'web',
      '--network',
      'weavets',
      '-p',
      '8080:80',
      IMAGE,
      'httpd',
      '-f',
      '-p',
      '80',
      '-h',
      '/www',
    ]);
    const url = `http://${p1.host.ip}:8080/`;
    const fromHost = await lab.waitFor(
      async () => {
        const r = await lab.exec(p1.host, ['curl', '-sS', '--max-time', '3', url]);
        return r.code === 0 ? r.stdout : undefined;
      },
      { what: `curl ${url} from h1`, timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(fromHost).toBe('hello from weavets\n');
    const fromOther = await lab.execOk(p2.host, ['curl', '-sS', '--max-time', '5', url]);
    expect(fromOther.stdout).toBe('hello from weavets\n');
  });

  it('holds podman containers to a policy by the labels CNI gives them (k8s.pod from CNI_ARGS)', async () => {
    const [p1, p2] = hosts as [PodmanHost, PodmanHost];
    await podmanOk(p2, [
      'run',
      '-d',
      '--name',
      'pdb',
      '--network',
      'weavets',
      IMAGE,
      'httpd',
      '-f',
      '-p',
      '5432',
      '-h',
      '/www',
    ]);
    await podmanOk(p1, ['run', '-d', '--name', 'pweb', '--network', 'weavets', IMAGE, 'sleep', '600']);
    await podmanOk(p1, ['run', '-d', '--name', 'pother', '--network', 'weavets', IMAGE, 'sleep', '600']);
    const dbIp = await containerAddress(p2, 'pdb');
    const fetch = async (name: string): Promise<boolean> => {
      const r = await podman(
        p1,
        ['exec', name, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${dbIp} 5432`],
        20_000,
      );
      return r.code === 0 && r.stdout.includes('hello from weavets');
    };
    await lab.waitFor(async () => fetch('pother'), {
      what: 'pother to reach pdb before any policy',
      timeoutMs: 30_000,
      intervalMs: 500,
    });
    const eps = await lab.weavetsJson<(EndpointJson & { labels?: Record<string, string> })[]>(p2.host, ['ps']);
    expect(eps.find((e) => e.name === 'pdb')?.labels).toMatchObject({ 'k8s.pod': 'pdb' });
    const file = path.join(lab.dir, 'pdb.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        name: 'pdb-ingress',
        selector: { 'k8s.pod': 'pdb' },
        ingress: [{ from: [{ selector: { 'k8s.pod': 'pweb' } }], ports: [{ protocol: 'tcp', port: 5432 }] }],
      }),
    );
    const out = await lab.weavetsOk(p1.host, ['policy', 'apply', '-f', file]);
    const generation = Number(/generation (\d+)/.exec(out)![1]);
    for (const p of hosts) {
      await lab.waitFor(
        async () =>
          (await lab.weavetsJson<{ enforcedGeneration: number }>(p.host, ['policy', 'status'])).enforcedGeneration >=
          generation,
        {
          what: `${p.host.name} to enforce`,
          timeoutMs: 20_000,
        },
      );
    }
    expect(await fetch('pweb')).toBe(true);
    expect(await fetch('pother')).toBe(false);
    await lab.weavetsOk(p1.host, ['policy', 'rm', 'pdb-ingress']);
  });

  it('podman rm leaves no link and no endpoint', async () => {
    for (const p of hosts) {
      await podmanOk(p, ['rm', '--all', '--force', '--time', '0']);
      const eps = await lab.weavetsJson<EndpointJson[]>(p.host, ['ps']);
      expect(eps.filter((e) => e.id.startsWith('cni:'))).toEqual([]);
      const links = await lab.execOk(p.host, ['ip', '-o', 'link', 'show']);
      expect(links.stdout).not.toMatch(/ vwt[0-9a-f]{8}[@:]/);
    }
  });
});
