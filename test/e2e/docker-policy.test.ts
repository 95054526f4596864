/**
 * Policy on plain Docker: containers labelled with `docker run --label` on two lab hosts
 * (a dockerd beside each weavets daemon, etcd shared) are selected by their labels:
 * `web` reaches `db` on 5432, `x` (no app=web) does not, and the drop is named.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { EndpointStatus } from '../../src/endpoint/types';
import type { PolicyDrop } from '../../src/policy/drops';
import type { PolicyStatus } from '../../src/policy/service';
import { createLab, type Lab } from '../net/harness';
import { ETCD_TOOLS } from './etcd';
import { describeWithTools } from '../require-tools';
import {
  DOCKER_IMAGE,
  docker,
  DOCKER_TOOLS,
  dockerOk,
  weavetsDockerArgs,
  type DockerHost,
  startDockerPair,
  stopDockerPair,
  type DockerPair,
} from './docker-lab';

const describeDocker = describeWithTools({ commands: DOCKER_TOOLS, files: ETCD_TOOLS.files });

describeDocker('policy on Docker containers selected by their labels', () => {
  let lab: Lab;
  const pair: DockerPair = { hosts: [] };
  const hosts = pair.hosts;
  let dbIp = '';

  const fetchFrom = async (d: DockerHost, name: string): Promise<boolean> => {
    // (busybox wget crashes here; nc speaks the HTTP request itself.)
    const r = await docker(
      lab,
      d,
      ['exec', name, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${dbIp} 5432`],
      20_000,
    );
    return r.code === 0 && r.stdout.includes('hello from weavets');
  };

  beforeAll(async () => {
    lab = await createLab();
    await startDockerPair(lab, pair);
    const [h1, h2] = [hosts[0]!.host, hosts[1]!.host];
    const etcd = pair.etcd!;
    await lab.launch(h1, [], ['--etcd', etcd.url, ...weavetsDockerArgs(hosts[0]!)]);
    await lab.launch(h2, [h1.ip], ['--etcd', etcd.url, ...weavetsDockerArgs(hosts[1]!)]);
    for (const d of hosts) {
      await lab.waitFor(
        async () => (await docker(lab, d, ['network', 'ls', '--filter', 'name=^weavets$', '-q'])).stdout.trim() !== '',
        { what: `weavets network on ${d.host.name}`, timeoutMs: 30_000, intervalMs: 500 },
      );
    }
    const [d1, d2] = [hosts[0]!, hosts[1]!];
    await dockerOk(lab, d2, [
      'run',
      '-d',
      '--name',
      'db',
      '--label',
      'app=db',
      '--network',
      'weavets',
      DOCKER_IMAGE,
      'httpd',
      '-f',
      '-p',
      '5432',
      '-h',
      '/www',
    ]);
    await dockerOk(lab, d1, [
      'run',
      '-d',
      '--name',
      'web',
      '--label',
      'app=web',
      '--network',
      'weavets',
      DOCKER_IMAGE,
      'sleep',
      '3600',
    ]);
    await dockerOk(lab, d1, [
      'run',
      '-d',
      '--name',
      'xx',
      '--label',
      'app=other',
      '--network',
      'weavets',
      DOCKER_IMAGE,
      'sleep',
      '3600',
    ]);
    dbIp = (
      await dockerOk(lab, d2, ['inspect', '-f', '{{(index .NetworkSettings.Networks "weavets").IPAddress}}', 'db'])
    ).trim();
    await lab
      .waitFor(async () => fetchFrom(d1, 'xx'), {
        what: 'xx to reach db before any policy',
        timeoutMs: 45_000,
        intervalMs: 1000,
      })
      .catch(async (err: Error) => {
        const diag: string[] = [];
        for (const d of hosts) {
          diag.push(
            (await lab.exec(d.host, ['nft', 'list', 'ruleset'])).stdout,
            JSON.stringify(await lab.weavetsJson<unknown>(d.host, ['ps'])),
          );
        }
        diag.push(
          (await docker(lab, d1, ['exec', 'xx', 'ip', 'addr'])).stdout,
          (await docker(lab, d1, ['exec', 'xx', 'ping', '-c', '1', '-W', '1', dbIp])).stdout,
        );
        throw new Error(`${err.message}\n${diag.join('\n----\n')}`);
      });
  }, 300_000);

  afterAll(async () => {
    await stopDockerPair(lab, pair);
  }, 180_000);

  it("labels Docker's endpoints with the containers' labels", async () => {
    const eps = await lab.waitFor(
      async () => {
        const list = (await lab.weavetsJson<EndpointStatus[]>(hosts[1]!.host, ['ps'])).filter((e) =>
          e.id.startsWith('docker:'),
        );
        return list.some((e) => e.labels?.['app'] === 'db') ? list : undefined;
      },
      { what: 'db labelled app=db on h2', timeoutMs: 20_000 },
    );
    expect(eps).toHaveLength(1);
  });

  it('web reaches db on 5432 under db-ingress, xx does not, and the drop names xx', async () => {
    const file = path.join(lab.dir, 'db.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        name: 'db-ingress',
        network: 'weavets',
        selector: { app: 'db' },
        ingress: [{ from: [{ selector: { app: 'web' } }], ports: [{ protocol: 'tcp', port: 5432 }] }],
      }),
    );
    await lab.weavetsOk(hosts[0]!.host, ['policy', 'apply', '-f', file]);
    for (const d of hosts) {
      await lab.waitFor(
        async () => (await lab.weavetsJson<PolicyStatus>(d.host, ['policy', 'status'])).enforcedGeneration >= 1,
        { what: `${d.host.name} to enforce`, timeoutMs: 20_000 },
      );
    }
    expect(await fetchFrom(hosts[0]!, 'web')).toBe(true);
    expect(await fetchFrom(hosts[0]!, 'xx')).toBe(false);
    const drop = await lab.waitFor(
      async () =>
        (await lab.weavetsJson<PolicyDrop[]>(hosts[1]!.host, ['policy', 'drops'])).find(
          (d) => d.policy === 'db-ingress' && d.port === 5432,
        ),
      {
        what: 'a drop on h2',
        timeoutMs: 10_000,
      },
    );
    expect(drop.to.address).toBe(dbIp);
    expect(drop.from).toMatchObject({ name: 'xx', host: 'h1' });
    expect(drop.to).toMatchObject({ name: 'db', host: 'h2' });
  });
});
