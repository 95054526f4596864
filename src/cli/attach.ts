/** Containers on the network: `attach`, `detach`, `ps`, and the host's own `expose`/`hide`. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { AttachRequest, EndpointStatus, ExposeResult } from '../endpoint/types';
import { clientFor, stateDirOf } from './context';
import { UsageError, formatJson, formatTable, out } from './output';
import { parseAddressCidr, parseEndpointId, parseIfname, parseNetworkName } from './validate';
import { writeContainerResolvConf, removeContainerResolvConf } from './dns';
import { recordNameProblem } from '../dns/names';
import { formatLabels, parseLabelArg } from '../policy/labels';

interface AttachFlags {
  netns: string;
  ifname?: string;
  ip?: string;
  network?: string;
  name?: string;
  /** --label k=v, repeatable. */
  label?: string[];
}

/** The request `attach` sends; exported for tests. Throws UsageError on bad input. */
export function buildAttachRequest(id: string, flags: AttachFlags): AttachRequest {
  const netns = path.resolve(flags.netns);
  if (!fs.existsSync(netns)) {
    throw new UsageError(
      `--netns: ${netns} does not exist; give a namespace file such as /run/netns/NAME (ip netns add NAME) or /proc/PID/ns/net`,
    );
  }
  const req: AttachRequest = { id: parseEndpointId(id), netns };
  if (flags.ifname !== undefined) req.ifname = parseIfname(flags.ifname);
  if (flags.ip !== undefined) req.ip = parseAddressCidr(flags.ip, '--ip');
  if (flags.network !== undefined) req.network = parseNetworkName(flags.network);
  if (flags.name !== undefined) {
    const bad = recordNameProblem(flags.name);
    if (bad) throw new UsageError(`--name: ${bad}`);
    req.name = flags.name;
  }
  if (flags.label !== undefined && flags.label.length > 0) {
    const labels: Record<string, string> = {};
    for (const text of flags.label) {
      try {
        const [k, v] = parseLabelArg(text);
        labels[k] = v;
      } catch (err) {
        throw new UsageError(`--label: ${(err as Error).message}`, { cause: err });
      }
    }
    req.labels = labels;
  }
  return req;
}

export function formatEndpoints(endpoints: EndpointStatus[]): string {
  return formatTable(
    ['ID', 'NETWORK', 'ADDRESS', 'MAC', 'IFNAME', 'NETNS', 'LABELS'],
    endpoints.map((e) => [e.id, e.network, e.address, e.mac, e.ifname, e.netns, formatLabels(e.labels ?? {})]),
  );
}

export function registerAttach(program: Command): void {
  program
    .command('attach')
    .description('give the container in a network namespace an interface on the network; prints its address')
    .argument('<id>', 'container id')
    .requiredOption('--netns <path>', 'network namespace file, e.g. /run/netns/c1')
    .option('--ifname <name>', 'interface name inside the namespace (default eth0)')
    .option('--ip <cidr>', 'address to use instead of allocating one, e.g. 10.32.1.5/12')
    .option('--network <name>', 'network to attach to (default: the default network)')
    .option('--name <name>', 'container name: answered by weavets DNS as NAME.weavets.local')
    .option(
      '--label <key=value>',
      'label for policies (repeatable): --label app=web',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .action(async (id: string, flags: AttachFlags, cmd: Command) => {
      const req = buildAttachRequest(id, flags);
      const ep = await clientFor(stateDirOf(cmd)).post<EndpointStatus>('/attach', req);
      // A named namespace (/run/netns/NAME) gets weavets DNS in /etc/netns/NAME/resolv.conf,
      // unless a resolv.conf we did not write is there: that one is the user's and stays.
      const dns = writeContainerResolvConf(ep);
      out(ep.address);
      if (dns && 'kept' in dns) {
        process.stderr.write(
          `weavets: kept ${dns.kept}: it was not written by weavets; for weavets DNS in this container, add "nameserver ${ep.dns?.nameservers[0] ?? ''}" to it (or remove it and attach again)\n`,
        );
      }
    });

  program
    .command('detach')
    .description(
      "remove a container's interface; its address stays reserved for the id for --address-retention (launch), so it gets it back on any host",
    )
    .argument('<id>', 'container id')
    .option('--release', 'free the address at once (also frees what an earlier detach reserved)')
    .action(async (id: string, flags: { release?: boolean }, cmd: Command) => {
      const client = clientFor(stateDirOf(cmd));
      const endpointId = parseEndpointId(id);
      const ep = (await client.get<EndpointStatus[]>('/endpoints')).find((e) => e.id === endpointId);
      await client.post('/detach', { id: endpointId, ...(flags.release ? { release: true } : {}) });
      // The resolv.conf attach wrote for a named namespace goes with the endpoint.
      if (ep) removeContainerResolvConf(ep);
    });

  program
    .command('ps')
    .description('list attached containers')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const endpoints = await clientFor(stateDirOf(cmd)).get<EndpointStatus[]>('/endpoints');
      out(flags.json ? formatJson(endpoints) : formatEndpoints(endpoints));
    });

  program
    .command('expose')
    .description('give the host an address on a network; prints it')
    .option('--network <name>', 'network (default: the default network)')
    .option('--ip <cidr>', 'address to use instead of allocating one')
    .action(async (flags: { network?: string; ip?: string }, cmd: Command) => {
      const body = {
        network: flags.network === undefined ? undefined : parseNetworkName(flags.network),
        ip: flags.ip === undefined ? undefined : parseAddressCidr(flags.ip, '--ip'),
      };
      const res = await clientFor(stateDirOf(cmd)).post<ExposeResult>('/expose', body);
      out(res.address);
    });

  program
    .command('hide')
    .description("remove the host's address from a network")
    .option('--network <name>', 'network (default: the default network)')
    .action(async (flags: { network?: string }, cmd: Command) => {
      const body = { network: flags.network === undefined ? undefined : parseNetworkName(flags.network) };
      const res = await clientFor(stateDirOf(cmd)).post<ExposeResult | null>('/hide', body);
      if (res) out(res.address);
    });
}
