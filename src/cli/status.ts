/** `status [peers|connections|targets|ipam|dns] [--json]`: what the daemon knows, as JSON or tables. */
import type { Command } from 'commander';
import type { HealthStatus } from '../diagnostics';
import type { DnsStatus } from '../dns/status';
import type { IpamStatus } from '../ipam/status';
import type { ConnectionStatus, PeerStatus, RouterStatus, TargetStatus } from '../router/status';
import { formatHealth } from './diagnostics';
import { formatIpamStatus } from './ipam';
import { formatDnsStatus } from './dns';
import { clientFor, stateDirOf } from './context';
import { UsageError, formatJson, formatTable, out } from './output';

export const UNENCRYPTED_WARNING = 'WARNING: traffic between peers is NOT encrypted (no --password)';

export function formatConnections(conns: ConnectionStatus[]): string {
  const withInfo = conns.some((c) => c.info);
  const headers = ['PEER', 'NICKNAME', 'ADDRESS', 'STATE', 'DATAPATH', 'ENCRYPTED'];
  const rows = conns.map((c) => {
    const row = [c.peer || '-', c.nickname || '-', c.address, c.state, c.datapath, c.encrypted ? 'yes' : 'no'];
    if (withInfo) row.push(c.info ?? '');
    return row;
  });
  let text = formatTable(withInfo ? [...headers, 'INFO'] : headers, rows);
  if (conns.some((c) => !c.encrypted)) text += UNENCRYPTED_WARNING + '\n';
  return text;
}

export function formatPeers(peers: PeerStatus[]): string {
  return formatTable(
    ['NAME', 'NICKNAME', 'REACHABLE', 'VIA', 'CONNECTIONS'],
    peers.map((p) => [
      p.name,
      p.nickname,
      p.reachable ? 'yes' : 'no',
      p.via || '-',
      p.connections.map((c) => `${c.name}(${c.nickname})`).join(',') || '-',
    ]),
  );
}

export function formatTargets(targets: TargetStatus[]): string {
  return formatTable(
    ['ADDRESS', 'STATE', 'SOURCE', 'ATTEMPTS', 'RETRY-IN', 'LAST-ERROR'],
    targets.map((t) => [
      t.address,
      t.state,
      t.source,
      String(t.attempts),
      t.retryInMs === undefined ? '-' : `${(t.retryInMs / 1000).toFixed(1)}s`,
      t.lastError ?? '',
    ]),
  );
}

export function formatRouterStatus(s: RouterStatus): string {
  const pairs: [string, string][] = [
    ['Version', s.version],
    ['Name', `${s.name} (${s.nickname})`],
    ['Port', String(s.port)],
    ['Encryption', s.encryption ? 'enabled' : 'disabled'],
    ['Datapath', s.datapath],
    ['IP alloc range', s.ipallocRange],
    ['Peers', String(s.peers)],
    ['Connections', `${s.connections.established} established / ${s.connections.total} total`],
    ['Targets', String(s.targets)],
  ];
  const width = Math.max(...pairs.map(([k]) => k.length));
  let text = pairs.map(([k, v]) => `${k.padStart(width)}: ${v}`).join('\n') + '\n';
  if (s.networks.length > 0) {
    text += '\nNetworks:\n';
    text += formatTable(
      ['NAME', 'ID', 'SUBNET', 'BRIDGE', 'MTU'],
      s.networks.map((n) => [n.name, String(n.id), n.subnet, n.bridge, String(n.mtu)]),
    ).replace(/^(?=.)/gm, '  ');
  }
  if (!s.encryption && s.connections.total > 0) text += UNENCRYPTED_WARNING + '\n';
  return text;
}

const SECTIONS = ['peers', 'connections', 'targets', 'ipam', 'dns', 'health'] as const;
type Section = (typeof SECTIONS)[number];

export function parseSection(text: string | undefined): Section | undefined {
  if (text === undefined) return undefined;
  if (!(SECTIONS as readonly string[]).includes(text)) {
    throw new UsageError(`unknown status section '${text}': use peers, connections, targets, ipam, dns or health`);
  }
  return text as Section;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      "show the router: summary, or peers, connections or targets; address management (ipam); the DNS server (dns); every host's view of every other (health)",
    )
    .argument('[section]', 'peers | connections | targets | ipam | dns | health')
    .option(
      '--json',
      'print JSON (shapes in src/router/status.ts, src/ipam/status.ts, src/dns/status.ts, src/diagnostics/)',
    )
    .action(async (sectionText: string | undefined, flags: { json?: boolean }, cmd: Command) => {
      const section = parseSection(sectionText);
      const client = clientFor(stateDirOf(cmd));
      switch (section) {
        case undefined: {
          const s = await client.get<RouterStatus>('/status');
          out(flags.json ? formatJson(s) : formatRouterStatus(s));
          break;
        }
        case 'connections': {
          const c = await client.get<ConnectionStatus[]>('/status/connections');
          out(flags.json ? formatJson(c) : formatConnections(c));
          break;
        }
        case 'peers': {
          const p = await client.get<PeerStatus[]>('/status/peers');
          out(flags.json ? formatJson(p) : formatPeers(p));
          break;
        }
        case 'targets': {
          const t = await client.get<TargetStatus[]>('/status/targets');
          out(flags.json ? formatJson(t) : formatTargets(t));
          break;
        }
        case 'ipam': {
          const s = await client.get<IpamStatus>('/ipam/status');
          out(flags.json ? formatJson(s) : formatIpamStatus(s));
          break;
        }
        case 'dns': {
          const s = await client.get<DnsStatus>('/dns/status');
          out(flags.json ? formatJson(s) : formatDnsStatus(s));
          break;
        }
        case 'health': {
          const h = await client.get<HealthStatus>('/status/health');
          out(flags.json ? formatJson(h) : formatHealth(h));
          break;
        }
      }
    });
}
