/**
 * Two hosts over sleeve: host2 joins host1, a container on each, they ping each other
 * through the overlay. Also the CLI's answers to bad arguments, detach and stop.
 */
import * as fs from 'node:fs';
import { describe, it, expect } from 'vitest';
import type { EndpointStatus } from '../../src/endpoint/types';
import type { ConnectionStatus } from '../../src/router/status';
import { run, type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

function addressOf(cidr: string): string {
  return cidr.split('/')[0]!;
}

describe('two-host mesh over sleeve', () => {
  let lab: Lab;
  let host1: Host;
  let host2: Host;
  let c1: Namespace;
  let c2: Namespace;
  let ip1 = '';
  let ip2 = '';

  useLab(async (l) => {
    lab = l;
    lab.requireCli();
    host1 = await lab.addHost('host1');
    host2 = await lab.addHost('host2');
    c1 = await lab.addContainer(host1, 'c1');
    c2 = await lab.addContainer(host2, 'c2');
    await lab.launch(host1, [], ['--datapath', 'sleeve']);
    await lab.launch(host2, [host1.ip], ['--datapath', 'sleeve']);
    ip1 = await lab.attach(host1, c1);
    ip2 = await lab.attach(host2, c2);
  });

  it('gives both containers addresses in the same default range', () => {
    expect(ip1).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
    expect(ip2).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
    expect(addressOf(ip1)).not.toBe(addressOf(ip2));
  });

  it('c1 pings c2 through the overlay, and back', async () => {
    await lab.waitFor(async () => (await lab.ping(c1, addressOf(ip2), { count: 1, timeoutS: 1 })).ok, {
      what: `c1 (${ip1}) to get a reply from c2 (${ip2})`,
      timeoutMs: 30_000,
    });
    const there = await lab.ping(c1, addressOf(ip2), { count: 5 });
    expect(there.received, there.output).toBe(5);
    const back = await lab.ping(c2, addressOf(ip1), { count: 5 });
    expect(back.received, back.output).toBe(5);
  });

  it('status connections --json on host1 shows host2 established, sleeve, unencrypted', async () => {
    const conn = await lab.waitFor(
      async () => {
        const list = await lab.weavetsJson<ConnectionStatus[]>(host1, ['status', 'connections']);
        return list.find((c) => c.nickname === 'host2' && c.state === 'established');
      },
      { what: 'host1 to report an established connection to host2', timeoutMs: 20_000 },
    );
    expect(conn.datapath).toBe('sleeve');
    expect(conn.encrypted).toBe(false);
    expect(conn.address).toContain(host2.ip);
    expect(conn.peer).not.toBe('');
  });

  it('serves /metrics, /healthz and /readyz inside the host namespace', async () => {
    const metrics = await lab.http(host1, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^weavets_/m);
    expect((await lab.http(host1, '/healthz')).status).toBe(200);
    expect((await lab.http(host1, '/readyz')).status).toBe(200);
  });

  it('rejects attach without --netns, saying what to do', async () => {
    const r = await lab.weavets(host1, ['attach', 'nonetns']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--netns/);
    expect(r.stderr).not.toMatch(/^\s+at /m); // a message, not a stack trace
  });

  it('rejects attach with a malformed --ip, naming the value', async () => {
    const c3 = await lab.addContainer(host1, 'c3');
    const r = await lab.weavets(host1, ['attach', '--netns', c3.netns, '--ip', '10.32.0.300/12', 'c3']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/10\.32\.0\.300\/12|--ip/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const links = await lab.execOk(c3, ['ip', '-o', 'link', 'show']);
    expect(links.stdout.trim().split('\n')).toHaveLength(1); // nothing half-made
  });

  it('rejects an unknown status subcommand', async () => {
    const r = await lab.weavets(host1, ['status', 'bogus']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).not.toBe('');
  });

  it('ps lists the container; detach removes its veth from both sides', async () => {
    const eps = await lab.weavetsJson<EndpointStatus[]>(host1, ['ps']);
    const ep = eps.find((e) => e.id === 'c1');
    expect(ep, JSON.stringify(eps)).toBeDefined();
    expect(ep!.address).toBe(ip1);
    await lab.weavetsOk(host1, ['detach', 'c1']);
    const inCtr = await lab.execOk(c1, ['ip', '-o', 'link', 'show']);
    expect(inCtr.stdout.trim().split('\n')).toHaveLength(1); // only lo
    if (ep!.hostVeth) {
      const onHost = await lab.exec(host1, ['ip', 'link', 'show', ep!.hostVeth]);
      expect(onHost.code, onHost.stdout).not.toBe(0);
    }
    const after = await lab.weavetsJson<EndpointStatus[]>(host1, ['ps']);
    expect(after.find((e) => e.id === 'c1')).toBeUndefined();
  });

  it('stop leaves no weavets process for that state dir', async () => {
    const pid = lab.daemonPid(host2);
    expect(pid, 'host2 has no weavets.pid').toBeDefined();
    const r = await lab.weavets(host2, ['stop'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    await lab.waitFor(() => !fs.existsSync(`/proc/${pid}`), { what: `daemon pid ${pid} to exit`, timeoutMs: 10_000 });
    // Nothing else of weavets left running in host2's namespace either.
    const pids = await run(['ip', 'netns', 'pids', host2.netnsName]);
    for (const p of pids.stdout.split('\n').filter(Boolean)) {
      let cmdline: string;
      try {
        cmdline = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        continue;
      }
      expect(cmdline).not.toMatch(/weavets/);
    }
    const status = await lab.weavets(host2, ['status']);
    expect(status.code).not.toBe(0);
  });
});
