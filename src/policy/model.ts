/**
 * The policy model: what a policy document says, the strict parser that turns JSON or
 * YAML text into validated policies, and the error that names the field at fault.
 *
 * A document is one policy, a list of policies (JSON array), or several YAML documents.
 * Unknown fields are refused (a typo such as "ingres" must not silently allow
 * everything), and every error carries the path of the field and the reason.
 */
import type * as Yaml from 'yaml';
import { WeavetsError } from '../errors';
import { formatCidr, parseCidr } from '../net/ipv4';
import {
  labelKeyProblem,
  labelValueProblem,
  type Labels,
  type Selector,
  type SelectorExpression,
  type SelectorOperator,
} from './labels';

export type PolicyProtocol = 'tcp' | 'udp' | 'sctp' | 'icmp';
export type PolicyDirection = 'ingress' | 'egress';
export type PolicyMode = 'enforce' | 'audit';

export interface PolicyPort {
  protocol: PolicyProtocol;
  /** Absent: every port of the protocol (always absent for icmp). */
  port?: number;
  /** Last port of a range starting at `port`. */
  endPort?: number;
}

export type PolicyPeer = { selector: Selector } | { cidr: string; except: string[] };

export interface PolicyRule {
  /** The other end: `from` for ingress, `to` for egress. undefined: any peer. */
  peers: PolicyPeer[] | undefined;
  /** undefined: every protocol and port. */
  ports: PolicyPort[] | undefined;
}

export interface Policy {
  name: string;
  network: string;
  selector: Selector;
  mode: PolicyMode;
  /** The directions in which selected endpoints are isolated. */
  types: PolicyDirection[];
  ingress: PolicyRule[];
  egress: PolicyRule[];
  description?: string;
}

/** A policy as stored and shown: the validated document (JSON) and its version. */
export interface StoredPolicy {
  name: string;
  network: string;
  /** 1 on first apply, +1 on every apply that changes it. */
  version: number;
  /** ISO time of the last change. */
  updated: string;
  document: Record<string, unknown>;
}

export class PolicyError extends WeavetsError {
  constructor(
    /** "ingress[0].ports[1].port"; "" for the document itself. */
    readonly path: string,
    readonly reason: string,
    readonly source?: string,
    options?: { cause?: unknown },
  ) {
    super(
      'EWEAVETS_POLICY_INVALID',
      `${source ? source + ': ' : ''}${path === '' ? '' : path + ': '}${reason}`,
      options,
    );
  }
}

export const POLICY_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$/;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function join(path: string, field: string | number): string {
  return typeof field === 'number' ? `${path}[${field}]` : path === '' ? field : `${path}.${field}`;
}

function onlyFields(obj: Json, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new PolicyError(join(path, k), `unknown field (allowed: ${allowed.join(', ')})`);
  }
}

function objectAt(v: unknown, path: string): Json {
  if (!isObject(v)) throw new PolicyError(path, 'must be an object');
  return v;
}

function arrayAt(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new PolicyError(path, 'must be a list');
  return v;
}

function stringAt(v: unknown, path: string): string {
  if (typeof v !== 'string') throw new PolicyError(path, 'must be a string');
  return v;
}

/**
 * A selector: either a plain label map ({"app": "db"}) or the structured form with
 * `matchLabels` and/or `matchExpressions` (operators In, NotIn, Exists, DoesNotExist).
 */
export function parseSelector(v: unknown, path: string): Selector {
  const obj = objectAt(v, path);
  const structured = 'matchLabels' in obj || 'matchExpressions' in obj;
  if (!structured) return { matchLabels: parseLabelMap(obj, path), matchExpressions: [] };
  onlyFields(obj, path, ['matchLabels', 'matchExpressions']);
  const matchLabels =
    obj['matchLabels'] === undefined
      ? {}
      : parseLabelMap(objectAt(obj['matchLabels'], join(path, 'matchLabels')), join(path, 'matchLabels'));
  const matchExpressions: SelectorExpression[] = [];
  if (obj['matchExpressions'] !== undefined) {
    const list = arrayAt(obj['matchExpressions'], join(path, 'matchExpressions'));
    list.forEach((item, i) => matchExpressions.push(parseExpression(item, join(join(path, 'matchExpressions'), i))));
  }
  return { matchLabels, matchExpressions };
}

function parseLabelMap(obj: Json, path: string): Labels {
  const labels: Labels = {};
  for (const [k, v] of Object.entries(obj)) {
    const p = join(path, k);
    const bad = labelKeyProblem(k);
    if (bad) throw new PolicyError(p, `bad selector: ${bad}`);
    if (typeof v !== 'string') throw new PolicyError(p, 'bad selector: a label value must be a string');
    const badValue = labelValueProblem(v);
    if (badValue) throw new PolicyError(p, `bad selector: ${badValue}`);
    labels[k] = v;
  }
  return labels;
}

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

function parseExpression(v: unknown, path: string): SelectorExpression {
  const obj = objectAt(v, path);
  onlyFields(obj, path, ['key', 'operator', 'values']);
  const key = stringAt(obj['key'], join(path, 'key'));
  const badKey = labelKeyProblem(key);
  if (badKey) throw new PolicyError(join(path, 'key'), `bad selector: ${badKey}`);
  const op = stringAt(obj['operator'], join(path, 'operator'));
  if (!OPERATORS.includes(op as SelectorOperator))
    throw new PolicyError(
      join(path, 'operator'),
      `bad selector: operator ${JSON.stringify(op)} is not one of ${OPERATORS.join(', ')}`,
    );
  const operator = op as SelectorOperator;
  if (operator === 'In' || operator === 'NotIn') {
    const values = arrayAt(obj['values'], join(path, 'values')).map((x, i) => {
      const s = stringAt(x, join(join(path, 'values'), i));
      const bad = labelValueProblem(s);
      if (bad) throw new PolicyError(join(join(path, 'values'), i), `bad selector: ${bad}`);
      return s;
    });
    if (values.length === 0)
      throw new PolicyError(join(path, 'values'), `bad selector: ${operator} needs at least one value`);
    return { key, operator, values };
  }
  if (obj['values'] !== undefined)
    throw new PolicyError(join(path, 'values'), `bad selector: ${operator} takes no values`);
  return { key, operator };
}

const PROTOCOLS: readonly PolicyProtocol[] = ['tcp', 'udp', 'sctp', 'icmp'];

function portNumber(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new PolicyError(path, 'must be a whole number');
  if (v < 1 || v > 65535) throw new PolicyError(path, `port ${v} is out of range (1-65535)`);
  return v;
}

function parsePort(v: unknown, path: string): PolicyPort {
  const obj = objectAt(v, path);
  onlyFields(obj, path, ['protocol', 'port', 'endPort']);
  const proto = obj['protocol'] === undefined ? 'tcp' : stringAt(obj['protocol'], join(path, 'protocol')).toLowerCase();
  if (!PROTOCOLS.includes(proto as PolicyProtocol))
    throw new PolicyError(
      join(path, 'protocol'),
      `${JSON.stringify(obj['protocol'])} is not one of ${PROTOCOLS.join(', ')}`,
    );
  const protocol = proto as PolicyProtocol;
  const out: PolicyPort = { protocol };
  if (protocol === 'icmp') {
    if (obj['port'] !== undefined || obj['endPort'] !== undefined)
      throw new PolicyError(join(path, 'port'), 'icmp has no ports');
    return out;
  }
  if (obj['port'] !== undefined) out.port = portNumber(obj['port'], join(path, 'port'));
  if (obj['endPort'] !== undefined) {
    if (out.port === undefined) throw new PolicyError(join(path, 'endPort'), 'endPort needs port');
    const end = portNumber(obj['endPort'], join(path, 'endPort'));
    if (end < out.port) throw new PolicyError(join(path, 'endPort'), `endPort ${end} is below port ${out.port}`);
    if (end > out.port) out.endPort = end;
  }
  return out;
}

function parseCidrText(v: unknown, path: string): string {
  const s = stringAt(v, path);
  try {
    return formatCidr(parseCidr(s, true));
  } catch (err) {
    throw new PolicyError(path, `bad CIDR: ${(err as Error).message}`, undefined, { cause: err });
  }
}

function parsePeer(v: unknown, path: string): PolicyPeer {
  const obj = objectAt(v, path);
  if ('selector' in obj) {
    onlyFields(obj, path, ['selector']);
    return { selector: parseSelector(obj['selector'], join(path, 'selector')) };
  }
  if ('cidr' in obj) {
    onlyFields(obj, path, ['cidr', 'except']);
    const cidr = parseCidrText(obj['cidr'], join(path, 'cidr'));
    const except =
      obj['except'] === undefined
        ? []
        : arrayAt(obj['except'], join(path, 'except')).map((x, i) => parseCidrText(x, join(join(path, 'except'), i)));
    return { cidr, except };
  }
  throw new PolicyError(path, 'a peer needs "selector" or "cidr"');
}

function parseRule(v: unknown, path: string, direction: PolicyDirection): PolicyRule {
  const obj = objectAt(v, path);
  const peerField = direction === 'ingress' ? 'from' : 'to';
  onlyFields(obj, path, [peerField, 'ports']);
  const peers =
    obj[peerField] === undefined
      ? undefined
      : arrayAt(obj[peerField], join(path, peerField)).map((p, i) => parsePeer(p, join(join(path, peerField), i)));
  const ports =
    obj['ports'] === undefined
      ? undefined
      : arrayAt(obj['ports'], join(path, 'ports')).map((p, i) => parsePort(p, join(join(path, 'ports'), i)));
  // As Kubernetes: an empty list is the same as none, "every peer" / "every port".
  return { peers: peers?.length === 0 ? undefined : peers, ports: ports?.length === 0 ? undefined : ports };
}

export interface ValidateOptions {
  /** Networks a policy may name; undefined: any valid name (policy test). */
  networks?: readonly string[];
  /** The network when the document names none. */
  defaultNetwork: string;
}

const TOP_FIELDS = ['name', 'network', 'selector', 'mode', 'policyTypes', 'ingress', 'egress', 'description'] as const;

/** Validate one policy document; throws PolicyError naming the field. */
export function validatePolicy(doc: unknown, opts: ValidateOptions): Policy {
  const obj = objectAt(doc, '');
  onlyFields(obj, '', TOP_FIELDS);
  const name = stringAt(obj['name'], 'name');
  if (!POLICY_NAME_RE.test(name))
    throw new PolicyError(
      'name',
      `${JSON.stringify(name)}: want 1-48 lowercase letters, digits or '-', starting and ending with a letter or digit`,
    );
  const network = obj['network'] === undefined ? opts.defaultNetwork : stringAt(obj['network'], 'network');
  if (opts.networks !== undefined && !opts.networks.includes(network)) {
    throw new PolicyError(
      'network',
      `network ${JSON.stringify(network)} does not exist (known: ${opts.networks.join(', ')})`,
    );
  }
  if (obj['selector'] === undefined)
    throw new PolicyError('selector', 'is required ({} selects every endpoint of the network)');
  const selector = parseSelector(obj['selector'], 'selector');
  const modeText = obj['mode'] === undefined ? 'enforce' : stringAt(obj['mode'], 'mode');
  if (modeText !== 'enforce' && modeText !== 'audit')
    throw new PolicyError('mode', `${JSON.stringify(modeText)} is not "enforce" or "audit"`);
  const ingress =
    obj['ingress'] === undefined
      ? []
      : arrayAt(obj['ingress'], 'ingress').map((r, i) => parseRule(r, `ingress[${i}]`, 'ingress'));
  const egress =
    obj['egress'] === undefined
      ? []
      : arrayAt(obj['egress'], 'egress').map((r, i) => parseRule(r, `egress[${i}]`, 'egress'));
  // As Kubernetes: ingress isolation always, egress isolation when the policy has `egress`.
  let types: PolicyDirection[] = obj['egress'] === undefined ? ['ingress'] : ['ingress', 'egress'];
  if (obj['policyTypes'] !== undefined) {
    const list = arrayAt(obj['policyTypes'], 'policyTypes').map((t, i) => {
      const s = stringAt(t, `policyTypes[${i}]`).toLowerCase();
      if (s !== 'ingress' && s !== 'egress')
        throw new PolicyError(`policyTypes[${i}]`, `${JSON.stringify(t)} is not "ingress" or "egress"`);
      return s;
    });
    if (list.length === 0) throw new PolicyError('policyTypes', 'must name ingress, egress or both');
    types = [...new Set(list)];
  }
  const policy: Policy = { name, network, selector, mode: modeText, types, ingress, egress };
  if (obj['description'] !== undefined) policy.description = stringAt(obj['description'], 'description');
  return policy;
}

/**
 * Parse a policy file's text: JSON (an object or an array of objects) or YAML (one or
 * more documents). Returns the raw documents; validate each with validatePolicy.
 */
export function parsePolicyDocuments(text: string, source: string): unknown[] {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new PolicyError('', `not valid JSON: ${(err as Error).message}`, source, { cause: err });
    }
    return Array.isArray(value) ? value : [value];
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- only the CLI reads YAML; the daemon never loads its 72 modules
  const { parseAllDocuments } = require('yaml') as typeof Yaml;
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  for (const d of list) {
    if (d.errors.length > 0) throw new PolicyError('', `not valid YAML: ${d.errors[0]!.message}`, source);
    const value: unknown = d.toJS();
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) out.push(...(value as unknown[]));
    else out.push(value);
  }
  if (out.length === 0) throw new PolicyError('', 'no policy in the file', source);
  return out;
}

/** Parse and validate every policy of a file; names must be unique within it. */
export function parsePolicies(
  text: string,
  source: string,
  opts: ValidateOptions,
): { policies: Policy[]; documents: Json[] } {
  const docs = parsePolicyDocuments(text, source);
  const policies: Policy[] = [];
  const documents: Json[] = [];
  docs.forEach((doc, i) => {
    try {
      const p = validatePolicy(doc, opts);
      if (policies.some((q) => q.name === p.name)) throw new PolicyError('name', `policy ${p.name} appears twice`);
      policies.push(p);
      documents.push(doc as Json);
    } catch (err) {
      if (err instanceof PolicyError) {
        const where = docs.length > 1 ? `${source} (policy ${i + 1})` : source;
        throw new PolicyError(err.path, err.reason, where, { cause: err });
      }
      throw err;
    }
  });
  return { policies, documents };
}
