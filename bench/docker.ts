/**
 * Docker on weavets, against Docker's own bridge driver in the same run:
 *  - time from `docker run -d` on h1 to the first ping answered from a container on h2;
 *  - sequential `docker run --rm ... true` per second on a weavets network and on a
 *    user-defined bridge network (the reference: --bridge=none turns the default bridge
 *    off; a user bridge network works with --iptables=false for local starts), alternating.
 * Two lab hosts, one etcd in h1, dockerd beside weavets on each (test/e2e/docker-lab.ts).
 *
 *   npx tsx bench/docker.ts [starts=10] [pings=3]
 */
import { createLab, type Lab } from '../test/net/harness';
import { startEtcdIn, type EtcdServer } from '../test/e2e/etcd';
import {
  DOCKER_IMAGE,
  buildImageTar,
  docker,
  dockerHostFor,
  dockerOk,
  startDockerd,
  teardownDocker,
  weavetsDockerArgs,
  type DockerHost,
} from '../test/e2e/docker-lab';

const STARTS = Number(process.argv[2] ?? 10);
const PINGS = Number(process.argv[3] ?? 3);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** From `docker run -d` on h1 to a first answered ping from h2, by address or by name (DNS across hosts). */
async function timeToPing(lab: Lab, d1: DockerHost, d2: DockerHost, name: string, byName: boolean): Promise<number> {
  const t0 = performance.now();
  await dockerOk(lab, d1, ['run', '-d', '--name', name, '--network', 'appnet', DOCKER_IMAGE, 'sleep', '600']);
  const target = byName
    ? name
    : (
        await dockerOk(lab, d1, ['inspect', '-f', '{{(index .NetworkSettings.Networks "appnet").IPAddress}}', name])
      ).trim();
  for (;;) {
    const r = await docker(lab, d2, ['exec', 'pinger', 'ping', '-c', '1', '-W', '1', target]);
    if (r.code === 0) break;
    if (performance.now() - t0 > 30_000) throw new Error(`no ping to ${target} within 30 s`);
  }
  const ms = performance.now() - t0;
  await dockerOk(lab, d1, ['rm', '-f', name]);
  return ms;
}

async function startsPerSecond(lab: Lab, d: DockerHost, network: string, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await dockerOk(lab, d, ['run', '--rm', '--network', network, DOCKER_IMAGE, 'true']);
  return n / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const lab = await createLab();
  let etcd: EtcdServer | undefined;
  const hosts: DockerHost[] = [];
  try {
    const h1 = await lab.addHost('h1');
    const h2 = await lab.addHost('h2');
    etcd = await startEtcdIn(lab, h1);
    hosts.push(dockerHostFor(lab, h1), dockerHostFor(lab, h2));
    const [d1, d2] = hosts as [DockerHost, DockerHost];
    const tar = buildImageTar(lab.dir);
    for (const d of hosts) {
      await startDockerd(lab, d);
      await dockerOk(lab, d, ['import', tar, DOCKER_IMAGE]);
    }
    await lab.launch(h1, [], ['--etcd', etcd.url, ...weavetsDockerArgs(d1)]);
    await lab.launch(h2, [h1.ip], ['--etcd', etcd.url, ...weavetsDockerArgs(d2)]);
    for (const d of hosts)
      await dockerOk(lab, d, ['network', 'create', '-d', d.driver, '--ipam-driver', d.driver, 'appnet']);
    await dockerOk(lab, d1, ['network', 'create', '-d', 'bridge', '--subnet', '172.31.250.0/24', 'refnet']);
    await dockerOk(lab, d2, ['run', '-d', '--name', 'pinger', '--network', 'appnet', DOCKER_IMAGE, 'sleep', '3600']);
    // Warm up both paths once (image layers, first network use).
    await startsPerSecond(lab, d1, 'appnet', 1);
    await startsPerSecond(lab, d1, 'refnet', 1);

    const pings: number[] = [];
    const namePings: number[] = [];
    for (let i = 0; i < PINGS; i++) {
      pings.push(await timeToPing(lab, d1, d2, `tp${i}`, false));
      namePings.push(await timeToPing(lab, d1, d2, `tn${i}`, true));
    }
    const weave: number[] = [];
    const bridge: number[] = [];
    for (let round = 0; round < 2; round++) {
      weave.push(await startsPerSecond(lab, d1, 'appnet', Math.ceil(STARTS / 2)));
      bridge.push(await startsPerSecond(lab, d1, 'refnet', Math.ceil(STARTS / 2)));
    }
    const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rows = [
      ['metric', 'weavets', 'docker bridge (reference)'],
      [
        `docker run -d -> first cross-host ping, median of ${PINGS} (ms)`,
        median(pings).toFixed(0),
        'n/a (one host only)',
      ],
      [`  all runs (ms)`, pings.map((p) => p.toFixed(0)).join(' '), ''],
      [
        `docker run -d -> first cross-host ping by name, median of ${PINGS} (ms)`,
        median(namePings).toFixed(0),
        'n/a (one host only)',
      ],
      [`  all runs (ms)`, namePings.map((p) => p.toFixed(0)).join(' '), ''],
      [
        `sequential docker run --rm true, ${2 * Math.ceil(STARTS / 2)} each (starts/s)`,
        avg(weave).toFixed(2),
        avg(bridge).toFixed(2),
      ],
    ];
    const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i]!)).join('  '));
  } finally {
    for (const d of hosts) await teardownDocker(lab, d).catch(() => undefined);
    await lab.destroy();
    await etcd?.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
