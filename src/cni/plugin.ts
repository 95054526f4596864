/**
 * The CNI commands. The plugin does no netlink work itself: it asks the local daemon
 * (over its unix socket) to attach, detach and inspect endpoints, and turns the answers
 * into CNI results. Daemon error codes become CNI codes in daemonError(), the one place.
 */
import { ApiClient } from '../api/client';
import type { EndpointCheck, EndpointStatus, ExposeResult } from '../endpoint/types';
import { WeavetsError } from '../errors';
import { endpointId, parseEndpointId, type Invocation } from './invocation';
import { CNI_ERR, CniError, formatResult, type CniResult, type DnsConfig } from './spec';
import { namespaceFileState } from '../netlink/nsfs';

/** What the plugin needs from the daemon API; ApiClient is it. */
export type DaemonApi = Pick<ApiClient, 'get' | 'post' | 'raw'>;

export interface PluginLog {
  debug(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
  warn(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
}

/** Map a daemon failure onto a CNI error code. */
export function daemonError(err: unknown, what: string): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof WeavetsError) {
    switch (err.code) {
      case 'EWEAVETS_NOT_RUNNING':
        return new CniError(CNI_ERR.TRY_AGAIN, `${what}: ${err.message}`, undefined, { cause: err });
      case 'EWEAVETS_BAD_REQUEST':
        return new CniError(CNI_ERR.REJECTED, `${what}: ${err.message}`, undefined, { cause: err });
      case 'EWEAVETS_CONFLICT':
      case 'EWEAVETS_ALREADY_RUNNING':
        return new CniError(CNI_ERR.CONFLICT, `${what}: ${err.message}`, undefined, { cause: err });
      case 'EWEAVETS_RANGE_EXHAUSTED':
        return new CniError(CNI_ERR.RANGE_EXHAUSTED, `${what}: ${err.message}`, undefined, { cause: err });
      case 'EWEAVETS_NOT_FOUND':
      case 'EWEAVETS_INTERNAL':
        // A request that timed out is worth retrying; the daemon may be busy.
        if (/no answer from the daemon/.test(err.message))
          return new CniError(CNI_ERR.TRY_AGAIN, `${what}: ${err.message}`, undefined, { cause: err });
        return new CniError(CNI_ERR.DAEMON_FAILED, `${what}: ${err.message}`, undefined, { cause: err });
    }
  }
  return new CniError(
    CNI_ERR.DAEMON_FAILED,
    `${what}: ${err instanceof Error ? err.message : String(err)}`,
    undefined,
    { cause: err },
  );
}

function addressOnly(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

/**
 * CNI_NETNS must be a namespace file, checked before anything is asked of the daemon:
 * missing is the spec's "container unknown" (3), anything else (a regular file, a
 * directory) an invalid environment variable (4).
 */
export function checkNetns(netns: string): void {
  switch (namespaceFileState(netns)) {
    case 'namespace':
      return;
    case 'missing':
      throw new CniError(CNI_ERR.CONTAINER_UNKNOWN, `network namespace ${netns} does not exist`);
    case 'other':
      throw new CniError(
        CNI_ERR.INVALID_ENV,
        `CNI_NETNS ${netns} is not a network namespace file (such as /proc/PID/ns/net or /run/netns/NAME)`,
      );
  }
}

export async function cmdAdd(inv: Invocation, api: DaemonApi): Promise<CniResult> {
  const { conf } = inv;
  checkNetns(inv.netns);
  let gateway: string | undefined;
  try {
    if (conf.gateway) {
      // Idempotent: answers the host's existing address on the network when it has one.
      const ex = await api.post<ExposeResult>('/expose', { network: conf.network });
      gateway = addressOnly(ex.address);
    }
    const body: Record<string, string | Record<string, string>> = {
      id: endpointId(conf.name, inv.containerId, inv.ifname),
      netns: inv.netns,
      ifname: inv.ifname,
      network: conf.network,
    };
    if (conf.ip !== undefined) body['ip'] = conf.ip;
    if (conf.mac !== undefined) body['mac'] = conf.mac;
    if (inv.containerName !== undefined) body['name'] = inv.containerName;
    if (gateway !== undefined) body['gateway'] = gateway;
    if (conf.labels !== undefined) body['labels'] = conf.labels;
    const ep = await api.post<EndpointStatus>('/attach', body);
    const attachment = {
      hostIfname: ep.hostVeth,
      hostMac: ep.hostMac ?? '',
      ifname: ep.ifname,
      mac: ep.mac,
      sandbox: inv.netns,
      address: ep.address,
      // weavets DNS for the container, unless the configuration names its own resolvers.
      dns: { ...(ep.dns ? { nameservers: ep.dns.nameservers, search: ep.dns.search } : {}), ...definedOnly(conf.dns) },
      ...(ep.gateway !== undefined ? { gateway: ep.gateway } : {}),
    };
    return formatResult(conf.cniVersion, attachment);
  } catch (err) {
    throw daemonError(err, 'ADD');
  }
}

export async function cmdDel(inv: Invocation, api: DaemonApi): Promise<void> {
  try {
    // missingOk: a second DEL, or one after a failed ADD, is a success. ifname: the daemon
    // releases what this id holds even if it has no endpoint for it (an ADD cut short).
    // release: a CNI attachment's id (its sandbox's container id) never comes back, so
    // reserving its address for --address-retention would only keep it from the next pod.
    await api.post('/detach', {
      id: endpointId(inv.conf.name, inv.containerId, inv.ifname),
      ifname: inv.ifname,
      missingOk: true,
      release: true,
    });
  } catch (err) {
    throw daemonError(err, 'DEL');
  }
}

interface PrevResultShape {
  interfaces?: { name?: unknown; mac?: unknown; sandbox?: unknown }[];
  ips?: { address?: unknown }[];
}

export async function cmdCheck(inv: Invocation, api: DaemonApi): Promise<void> {
  const id = endpointId(inv.conf.name, inv.containerId, inv.ifname);
  const prev = inv.conf.prevResult as PrevResultShape | undefined;
  if (prev === undefined || typeof prev !== 'object' || prev === null) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, 'CHECK needs prevResult (the result of the ADD)');
  }
  checkNetns(inv.netns);
  let check: EndpointCheck;
  try {
    check = await api.post<EndpointCheck>('/endpoints/check', { id });
  } catch (err) {
    if (err instanceof WeavetsError && err.code === 'EWEAVETS_NOT_FOUND') {
      throw new CniError(
        CNI_ERR.CHECK_FAILED,
        `the daemon holds no endpoint ${id}: the container's address is not allocated`,
        undefined,
        { cause: err },
      );
    }
    throw daemonError(err, 'CHECK');
  }
  const ep = check.endpoint;
  const problems = [...check.problems];
  if (ep.netns !== inv.netns) problems.push(`endpoint is in ${ep.netns}, not ${inv.netns}`);
  // What ADD reported must still be true; later plugins in the chain may have added more.
  const ours = (prev.interfaces ?? []).find(
    (i) => i.name === inv.ifname && i.sandbox !== undefined && i.sandbox !== '',
  );
  if (!ours) problems.push(`prevResult lists no interface ${inv.ifname} in a sandbox`);
  else if (typeof ours.mac === 'string' && ours.mac !== '' && ours.mac.toLowerCase() !== ep.mac) {
    problems.push(`interface ${inv.ifname} has mac ${ep.mac}, prevResult says ${ours.mac}`);
  }
  const prevAddrs = (prev.ips ?? []).map((i) => i.address).filter((a): a is string => typeof a === 'string');
  if (!prevAddrs.includes(ep.address))
    problems.push(`address ${ep.address} is not in prevResult (${prevAddrs.join(', ') || 'none'})`);
  if (problems.length > 0) throw new CniError(CNI_ERR.CHECK_FAILED, `CHECK ${id}: ${problems.join('; ')}`);
}

/** GC: release this network's endpoints that are not in the valid attachments. */
export async function cmdGc(inv: Invocation, api: DaemonApi, log: PluginLog): Promise<void> {
  const valid = new Set((inv.conf.validAttachments ?? []).map((a) => `${a.containerId}\0${a.ifname}`));
  try {
    const endpoints = await api.get<EndpointStatus[]>('/endpoints');
    const stale = endpoints.filter((ep) => {
      const a = parseEndpointId(ep.id, inv.conf.name);
      return a !== undefined && !valid.has(`${a.containerId}\0${a.ifname}`);
    });
    // One at a time: the daemon serialises link work anyway.
    for (const ep of stale) {
      log.debug('GC: releasing stale endpoint', { id: ep.id, address: ep.address });
      await api.post('/detach', { id: ep.id, missingOk: true });
    }
  } catch (err) {
    throw daemonError(err, 'GC');
  }
}

/** STATUS: ready for ADDs when the daemon answers and says it is ready. */
export async function cmdStatus(_inv: Invocation, api: DaemonApi): Promise<void> {
  let res;
  try {
    res = await api.raw('GET', '/readyz');
  } catch (err) {
    // Without the daemon the data path is gone too: existing containers lose the overlay.
    const why = err instanceof Error ? err.message : String(err);
    throw new CniError(CNI_ERR.NOT_AVAILABLE_DEGRADED, `weavets daemon unreachable: ${why}`, undefined, { cause: err });
  }
  if (res.status !== 200)
    throw new CniError(CNI_ERR.NOT_AVAILABLE, `weavets daemon is not ready (HTTP ${res.status}: ${res.body.trim()})`);
}

function definedOnly(d: DnsConfig): DnsConfig {
  const out: DnsConfig = {};
  if (d.nameservers !== undefined && d.nameservers.length > 0) out.nameservers = d.nameservers;
  if (d.domain !== undefined) out.domain = d.domain;
  if (d.search !== undefined && d.search.length > 0) out.search = d.search;
  if (d.options !== undefined && d.options.length > 0) out.options = d.options;
  return out;
}
