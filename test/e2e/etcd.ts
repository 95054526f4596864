/**
 * A real etcd for tests: temporary data dir, random free ports on 127.0.0.1 (or fixed
 * ports on an address inside a lab namespace), stopped and removed on exit even when the
 * test fails. stop()/start() keep the data dir, to take etcd away and bring it back.
 * Optionally TLS for clients (server certificate, and client certificates required).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Host, Lab } from '../net/harness';
import { freePort } from '../free-port';

export { freePort };

export interface EtcdOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** Run etcd through this prefix, e.g. ['nsenter', '--net=/run/netns/x', '--']. */
  prefix?: string[];
  /** Health check; default: fetch from this process. */
  healthy?: (url: string) => Promise<boolean>;
  /**
   * Serve clients over TLS (https:// URL) with this server certificate and key; with
   * clientCaFile, require client certificates signed by that CA (--client-cert-auth).
   */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
  /** More etcd flags, e.g. ['--auth-token-ttl', '2']. */
  extraArgs?: string[];
}

export interface EtcdServer {
  url: string;
  dataDir: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
}

/** What a suite that starts etcd needs (test/require-tools.ts). */
export const ETCD_TOOLS = { files: ['/usr/bin/etcd'] };

export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  hookExit();
  const host = opts.host ?? '127.0.0.1';
  const clientPort = opts.clientPort ?? (await freePort());
  const peerPort = opts.peerPort ?? (await freePort());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-etcd-'));
  dirs.add(dataDir);
  const url = `${opts.tls ? 'https' : 'http'}://${host}:${clientPort}`;
  const healthy =
    opts.healthy ??
    (async (u: string) => {
      const r = await fetch(`${u}/health`, { signal: AbortSignal.timeout(1000) });
      return r.ok && ((await r.json()) as { health?: string }).health === 'true';
    });
  let child: ChildProcess | undefined;
  let log = '';

  const start = async (): Promise<void> => {
    const argv = [
      ...(opts.prefix ?? []),
      'etcd',
      '--name',
      'wt',
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      url,
      '--advertise-client-urls',
      url,
      '--listen-peer-urls',
      `http://${host}:${peerPort}`,
      '--initial-advertise-peer-urls',
      `http://${host}:${peerPort}`,
      '--initial-cluster',
      `wt=http://${host}:${peerPort}`,
      '--logger=zap',
      '--log-level=error',
      ...(opts.tls ? ['--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile] : []),
      ...(opts.tls?.clientCaFile !== undefined
        ? ['--trusted-ca-file', opts.tls.clientCaFile, '--client-cert-auth']
        : []),
      ...(opts.extraArgs ?? []),
    ];
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    live.add(c);
    c.stderr.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-4000)));
    c.on('exit', () => live.delete(c));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`etcd exited with ${c.exitCode}: ${log}`);
      try {
        if (await healthy(url)) return;
      } catch {
        // not yet
      }
      if (Date.now() > deadline) throw new Error(`etcd at ${url} not healthy within 15 s: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  await start();
  return {
    url,
    dataDir,
    start,
    stop,
    destroy: async () => {
      await stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      dirs.delete(dataDir);
    },
  };
}

/**
 * etcd inside a lab host's namespace, on its underlay address and the standard ports, so
 * every host of the lab reaches it at `url`. Health is probed from inside that namespace.
 */
export function startEtcdIn(lab: Lab, host: Host): Promise<EtcdServer> {
  return startEtcd({
    host: host.ip,
    clientPort: 2379,
    peerPort: 2380,
    prefix: ['nsenter', `--net=${host.netns}`, '--'],
    healthy: async (u) => {
      const probe = `fetch('${u}/health').then(r=>r.json()).then(j=>process.exit(j.health==='true'?0:1),()=>process.exit(1))`;
      return (await lab.exec(host, [process.execPath, '-e', probe], { timeoutMs: 5000 })).code === 0;
    },
  });
}
