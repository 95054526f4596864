/** `trace FROM TO`, `flows`, and the health matrix `status health` prints: see and explain the overlay. */
import type { Command } from 'commander';
import type { HealthStatus, TraceResult } from '../diagnostics';
import type { FlowsStatus } from '../diagnostics/flows';
import { clientFor, stateDirOf } from './context';
import { ExitStatus, formatJson, formatTable, out } from './output';

function ms(v: number | null): string {
  if (v === null) return '-';
  return `${v < 1 ? v.toFixed(2) : v.toFixed(1)} ms`;
}

function hostLabel(h: { name: string; nickname: string }): string {
  return h.nickname || h.name;
}

export function formatTrace(t: TraceResult): string {
  const end = (e: TraceResult['from']): string => `${e.name || e.id} (${hostLabel(e.host)}, ${e.address})`;
  let text = `${end(t.from)} -> ${end(t.to)}, network ${t.network || `${t.from.network} / ${t.to.network}`}\n`;
  const rows = t.hops.map((h, i) => {
    const row = [
      `${hostLabel(h.from)} -> ${hostLabel(h.to)}`,
      h.datapath,
      h.encrypted ? 'encrypted' : 'clear',
      `pmtu ${h.pmtu ?? '-'}`,
      `rtt ${ms(h.rttMs)}`,
      h.up ? 'up' : `DOWN: ${h.reason}`,
    ];
    if (h.stale) row.push('(stale report)');
    if (i === 0 && t.relayed !== null) row.push(`(relayed: ${t.relayed})`);
    return row;
  });
  if (rows.length > 0)
    text += formatTable(['HOP', 'DATAPATH', 'ENCRYPTION', 'PMTU', 'RTT', 'STATE'], rows).replace(/^(?=.)/gm, '  ');
  else if (t.from.host.name === t.to.host.name && t.network !== '')
    text += `  same host: the bridge of ${t.network} joins them\n`;
  const policy = `policy: ${t.policy.verdict} (${t.policy.policy ?? t.policy.reason})`;
  const probe =
    t.probe.sent === 0
      ? 'probe: not sent'
      : `probe: ${t.probe.answered}/${t.probe.sent} answered${t.probe.rttMs === null ? '' : `, ${ms(t.probe.rttMs)}`} (from ${t.probe.from ? hostLabel(t.probe.from) : '-'})`;
  text += `  ${policy}   ${probe}\n`;
  text += t.reachable ? '  reachable\n' : `  NOT reachable: ${t.reason}\n`;
  return text;
}

export function formatHealth(h: HealthStatus): string {
  const cols = new Map<string, string>();
  for (const r of h.rows) cols.set(r.name, r.nickname || r.name);
  for (const r of h.rows) for (const p of r.peers) if (!cols.has(p.name)) cols.set(p.name, p.nickname || p.name);
  const rows: string[][] = [];
  for (const r of h.rows) {
    for (const p of r.peers) {
      rows.push([
        (r.nickname || r.name) + (r.stale ? ` (STALE ${Math.round(r.ageMs / 1000)} s)` : ''),
        p.nickname || p.name,
        p.up ? 'up' : 'down',
        p.rttMs === null ? '-' : ms(p.rttMs),
        p.loss === null ? '-' : `${Math.round(p.loss * 100)}%`,
        p.pmtu === null ? '-' : String(p.pmtu),
        p.datapath,
        p.encrypted ? 'yes' : 'no',
        p.reason,
      ]);
    }
  }
  return formatTable(['FROM', 'TO', 'STATE', 'RTT', 'LOSS', 'PMTU', 'DATAPATH', 'ENCRYPTED', 'WHY'], rows);
}

function bytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

export function formatFlows(f: FlowsStatus): string {
  if (!f.enabled) return `flow counting is off on ${f.host} (launched with --no-flows)\n`;
  if (f.flows.length === 0) return `no traffic between containers on ${f.host} in the last ${f.windowSeconds} s\n`;
  const end = (e: FlowsStatus['flows'][number]['src']): string =>
    e.host ? `${e.name || '(unnamed)'} (${e.host}, ${e.address})` : e.name ? `${e.name} ${e.mac}` : e.mac;
  return formatTable(
    ['FROM', 'TO', 'NETWORK', 'BYTES', 'PACKETS', 'DATAPATH'],
    f.flows.map((r) => [end(r.src), end(r.dst), r.network, bytes(r.bytes), String(r.packets), r.datapath]),
  );
}

export function registerDiagnostics(program: Command): void {
  program
    .command('trace')
    .description(
      'explain the path between two containers (ids, DNS names or addresses, on any host): hops, data paths, policy, and a live probe',
    )
    .argument('<from>', 'container id, name or address')
    .argument('<to>', 'container id, name or address')
    .option('--port <PROTO/PORT>', 'the traffic the policy verdict is about: icmp, tcp/5432, udp/53', 'icmp')
    .option('--json', 'print JSON')
    .action(async (from: string, to: string, flags: { json?: boolean; port: string }, cmd: Command) => {
      const t = await clientFor(stateDirOf(cmd)).post<TraceResult>('/trace', { from, to, port: flags.port });
      out(flags.json ? formatJson(t) : formatTrace(t));
      // Like ping: a trace that finds no way through exits non-zero.
      if (!t.reachable) throw new ExitStatus(1);
    });
  program
    .command('flows')
    .description('top container pairs by bytes over the last minute, counted on this host (sleeve and fastdp)')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const f = await clientFor(stateDirOf(cmd)).get<FlowsStatus>('/flows');
      out(flags.json ? formatJson(f) : formatFlows(f));
    });
}
