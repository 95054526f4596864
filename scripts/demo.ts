/**
 * The demo: three hosts as network namespaces on one underlay, weavets on each (host2
 * and host3 join host1, no etcd), one named container per host, every container pings
 * every other through the overlay and resolves every other's name on its own host's DNS
 * (names travel over the mesh). Everything is torn down at the end, on failure and on Ctrl-C.
 *
 *   npx tsx scripts/demo.ts          (as root; WEAVETS_LAB_DEBUG=1 shows every command)
 */
import type { ConnectionStatus, DnsStatus } from '../src/api/types';
import { createLab, type Host, type Lab, type Namespace } from '../test/net/harness';

const HOSTS = ['host1', 'host2', 'host3'];

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

async function main(): Promise<number> {
  if (process.getuid && process.getuid() !== 0) {
    process.stderr.write('demo: run as root (it creates network namespaces)\n');
    return 1;
  }
  let lab: Lab | undefined;
  try {
    lab = await createLab();
    lab.requireCli();
    say(`building ${HOSTS.length} hosts in namespaces (prefix ${lab.prefix}) on underlay 192.0.2.0/24`);
    const hosts: Host[] = [];
    for (const name of HOSTS) {
      const h = await lab.addHost(name);
      hosts.push(h);
      process.stdout.write(`  ${h.name}: ${h.ip}  netns ${h.netns}\n`);
    }
    const first = hosts[0]!;

    say('launching weavets (host2 and host3 join host1)');
    for (const h of hosts) {
      const peers = h === first ? [] : [first.ip];
      await lab.launch(h, peers);
      process.stdout.write(`  ${h.name}$ weavets launch${peers.map((p) => ` ${p}`).join('')}\n`);
    }

    say('attaching one named container per host');
    const containers: { ns: Namespace; host: Host; ip: string }[] = [];
    for (const h of hosts) {
      const ns = await lab.addContainer(h, `c${h.index}`);
      const cidr = await lab.attach(h, ns, ['--name', ns.name]);
      containers.push({ ns, host: h, ip: cidr.split('/')[0]! });
      process.stdout.write(`  ${h.name}$ weavets attach --name ${ns.name} --netns ${ns.netns} ${ns.name}  ->  ${cidr}\n`);
    }

    const l = lab;
    await l.waitFor(
      async () => {
        const conns = await l.weavetsJson<ConnectionStatus[]>(first, ['status', 'connections']);
        return conns.filter((c) => c.state === 'established').length >= hosts.length - 1;
      },
      { what: 'host1 to have established connections to host2 and host3', timeoutMs: 30_000 },
    );

    say('host1$ weavets status connections');
    process.stdout.write(await lab.weavetsOk(first, ['status', 'connections']));
    say('host1$ weavets status peers');
    process.stdout.write(await lab.weavetsOk(first, ['status', 'peers']));

    say('every container pings every other (through the overlay)');
    let failures = 0;
    for (const from of containers) {
      for (const to of containers) {
        if (from === to) continue;
        // The first packets may wait for ARP and MAC learning across the mesh.
        await lab.ping(from.ns, to.ip, { count: 1, timeoutS: 2 });
        const r = await lab.ping(from.ns, to.ip, { count: 3, intervalS: 0.2, timeoutS: 2 });
        const verdict = r.received === r.sent && r.sent > 0 ? 'ok  ' : 'FAIL';
        if (verdict === 'FAIL') failures++;
        const rtt = r.avgMs !== undefined ? `${r.avgMs.toFixed(3)} ms` : '-';
        process.stdout.write(
          `  ${verdict} ${from.ns.name} (${from.host.name}) -> ${to.ns.name} (${to.host.name}) ${to.ip}: ` +
            `${r.received}/${r.sent} replies, avg ${rtt}\n`,
        );
      }
    }
    say('every container resolves every other by name on its own host (no etcd: names travel over the mesh)');
    for (const from of containers) {
      const server = (await lab.weavetsJson<DnsStatus>(from.host, ['status', 'dns'])).listen[0]!.split(':')[0]!;
      for (const to of containers) {
        if (from === to) continue;
        const r = await lab.exec(from.ns, ['dig', `@${server}`, '+short', '+time=2', '+tries=1', to.ns.name]);
        const ok = r.stdout.trim() === to.ip;
        if (!ok) failures++;
        process.stdout.write(`  ${ok ? 'ok  ' : 'FAIL'} ${from.ns.name} (${from.host.name}) resolves ${to.ns.name} -> ${r.stdout.trim() || '(nothing)'}\n`);
      }
    }
    say(failures === 0 ? 'all containers reach and resolve each other' : `${failures} check(s) failed`);
    if (failures > 0) lab.dumpLogs(30);
    return failures === 0 ? 0 : 1;
  } catch (err) {
    process.stderr.write(`\ndemo failed: ${(err as Error).message}\n`);
    lab?.dumpLogs(30);
    return 1;
  } finally {
    if (lab) {
      say('tearing down');
      await lab.destroy();
      process.stdout.write('  daemons stopped, namespaces and temp files removed\n');
    }
  }
}

main().then((code) => {
  process.exitCode = code;
});
