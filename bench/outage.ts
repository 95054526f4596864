/**
 * Recovery of the sealed data path after UDP outages, on real namespace hosts.
 *
 *   npx tsx bench/outage.ts [--outages 5,300,900] [--reference 5]
 *
 * Two hosts with a network password, sleeve data path, one container each. For each
 * outage length (seconds) the lab drops every UDP datagram to port 6783 between the hosts
 * (the TCP control connection stays up), waits, lets them through again and measures the
 * time until a container's ping answers again. The reference row is a short outage
 * measured in the same run (before the long ones); the ratio column divides by it.
 * "never" means no answer within --give-up seconds (default 120) after the outage.
 * Also prints the receiver's bad_epoch drop count after each outage.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, type Host, type Lab, type Namespace } from '../test/net/harness';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
}
const OUTAGES_S = arg('outages', '5,300,900').split(',').map(Number);
const REFERENCE_S = Number(arg('reference', '5'));
const GIVE_UP_S = Number(arg('give-up', '120'));

function badEpochDrops(metrics: string): number {
  let n = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith('weavets_dropped_datagrams_total{') && line.includes('reason="bad_epoch"'))
      n += Number(line.split(/\s+/).pop());
  }
  return n;
}

/** Seconds from `since` until one ping from c1 to ip2 answers, or undefined after the give-up time. */
async function recovery(lab: Lab, c1: Namespace, ip2: string, since: number): Promise<number | undefined> {
  while (Date.now() - since < GIVE_UP_S * 1000) {
    const r = await lab.ping(c1, ip2, { count: 1, timeoutS: 1 });
    if (r.ok) return (Date.now() - since) / 1000;
  }
  return undefined;
}

async function main(): Promise<void> {
  const lab = await createLab();
  try {
    lab.requireCli();
    const pw = path.join(lab.dir, 'password');
    fs.writeFileSync(pw, 'outage-bench-password\n', { mode: 0o600 });
    const h1: Host = await lab.addHost('h1');
    const h2: Host = await lab.addHost('h2');
    const c1 = await lab.addContainer(h1, 'c1');
    const c2 = await lab.addContainer(h2, 'c2');
    const args = ['--password-file', pw, '--datapath', 'sleeve'];
    await lab.launch(h1, [], args);
    await lab.launch(h2, [h1.ip], args);
    await lab.attach(h1, c1);
    const ip2 = (await lab.attach(h2, c2)).split('/')[0]!;
    await lab.waitFor(async () => (await lab.ping(c1, ip2, { count: 1, timeoutS: 1 })).ok, {
      what: 'c1 to reach c2',
      timeoutMs: 60_000,
    });

    const rows: { outage: number; recovery: number | undefined; badEpoch: number }[] = [];
    for (const outage of [REFERENCE_S, ...OUTAGES_S]) {
      const before =
        badEpochDrops((await lab.http(h2, '/metrics')).body) + badEpochDrops((await lab.http(h1, '/metrics')).body);
      await lab.blockUdpPort(h1, h2, 6783);
      process.stderr.write(`[${new Date().toISOString()}] UDP 6783 blocked for ${outage} s\n`);
      await new Promise((r) => setTimeout(r, outage * 1000));
      await lab.unblockUdpPort(h1, h2, 6783);
      const since = Date.now();
      const rec = await recovery(lab, c1, ip2, since);
      const after =
        badEpochDrops((await lab.http(h2, '/metrics')).body) + badEpochDrops((await lab.http(h1, '/metrics')).body);
      rows.push({ outage, recovery: rec, badEpoch: after - before });
      process.stderr.write(
        `[${new Date().toISOString()}] outage ${outage} s: recovered ${rec === undefined ? 'never' : `after ${rec.toFixed(1)} s`}\n`,
      );
      if (rec === undefined) break;
      // Let the path settle (heartbeats every second) before the next outage.
      await new Promise((r) => setTimeout(r, 5000));
    }

    const ref = rows[0]?.recovery;
    console.log('| UDP outage | recovery (first ping answered) | vs reference | bad_epoch drops |');
    console.log('|---|---|---|---|');
    for (const [i, r] of rows.entries()) {
      const rec = r.recovery === undefined ? `never (> ${GIVE_UP_S} s)` : `${r.recovery.toFixed(1)} s`;
      const ratio = r.recovery === undefined || ref === undefined ? '—' : `${(r.recovery / ref).toFixed(2)}×`;
      console.log(`| ${r.outage} s${i === 0 ? ' (reference)' : ''} | ${rec} | ${ratio} | ${r.badEpoch} |`);
    }
  } finally {
    await lab.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
