/**
 * The background launch hands the validated DaemonConfig to the foreground child over an
 * inherited pipe (fd 3), as JSON: nothing is turned back into flags to be parsed again,
 * and the secrets in it (the network password, etcd's password) never touch argv or the
 * environment of the child.
 */
import type { DaemonConfig } from '../config';
import { UsageError } from './output';
import { readInheritedFd } from './secrets';

/** The fd the child reads its config from. */
export const CONFIG_FD = 3;

/** The child's whole command line: no part of the config is in it. */
export function childLaunchArgs(): string[] {
  return ['launch', '--foreground', '--config-fd', String(CONFIG_FD)];
}

export function encodeConfig(config: DaemonConfig): Buffer {
  const { password, ...rest } = config;
  return Buffer.from(JSON.stringify({ ...rest, ...(password ? { password: password.toString('base64') } : {}) }));
}

type FieldKind = 'string' | 'number' | 'boolean' | 'strings' | 'object' | 'buffer';

/** Every field of DaemonConfig and what it holds; `?` marks those that may be absent. */
const FIELDS: Record<keyof DaemonConfig, FieldKind | `${FieldKind}?`> = {
  stateDir: 'string',
  name: 'string?',
  nickname: 'string',
  port: 'number',
  bindAddress: 'string',
  ipallocRange: 'string',
  datapath: 'string',
  peers: 'strings',
  httpAddr: 'string',
  mtu: 'number',
  logLevel: 'string',
  logMaxSize: 'number',
  passwordFile: 'string?',
  password: 'buffer?',
  trustedSubnets: 'strings',
  etcd: 'object?',
  advertiseAddress: 'string?',
  ipamLeaseTtl: 'number',
  ipamReclaimGrace: 'number',
  ipallocBlock: 'number?',
  addressRetention: 'number',
  dns: 'object',
  dockerPluginSocket: 'string',
  dockerDriverName: 'string?',
  dockerHost: 'string',
  dockerDnsRedirect: 'boolean',
  policyDryRun: 'boolean',
  flows: 'boolean',
  sleeveExpress: 'boolean',
  sleeveThread: 'boolean',
};

function holds(v: unknown, kind: FieldKind): boolean {
  if (kind === 'strings') return Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (kind === 'buffer') return Buffer.isBuffer(v);
  if (kind === 'object') return typeof v === 'object' && v !== null && !Array.isArray(v);
  return typeof v === kind;
}

/** The config the launching CLI wrote; anything else is refused naming the field. */
export function decodeConfig(data: Buffer): DaemonConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new UsageError(`--config-fd: not a configuration (${(err as Error).message})`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new UsageError('--config-fd: not a configuration object');
  const { password, ...rest } = parsed as Record<string, unknown>;
  if (password !== undefined && typeof password !== 'string')
    throw new UsageError('--config-fd: field password is not a string');
  return checkConfig(
    { ...rest, ...(password !== undefined ? { password: Buffer.from(password, 'base64') } : {}) },
    '--config-fd',
  );
}

/** `fields` as a DaemonConfig: every field of it there and of its kind, nothing else; `what` names the source in errors. */
export function checkConfig(fields: Record<string, unknown>, what: string): DaemonConfig {
  for (const key of Object.keys(fields)) if (!(key in FIELDS)) throw new UsageError(`${what}: unknown field ${key}`);
  for (const [key, spec] of Object.entries(FIELDS)) {
    const optional = spec.endsWith('?');
    const kind = spec.replace('?', '') as FieldKind;
    const v = fields[key];
    if (v === undefined ? !optional : !holds(v, kind))
      throw new UsageError(`${what}: field ${key} is missing or not a ${kind}`);
  }
  return fields as unknown as DaemonConfig;
}

/** In the child: read the config from the pipe the parent wrote and closed. */
export function readConfigFd(text: string): DaemonConfig {
  if (!/^\d+$/.test(text)) throw new UsageError('--config-fd: expected a file descriptor number');
  return decodeConfig(readInheritedFd(Number(text)));
}
