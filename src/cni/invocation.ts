/**
 * One plugin invocation, decoded and validated from the CNI environment variables and
 * the network configuration on stdin. Every way the input can be wrong maps to its spec
 * error code here: bad environment 4, undecodable config 6, invalid config 7, a version
 * we cannot speak 1. Pure: the caller passes env and stdin in.
 */
import { isIpv4Cidr } from '../net/ipv4';
import { isMacText } from '../net/mac';
import { labelKeyProblem, labelValueProblem } from '../policy/labels';
import { FieldReader, parseJsonObject, type BodyErrors, type JsonObject } from '../json-fields';
import {
  CNI_ERR,
  CniError,
  LATEST_VERSION,
  isSupportedVersion,
  versionAtLeast,
  type CniVersion,
  type DnsConfig,
} from './spec';

export const DEFAULT_STATE_DIR = '/var/lib/weavets';
export const DEFAULT_NETWORK = 'weavets';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
const COMMANDS: readonly string[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

/** The plugin's own configuration, from the network configuration object. */
export interface NetConf {
  cniVersion: CniVersion;
  /** The CNI network name (config "name"): part of every endpoint id. */
  name: string;
  /** Daemon state dir: where its API socket lives. */
  stateDir: string;
  /** weavets network (L2 segment) the container joins. */
  network: string;
  /** Give containers a default route via the host's address on the network (exposing it). */
  gateway: boolean;
  dns: DnsConfig;
  /** runtimeConfig/args "ips": the first IPv4 CIDR. */
  ip?: string;
  /** runtimeConfig/args "mac". */
  mac?: string;
  /** Labels for policies: args.cni.labels, then runtimeConfig.labels (which wins per key). */
  labels?: Record<string, string>;
  prevResult?: unknown;
  /** GC: attachments still in use (union of cni.dev/valid-attachments and cni.dev/attachments). */
  validAttachments?: { containerId: string; ifname: string }[];
}

export interface Invocation {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs (unknown keys kept and ignored). */
  args: Map<string, string>;
  /** Container name for DNS: POD.NAMESPACE from K8S_POD_NAME/K8S_POD_NAMESPACE in CNI_ARGS. */
  containerName?: string;
  conf: NetConf;
}

const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** The daemon's own rule for interface names (stricter than Linux's; covers eth0, net1, ...). */
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const WEAVETS_NETWORK_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

type Env = Record<string, string | undefined>;
type Obj = JsonObject;

function envError(names: string, why: string): CniError {
  return new CniError(CNI_ERR.INVALID_ENV, `${names}: ${why}`);
}

function configError(msg: string): CniError {
  return new CniError(CNI_ERR.INVALID_CONFIG, msg);
}

export function parseCommand(env: Env): CniCommand {
  const c = env['CNI_COMMAND'];
  if (c === undefined || c === '') throw envError('CNI_COMMAND', 'not set');
  if (!COMMANDS.includes(c))
    throw envError('CNI_COMMAND', `unknown command ${JSON.stringify(c)}; want one of ${COMMANDS.join(', ')}`);
  return c as CniCommand;
}

/** "K=V;K2=V2": every pair must have a key and '='; keys we do not know are kept and ignored. */
export function parseCniArgs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (text === undefined || text === '') return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw envError('CNI_ARGS', `invalid pair ${JSON.stringify(pair)}; want KEY=VALUE separated by ';'`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** The config's version, read leniently so even a failing invocation reports in it. */
export function versionOf(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as Obj | null)?.['cniVersion'];
    return typeof v === 'string' && v !== '' ? v : LATEST_VERSION;
  } catch {
    return LATEST_VERSION;
  }
}

const CONFIG_ERRORS: BodyErrors = {
  malformed: (cause) =>
    new CniError(CNI_ERR.DECODE, `network configuration is not valid JSON: ${cause.message}`, undefined, { cause }),
  notObject: () => new CniError(CNI_ERR.DECODE, 'network configuration must be a JSON object'),
};

export function decodeConfig(stdin: string): Obj {
  if (stdin.trim() === '') throw new CniError(CNI_ERR.DECODE, 'no network configuration on stdin');
  return parseJsonObject(stdin, CONFIG_ERRORS);
}

/** Fields of the network configuration; errors are INVALID_CONFIG naming the field's path. */
const config = new FieldReader({ name: (field) => field, error: configError });

function optString(o: Obj, field: string, where: string): string | undefined {
  return config.within(where).optString(o, field);
}

function optObject(o: Obj, field: string, where: string): Obj | undefined {
  return config.within(where).optObject(o, field);
}

function optStringArray(o: Obj, field: string, where: string): string[] | undefined {
  return config.within(where).optStringArray(o, field);
}

function parseDns(conf: Obj): DnsConfig {
  const d = optObject(conf, 'dns', '');
  if (!d) return {};
  const dns: DnsConfig = {};
  const nameservers = optStringArray(d, 'nameservers', 'dns.');
  const domain = optString(d, 'domain', 'dns.');
  const search = optStringArray(d, 'search', 'dns.');
  const options = optStringArray(d, 'options', 'dns.');
  if (nameservers) dns.nameservers = nameservers;
  if (domain !== undefined) dns.domain = domain;
  if (search) dns.search = search;
  if (options) dns.options = options;
  return dns;
}

/** "ips" and "mac" from runtimeConfig (capability args), else from args.cni (conventions). */
function requestedIpAndMac(conf: Obj): { ip?: string; mac?: string } {
  const out: { ip?: string; mac?: string } = {};
  const sources: [Obj | undefined, string][] = [
    [optObject(conf, 'runtimeConfig', ''), 'runtimeConfig.'],
    [optObject(optObject(conf, 'args', '') ?? {}, 'cni', 'args.'), 'args.cni.'],
  ];
  for (const [src, where] of sources) {
    if (!src) continue;
    const ips = optStringArray(src, 'ips', where);
    if (ips && out.ip === undefined) {
      for (const ip of ips) {
        if (ip.includes(':')) continue; // IPv6: the overlay is IPv4 only.
        if (!isIpv4Cidr(ip))
          throw configError(`${where}ips: ${JSON.stringify(ip)} is not an IPv4 CIDR (a.b.c.d/prefix)`);
        out.ip = ip;
        break;
      }
    }
    const mac = optString(src, 'mac', where);
    if (mac !== undefined && out.mac === undefined) {
      if (!isMacText(mac))
        throw configError(`${where}mac: ${JSON.stringify(mac)} is not a MAC address (aa:bb:cc:dd:ee:ff)`);
      if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw configError(`${where}mac: ${mac} is a multicast address`);
      out.mac = mac.toLowerCase();
    }
  }
  return out;
}

/**
 * Labels from args.cni.labels (the CNI conventions' list of {key, value}) and
 * runtimeConfig.labels (that list, or an object); runtimeConfig wins per key.
 */
function requestedLabels(conf: Obj): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const sources: [unknown, string][] = [
    [optObject(optObject(conf, 'args', '') ?? {}, 'cni', 'args.')?.['labels'], 'args.cni.labels'],
    [optObject(conf, 'runtimeConfig', '')?.['labels'], 'runtimeConfig.labels'],
  ];
  let any = false;
  for (const [v, where] of sources) {
    if (v === undefined) continue;
    const pairs: [unknown, unknown][] = Array.isArray(v)
      ? v.map((e: unknown) =>
          typeof e === 'object' && e !== null ? [(e as Obj)['key'], (e as Obj)['value']] : [undefined, undefined],
        )
      : typeof v === 'object' && v !== null
        ? Object.entries(v)
        : [[undefined, undefined]];
    for (const [k, val] of pairs) {
      if (typeof k !== 'string' || typeof val !== 'string')
        throw configError(`${where}: want [{"key": K, "value": V}, ...] or {K: V} with string keys and values`);
      const bad = labelKeyProblem(k) ?? labelValueProblem(val);
      if (bad) throw configError(`${where}: ${bad}`);
      out[k] = val;
      any = true;
    }
  }
  return any ? out : undefined;
}

function parseAttachments(conf: Obj): NetConf['validAttachments'] {
  let seen = false;
  const out: { containerId: string; ifname: string }[] = [];
  for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
    const v = config.optArray(conf, key);
    if (v === undefined) continue;
    seen = true;
    for (const a of v) {
      const o = a as Obj | null;
      if (
        typeof o !== 'object' ||
        o === null ||
        typeof o['containerID'] !== 'string' ||
        typeof o['ifname'] !== 'string'
      ) {
        throw configError(`${key}: every entry needs string containerID and ifname`);
      }
      out.push({ containerId: o['containerID'], ifname: o['ifname'] });
    }
  }
  return seen ? out : undefined;
}

/** Build the plugin config from the decoded network configuration. */
export function parseNetConf(conf: Obj, command: CniCommand): NetConf {
  const version = conf['cniVersion'];
  if (typeof version !== 'string' || version === '') throw configError('cniVersion is required');
  if (!isSupportedVersion(version)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `cniVersion ${version} is not supported; weavets-cni speaks 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0`,
    );
  }
  const name = conf['name'];
  if (typeof name !== 'string' || !NETWORK_NAME_RE.test(name)) {
    throw configError(
      'name is required: a network name of letters, digits, "_", "." or "-", starting with a letter or digit',
    );
  }
  const stateDir = optString(conf, 'stateDir', '') ?? DEFAULT_STATE_DIR;
  if (!stateDir.startsWith('/')) throw configError(`stateDir ${JSON.stringify(stateDir)} must be an absolute path`);
  const network = optString(conf, 'network', '') ?? DEFAULT_NETWORK;
  if (!WEAVETS_NETWORK_RE.test(network))
    throw configError(`network ${JSON.stringify(network)}: use 1-63 letters, digits, "_", "." or "-"`);
  const gw = conf['gateway'];
  if (gw !== undefined && typeof gw !== 'boolean') throw configError('gateway must be true or false');
  const out: NetConf = { cniVersion: version, name, stateDir, network, gateway: gw ?? true, dns: parseDns(conf) };
  const { ip, mac } = requestedIpAndMac(conf);
  if (ip !== undefined) out.ip = ip;
  if (mac !== undefined) out.mac = mac;
  const labels = requestedLabels(conf);
  if (labels !== undefined) out.labels = labels;
  if (conf['prevResult'] !== undefined) out.prevResult = conf['prevResult'];
  if (command === 'CHECK' && !versionAtLeast(version, '0.4.0')) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `CHECK needs cniVersion 0.4.0 or later, config has ${version}`);
  }
  if ((command === 'GC' || command === 'STATUS') && !versionAtLeast(version, '1.1.0')) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `${command} needs cniVersion 1.1.0 or later, config has ${version}`,
    );
  }
  if (command === 'GC') {
    const valid = parseAttachments(conf);
    // Without the list we cannot tell stale from live: refuse rather than release everything.
    if (valid === undefined) throw configError('GC needs cni.dev/valid-attachments');
    out.validAttachments = valid;
  }
  return out;
}

/** Decode and validate everything but VERSION (which needs no environment but CNI_COMMAND). */
export function parseInvocation(command: CniCommand, env: Env, stdin: string): Invocation {
  const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  let containerId = '';
  let ifname = '';
  let netns = '';
  const bad: string[] = [];
  if (perContainer) {
    containerId = env['CNI_CONTAINERID'] ?? '';
    ifname = env['CNI_IFNAME'] ?? '';
    netns = env['CNI_NETNS'] ?? '';
    if (!CONTAINER_ID_RE.test(containerId))
      bad.push('CNI_CONTAINERID (want a letter or digit, then letters, digits, "_", "." or "-")');
    if (!IFNAME_RE.test(ifname)) bad.push('CNI_IFNAME (want 1-15 letters, digits, "_", "." or "-")');
    // DEL may come after the namespace is gone: then CNI_NETNS may be empty.
    if (command !== 'DEL' && netns === '') bad.push('CNI_NETNS (not set)');
    if (netns !== '' && !netns.startsWith('/')) bad.push('CNI_NETNS (must be an absolute path)');
  }
  const args = parseCniArgs(env['CNI_ARGS']);
  if (bad.length > 0) throw new CniError(CNI_ERR.INVALID_ENV, `invalid environment: ${bad.join('; ')}`);
  const conf = parseNetConf(decodeConfig(stdin), command);
  const inv: Invocation = { command, containerId, netns, ifname, args, conf };
  const podName = podDnsName(args);
  if (podName !== undefined) inv.containerName = podName;
  // Kubernetes pods are selected by namespace and name (k8s.namespace, k8s.pod).
  const podNamespace = args.get('K8S_POD_NAMESPACE');
  const rawPodName = args.get('K8S_POD_NAME');
  const k8s: Record<string, string> = {};
  if (podNamespace !== undefined && podNamespace !== '' && labelValueProblem(podNamespace) === undefined)
    k8s['k8s.namespace'] = podNamespace;
  if (rawPodName !== undefined && rawPodName !== '' && labelValueProblem(rawPodName) === undefined)
    k8s['k8s.pod'] = rawPodName;
  if (Object.keys(k8s).length > 0) inv.conf.labels = { ...k8s, ...inv.conf.labels };
  return inv;
}

/**
 * The DNS name of a Kubernetes pod (containerd's CRI plugin sends K8S_POD_NAME and
 * K8S_POD_NAMESPACE): "POD.NAMESPACE", so pods named alike in two namespaces do not
 * share a name; just "POD" without a namespace. undefined: not a pod.
 */
export function podDnsName(args: Map<string, string>): string | undefined {
  const pod = args.get('K8S_POD_NAME');
  if (pod === undefined || pod === '') return undefined;
  const ns = args.get('K8S_POD_NAMESPACE');
  return ns === undefined || ns === '' ? pod : `${pod}.${ns}`;
}

/** The daemon endpoint id of an attachment: "cni:<network name>:<container id>:<ifname>". */
export function endpointId(networkName: string, containerId: string, ifname: string): string {
  return `cni:${networkName}:${containerId}:${ifname}`;
}

/** The attachment an endpoint id stands for, if it is one of this CNI network's. */
export function parseEndpointId(id: string, networkName: string): { containerId: string; ifname: string } | undefined {
  const prefix = `cni:${networkName}:`;
  if (!id.startsWith(prefix)) return undefined;
  const rest = id.slice(prefix.length);
  const colon = rest.lastIndexOf(':');
  if (colon <= 0) return undefined;
  return { containerId: rest.slice(0, colon), ifname: rest.slice(colon + 1) };
}
