/**
 * The state dir: every file the daemon and the CLI keep there, named once. Only
 * node:path and node:fs, so the CNI plugin (which starts on every pod) can use it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** File names inside the state dir. Changing one breaks every existing install. */
export const STATE_FILE_NAMES = {
  /** The daemon's HTTP API (unix socket). */
  socket: 'weavets.sock',
  pid: 'weavets.pid',
  log: 'weavets.log',
  /** The persisted peer name (text, one line). */
  peerName: 'peer-name',
  /** Links this daemon created (src/endpoint/ledger.ts), for reset and restarts. */
  links: 'links.json',
  /** Attached endpoints and exposed networks (src/endpoint/registry.ts). */
  endpoints: 'endpoints.json',
  /** Docker networks, address handles and endpoints (src/docker/plugin.ts). */
  docker: 'docker.json',
  /** DNS records added by hand (src/dns/service.ts). */
  dns: 'dns.json',
  /** The kernel fast path state a stop without reset leaves (src/datapath/fastdp). */
  fastdpKept: 'fastdp-kept.json',
  /** The embedded single-host store (src/store/file.ts). */
  fileStore: 'store.json',
  /** The mesh store (src/store/mesh.ts). */
  meshStore: 'mesh-store.json',
} as const;

export type StateFileName = keyof typeof STATE_FILE_NAMES;

/** Mode of the state dir: root only (whoever can write it can plant a socket). */
export const STATE_DIR_MODE = 0o700;

export class StateDir {
  readonly socket: string;
  readonly pid: string;
  readonly log: string;
  readonly peerName: string;
  readonly links: string;
  readonly endpoints: string;
  readonly docker: string;
  readonly dns: string;
  readonly fastdpKept: string;
  readonly fileStore: string;
  readonly meshStore: string;

  constructor(readonly root: string) {
    const at = (name: StateFileName): string => path.join(root, STATE_FILE_NAMES[name]);
    this.socket = at('socket');
    this.pid = at('pid');
    this.log = at('log');
    this.peerName = at('peerName');
    this.links = at('links');
    this.endpoints = at('endpoints');
    this.docker = at('docker');
    this.dns = at('dns');
    this.fastdpKept = at('fastdpKept');
    this.fileStore = at('fileStore');
    this.meshStore = at('meshStore');
  }

  /** Create the directory (mode 0700) if it is missing. */
  ensure(): void {
    fs.mkdirSync(this.root, { recursive: true, mode: STATE_DIR_MODE });
  }
}
