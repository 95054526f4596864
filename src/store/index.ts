/** Open the configured store: etcd when endpoints are given, else the mesh store (or, without `mesh`, the single-host file store). */
import * as fs from 'node:fs';
import type { Logger } from '../log';
import { WeavetsError } from '../errors';
// ./etcd loads etcd3 and gRPC (~20 MB resident): only when an etcd store is configured.
import type { EtcdStore } from './etcd';
import { FileStore } from './file';
import { MeshStore } from './mesh';
import type { Store } from './types';
import { StateDir } from '../state/state-dir';

export interface StoreConfig {
  stateDir: string;
  etcd?: {
    endpoints: string[];
    caFile?: string;
    certFile?: string;
    keyFile?: string;
    username?: string;
    /** File holding the password (first line); read here, never logged. */
    passwordFile?: string;
    /** From WEAVETS_ETCD_PASSWORD, read by the CLI; never logged, never in argv. */
    password?: string;
  };
}

export function fileStorePath(stateDir: string): string {
  return new StateDir(stateDir).fileStore;
}

export function meshStorePath(stateDir: string): string {
  return new StateDir(stateDir).meshStore;
}

/** Without etcd: this host's peer name and how long an unreachable host's entries are kept. */
export interface MeshStoreConfig {
  self: string;
  graceMs: number;
}

export async function openStore(config: StoreConfig, log: Logger, mesh?: MeshStoreConfig): Promise<Store> {
  const e = config.etcd;
  if (!e && mesh) {
    return MeshStore.open({
      file: meshStorePath(config.stateDir),
      self: mesh.self,
      graceMs: mesh.graceMs,
      // A host upgraded from the single-host store keeps its blocks, addresses and records.
      importFrom: fileStorePath(config.stateDir),
      log: log.child('store'),
    });
  }
  if (!e) return FileStore.open({ file: fileStorePath(config.stateDir), log: log.child('store') });
  let password = e.password;
  if (e.passwordFile !== undefined) {
    try {
      password = fs.readFileSync(e.passwordFile, 'utf8').split('\n')[0]!;
    } catch (err) {
      throw new WeavetsError(
        'EWEAVETS_BAD_REQUEST',
        `--etcd-password-file ${e.passwordFile}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  if (password !== undefined && e.username === undefined) {
    throw new WeavetsError('EWEAVETS_BAD_REQUEST', 'an etcd password was given without --etcd-user');
  }
  const { EtcdStore: Etcd } = await import('./etcd');
  try {
    const opts: ConstructorParameters<typeof EtcdStore>[0] = { endpoints: e.endpoints, log: log.child('etcd') };
    if (e.caFile !== undefined) opts.caFile = e.caFile;
    if (e.certFile !== undefined) opts.certFile = e.certFile;
    if (e.keyFile !== undefined) opts.keyFile = e.keyFile;
    if (e.username !== undefined) opts.username = e.username;
    if (password !== undefined) opts.password = password;
    return new Etcd(opts);
  } catch (err) {
    throw new WeavetsError('EWEAVETS_BAD_REQUEST', `etcd: ${(err as Error).message}`, { cause: err });
  }
}
