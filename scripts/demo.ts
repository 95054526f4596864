/**
 * The demo: three hosts as network namespaces on one underlay, weavets on each (host2
 * and host3 join host1, no etcd), one named container per host, and then what the
 * product does, one step at a time. Everything is torn down at the end, on failure and
 * on Ctrl-C.
 *
 *   npm run demo                     (as root; installs what is missing first)
 *   npx tsx scripts/demo.ts          (as root, on a built checkout)
 *   WEAVETS_LAB_DEBUG=1              shows every command
 *
 * Adding a feature to the demo: write a Step (a title and a function of the Demo) and
 * put it in STEPS. A step prints what a user would type and see; it throws to fail the
 * demo. Steps run in order and share the hosts and containers the first steps build.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DnsStatus } from '../src/dns/status';
import type { ConnectionStatus } from '../src/router/status';
import { createLab, type Host, type Lab, type Namespace } from '../test/net/harness';

const HOSTS = ['host1', 'host2', 'host3'];

interface Container {
  ns: Namespace;
  host: Host;
  ip: string;
}

/** What the steps share. */
interface Demo {
  lab: Lab;
  hosts: Host[];
  containers: Container[];
}

interface Step {
  title: string;
  run(demo: Demo): Promise<void>;
}

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

function show(line: string): void {
  process.stdout.write(`  ${line}\n`);
}

class DemoFailure extends Error {}

const buildHosts: Step = {
  title: `building ${HOSTS.length} hosts in namespaces on underlay 192.0.2.0/24`,
  async run(d) {
    for (const name of HOSTS) {
      const h = await d.lab.addHost(name);
      d.hosts.push(h);
      show(`${h.name}: ${h.ip}  netns ${h.netns}`);
    }
  },
};

const launch: Step = {
  title: 'launching weavets (host2 and host3 join host1)',
  async run(d) {
    const first = d.hosts[0]!;
    for (const h of d.hosts) {
      const peers = h === first ? [] : [first.ip];
      await d.lab.launch(h, peers);
      show(`${h.name}$ weavets launch${peers.map((p) => ` ${p}`).join('')}`);
    }
  },
};

/** Labels for the policy step: c1 is the web tier, c3 the database, c2 neither. */
const LABELS = ['app=web', 'app=other', 'app=db'];

const attach: Step = {
  title: 'attaching one named, labelled container per host',
  async run(d) {
    for (const h of d.hosts) {
      const ns = await d.lab.addContainer(h, `c${h.index}`);
      const label = LABELS[(h.index - 1) % LABELS.length]!;
      const cidr = await d.lab.attach(h, ns, ['--name', ns.name, '--label', label]);
      d.containers.push({ ns, host: h, ip: cidr.split('/')[0]! });
      show(`${h.name}$ weavets attach --name ${ns.name} --label ${label} --netns ${ns.netns} ${ns.name}  ->  ${cidr}`);
    }
  },
};

const mesh: Step = {
  title: 'host1$ weavets status connections; weavets status peers',
  async run(d) {
    const first = d.hosts[0]!;
    await d.lab.waitFor(
      async () => {
        const conns = await d.lab.weavetsJson<ConnectionStatus[]>(first, ['status', 'connections']);
        return conns.filter((c) => c.state === 'established').length >= d.hosts.length - 1;
      },
      { what: 'host1 to have established connections to host2 and host3', timeoutMs: 30_000 },
    );
    process.stdout.write(await d.lab.weavetsOk(first, ['status', 'connections']));
    process.stdout.write(await d.lab.weavetsOk(first, ['status', 'peers']));
  },
};

const pingAll: Step = {
  title: 'every container pings every other (through the overlay)',
  async run(d) {
    let failures = 0;
    for (const from of d.containers) {
      for (const to of d.containers) {
        if (from === to) continue;
        // The first packets may wait for ARP and MAC learning across the mesh.
        await d.lab.ping(from.ns, to.ip, { count: 1, timeoutS: 2 });
        const r = await d.lab.ping(from.ns, to.ip, { count: 3, intervalS: 0.2, timeoutS: 2 });
        const ok = r.received === r.sent && r.sent > 0;
        if (!ok) failures++;
        const rtt = r.avgMs !== undefined ? `${r.avgMs.toFixed(3)} ms` : '-';
        show(
          `${ok ? 'ok  ' : 'FAIL'} ${from.ns.name} (${from.host.name}) -> ${to.ns.name} (${to.host.name}) ${to.ip}: ${r.received}/${r.sent} replies, avg ${rtt}`,
        );
      }
    }
    if (failures > 0) throw new DemoFailure(`${failures} pair(s) failed`);
    show('all containers reach each other');
  },
};

const names: Step = {
  title: 'every container resolves every other by name on its own host (no etcd: names travel over the mesh)',
  async run(d) {
    let failures = 0;
    for (const from of d.containers) {
      const server = (await d.lab.weavetsJson<DnsStatus>(from.host, ['status', 'dns'])).listen[0]!.split(':')[0]!;
      for (const to of d.containers) {
        if (from === to) continue;
        const r = await d.lab.exec(from.ns, ['dig', `@${server}`, '+short', '+time=2', '+tries=1', to.ns.name]);
        const ok = r.stdout.trim() === to.ip;
        if (!ok) failures++;
        show(
          `${ok ? 'ok  ' : 'FAIL'} ${from.ns.name} (${from.host.name}) resolves ${to.ns.name} -> ${r.stdout.trim() || '(nothing)'}`,
        );
      }
    }
    if (failures > 0) throw new DemoFailure(`${failures} name(s) did not resolve`);
  },
};

const twoNetworks: Step = {
  title: 'two networks that cannot reach each other: "blue" beside "weavets"',
  async run(d) {
    const [h1, h2] = d.hosts as [Host, Host];
    show(`${h1.name}$ weavets network create blue`);
    await d.lab.weavetsOk(h1, ['network', 'create', 'blue']);
    const blue: Container[] = [];
    for (const h of [h1, h2]) {
      const ns = await d.lab.addContainer(h, `b${h.index}`);
      const cidr = await d.lab.attach(h, ns, ['--network', 'blue']);
      blue.push({ ns, host: h, ip: cidr.split('/')[0]! });
      show(`${h.name}$ weavets attach --network blue --netns ${ns.netns} ${ns.name}  ->  ${cidr}`);
    }
    const [b1, b2] = blue as [Container, Container];
    await d.lab.waitFor(async () => (await d.lab.ping(b1.ns, b2.ip, { count: 1, timeoutS: 1 })).ok, {
      what: 'b1 to reach b2 on blue',
      timeoutMs: 15_000,
    });
    const same = await d.lab.ping(b1.ns, b2.ip, { count: 3, intervalS: 0.2, timeoutS: 2 });
    show(
      `${same.received === same.sent ? 'ok  ' : 'FAIL'} ${b1.ns.name} (blue) -> ${b2.ns.name} (blue) ${b2.ip}: ${same.received}/${same.sent} replies`,
    );
    if (same.received !== same.sent) throw new DemoFailure('blue containers do not reach each other');
    const c2 = d.containers.find((c) => c.host === h2)!;
    const across = await d.lab.ping(b1.ns, c2.ip, { count: 2, intervalS: 0.2, timeoutS: 1 });
    const outcome = across.sent === 0 ? 'no route' : `${across.received}/${across.sent} replies`;
    show(
      `${across.received === 0 ? 'ok  ' : 'FAIL'} ${b1.ns.name} (blue) -> ${c2.ns.name} (weavets) ${c2.ip}: ${outcome} (isolated: nothing expected)`,
    );
    if (across.received !== 0) throw new DemoFailure('a blue container reached a container of the weavets network');
  },
};

const trace: Step = {
  title: 'host1$ weavets trace c1 c3 (the path, hop by hop, and a live probe)',
  async run(d) {
    const [c1, , c3] = d.containers as [Container, Container, Container];
    const r = await d.lab.weavets(d.hosts[0]!, ['trace', c1.ns.name, c3.ip]);
    process.stdout.write(r.stdout);
    if (r.code !== 0) throw new DemoFailure(`weavets trace exited ${r.code}: ${r.stderr.trim()}`);
  },
};

const statusPage: Step = {
  title: 'the status page: a live picture of the mesh on every host',
  async run(d) {
    for (const h of d.hosts) {
      const page = await d.lab.http(h, '/');
      const health = await d.lab.http(h, '/healthz');
      show(
        `${h.name}: http://127.0.0.1:6782/ (in ${h.netnsName}): page ${page.status}, /healthz ${health.status}, /metrics for Prometheus`,
      );
      if (page.status !== 200 || health.status !== 200)
        throw new DemoFailure(`${h.name}'s status page answered ${page.status}, /healthz ${health.status}`);
    }
  },
};

const policy: Step = {
  title: 'a policy: only app=web may reach app=db, on tcp/5432; a refused ping is named in policy drops',
  async run(d) {
    const [h1, , h3] = d.hosts as [Host, Host, Host];
    const [c1, c2, c3] = d.containers as [Container, Container, Container];
    const file = path.join(d.lab.dir, 'db.json');
    const doc = {
      name: 'db-ingress',
      network: 'weavets',
      selector: { app: 'db' },
      ingress: [{ from: [{ selector: { app: 'web' } }], ports: [{ protocol: 'tcp', port: 5432 }] }],
    };
    fs.writeFileSync(file, JSON.stringify(doc));
    show(`${h1.name}$ weavets policy apply -f db.json    # ${JSON.stringify(doc)}`);
    await d.lab.weavetsOk(h1, ['policy', 'apply', '-f', file]);
    // Applied on host1, in force on host3 (where c3 is) once the mesh carried it there.
    await d.lab.waitFor(async () => !(await d.lab.ping(c2.ns, c3.ip, { count: 1, timeoutS: 1 })).ok, {
      what: 'the policy to be in force on host3',
      timeoutMs: 15_000,
    });
    show(`ok   ${c2.ns.name} (app=other) -> ${c3.ns.name} (app=db): ping refused`);
    const t = await d.lab.weavets(h1, ['trace', c1.ns.name, c3.ns.name, '--port', 'tcp/5432']);
    show(`${h1.name}$ weavets trace ${c1.ns.name} ${c3.ns.name} --port tcp/5432`);
    process.stdout.write(t.stdout);
    if (t.code !== 0) throw new DemoFailure(`trace of an allowed pair exited ${t.code}: ${t.stderr.trim()}`);
    let drops = '';
    await d.lab.waitFor(
      async () => {
        drops = await d.lab.weavetsOk(h3, ['policy', 'drops']);
        return drops.includes('db-ingress') && drops.includes(c2.ns.name);
      },
      { what: `host3's policy drops to name ${c2.ns.name}'s refused ping`, timeoutMs: 15_000 },
    );
    show(`${h3.name}$ weavets policy drops`);
    process.stdout.write(drops);
  },
};

const STEPS: Step[] = [buildHosts, launch, attach, mesh, pingAll, names, twoNetworks, trace, statusPage, policy];

async function main(): Promise<number> {
  if (process.getuid && process.getuid() !== 0) {
    process.stderr.write('demo: run as root (it creates network namespaces)\n');
    return 1;
  }
  const started = Date.now();
  let lab: Lab | undefined;
  try {
    lab = await createLab();
    lab.requireCli();
    const demo: Demo = { lab, hosts: [], containers: [] };
    for (const [i, step] of STEPS.entries()) {
      say(`${i + 1}/${STEPS.length} ${step.title}`);
      await step.run(demo);
    }
    say(`demo done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return 0;
  } catch (err) {
    process.stderr.write(`\ndemo failed: ${(err as Error).message}\n`);
    lab?.dumpLogs(30);
    return 1;
  } finally {
    if (lab) {
      say('tearing down');
      await lab.destroy();
      show('daemons stopped, namespaces and temp files removed');
    }
  }
}

void main().then((code) => {
  process.exitCode = code;
});
