/** The cluster's networks: `network create|ls|rm`. */
import type { Command } from 'commander';
import type { NetworkCreateRequest, NetworkInfo } from '../endpoint/types';
import { clientFor, stateDirOf } from './context';
import { UsageError, formatJson, formatTable, out } from './output';
import { parseNetworkName, parseRangeCidr } from './validate';

export function formatNetworks(networks: NetworkInfo[]): string {
  return formatTable(
    ['NAME', 'ID', 'SUBNET', 'HERE', 'CREATED'],
    networks.map((n) => [n.name, String(n.id), n.subnet, n.local ? 'yes' : 'no', n.created]),
  );
}

/** "-o key=value" options, repeated. */
function collectOption(text: string, prev: Record<string, string>): Record<string, string> {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--opt: '${text}' is not key=value`);
  return { ...prev, [text.slice(0, eq)]: text.slice(eq + 1) };
}

export function registerNetwork(program: Command): void {
  const network = program
    .command('network')
    .description("the cluster's networks: each its own L2 segment, subnet and DNS names");

  network
    .command('create')
    .description('create a network (its subnet is picked from the range unless --subnet); prints its id and subnet')
    .argument('<name>', 'network name: one DNS label')
    .option('--subnet <cidr>', 'subnet inside the range, at least one address block, e.g. 10.40.7.0/24')
    .option('-o, --opt <key=value>', 'an option stored with the network (repeatable)', collectOption, {})
    .option('--json', 'print JSON')
    .action(
      async (name: string, flags: { subnet?: string; opt: Record<string, string>; json?: boolean }, cmd: Command) => {
        const req: NetworkCreateRequest = { name: parseNetworkName(name, 'network name') };
        if (flags.subnet !== undefined) req.subnet = parseRangeCidr(flags.subnet, '--subnet');
        if (Object.keys(flags.opt).length > 0) req.options = flags.opt;
        const n = await clientFor(stateDirOf(cmd)).post<NetworkInfo>('/networks/create', req);
        out(flags.json ? formatJson(n) : `${n.name} ${n.id} ${n.subnet}`);
      },
    );

  network
    .command('ls')
    .description('list the networks of the cluster')
    .option('--json', 'print JSON: an array of {name, id, subnet, options, created, local}')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const list = await clientFor(stateDirOf(cmd)).get<NetworkInfo[]>('/networks');
      out(flags.json ? formatJson(list) : formatNetworks(list));
    });

  network
    .command('rm')
    .description('remove a network (refused while containers are attached to it anywhere)')
    .argument('<name>', 'network name')
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      await clientFor(stateDirOf(cmd)).post('/networks/rm', { name: parseNetworkName(name, 'network name') });
    });
}
