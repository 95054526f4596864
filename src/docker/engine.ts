/**
 * What the remote protocol does not carry, asked of Docker's API (dockerode): a network's
 * name, the default `weavets` network, and container names for DNS (from Docker's
 * `network connect` / `disconnect` events, with the container's name, hostname and
 * aliases on that network). Everything here is best effort: Docker may not be running
 * yet, and the plugin works without it (given -o weavets.segment).
 */
import * as fs from 'node:fs';
// Types only: dockerode (and its dependencies, ~20 MB resident) loads on the first call
// to a Docker that is there (see DockerEngine.docker).
import type Docker from 'dockerode';
import type { Logger } from '../log';
import { labelKeyProblem, labelValueProblem } from '../policy/labels';

export interface NameRecord {
  name: string;
  ip: string;
}

/** Where container names go (the embedded DNS): owner "docker:<container>:<network>"; [] removes. */
export type NamePublisher = (owner: string, records: NameRecord[]) => void;

export interface DockerEngineOptions {
  /** "unix:///var/run/docker.sock" or "tcp://host:port". */
  host: string;
  /** Our driver name (the plugin socket's base name). */
  driver: string;
  /** Docker network to create at start and after each activation; "" for none. */
  defaultNetwork: string;
  /** The weavets range, given as the default network's subnet (see DockerPlugin.requestPool). */
  subnet: string;
  names?: NamePublisher;
  /**
   * Where container labels go (policy): the Docker endpoint id of the container on one of
   * our networks and its labels (those that are valid label syntax).
   */
  labels?: (dockerEndpointId: string, labels: Record<string, string>, containerName: string | undefined) => void;
  log: Logger;
}

export function dockerodeOptions(host: string): Docker.DockerOptions {
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  const m = /^tcp:\/\/([^:/]+):(\d+)$/.exec(host);
  if (m) return { host: m[1]!, port: Number(m[2]), protocol: 'http' };
  throw new Error(`--docker-host ${host}: want unix:///path or tcp://host:port`);
}

interface ConnectEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

export class DockerEngine {
  private client: Docker | undefined;
  private events: (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;

  private readonly dockerOptions: Docker.DockerOptions;

  constructor(private readonly opts: DockerEngineOptions) {
    this.dockerOptions = { ...dockerodeOptions(opts.host), timeout: 10_000 };
  }

  /**
   * The API client, made on first use. On a host without Docker (no socket) this throws
   * as a call to it would, without loading dockerode: every caller treats a failure as
   * "Docker is not there (yet)" and tries again later.
   */
  private get docker(): Docker {
    if (this.client) return this.client;
    const socket = this.dockerOptions.socketPath;
    if (typeof socket === 'string' && !fs.existsSync(socket)) throw new Error(`no Docker socket at ${socket}`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only once Docker is there (~20 MB resident)
    const Ctor = require('dockerode') as typeof Docker;
    this.client = new Ctor(this.dockerOptions);
    return this.client;
  }

  async networkName(id: string): Promise<string | undefined> {
    try {
      const info = (await this.docker.getNetwork(id).inspect()) as { Name?: string };
      return info.Name;
    } catch (err) {
      this.opts.log.warn('cannot inspect Docker network', { id: id.slice(0, 12), error: (err as Error).message });
      return undefined;
    }
  }

  /**
   * Create the default network soon (debounced), unless Docker has it. Never from inside
   * a plugin call: Docker activating the plugin while it creates a network of ours would
   * wait for itself, so this runs a moment after the activation has finished.
   */
  scheduleDefaultNetwork(delayMs = 2000): void {
    if (this.opts.defaultNetwork === '' || this.closed || this.pending) return;
    this.pending = setTimeout(() => {
      void this.ensureDefaultNetwork().finally(() => (this.pending = undefined));
    }, delayMs);
    this.pending.unref();
  }

  /** Create the default network unless Docker has it; quiet when Docker is not there. */
  async ensureDefaultNetwork(): Promise<void> {
    const name = this.opts.defaultNetwork;
    if (name === '' || this.closed) return;
    try {
      const have = (await this.docker.listNetworks({ filters: { name: [name] } })) as { Name: string }[];
      if (have.some((n) => n.Name === name)) return;
      await this.docker.createNetwork({
        Name: name,
        Driver: this.opts.driver,
        IPAM: { Driver: this.opts.driver, Config: [{ Subnet: this.opts.subnet }] },
        CheckDuplicate: true,
      });
      this.opts.log.info('created the default Docker network', { name, driver: this.opts.driver });
    } catch (err) {
      this.opts.log.debug('default Docker network not created (yet)', { error: (err as Error).message });
    }
  }

  /** Follow Docker's events for DNS names and labels; reconnects every few seconds while Docker is away. */
  watchNames(): void {
    if ((!this.opts.names && !this.opts.labels) || this.closed) return;
    void this.follow();
  }

  private async follow(): Promise<void> {
    try {
      const stream = await this.docker.getEvents({ filters: { type: ['network'], event: ['connect', 'disconnect'] } });
      this.events = stream;
      let buf = '';
      stream.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() === '') continue;
          try {
            void this.onEvent(JSON.parse(line) as ConnectEvent);
          } catch {
            /* not an event */
          }
        }
      });
      stream.on('end', () => this.again());
      stream.on('error', () => this.again());
      // Containers connected before we watched (a weavets restart): publish them now.
      await this.publishAll();
    } catch {
      this.again();
    }
  }

  private again(): void {
    if (this.closed || this.retry) return;
    this.events = undefined;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.follow();
    }, 3000);
    this.retry.unref();
  }

  private async publishAll(): Promise<void> {
    const nets = (await this.docker.listNetworks({ filters: { driver: [this.opts.driver] } })) as { Name: string }[];
    for (const n of nets) {
      const info = (await this.docker.getNetwork(n.Name).inspect()) as { Containers?: Record<string, unknown> };
      for (const cid of Object.keys(info.Containers ?? {})) await this.publish(cid, n.Name);
    }
  }

  private async onEvent(ev: ConnectEvent): Promise<void> {
    const attrs = ev.Actor?.Attributes ?? {};
    if (attrs['type'] !== this.opts.driver || !attrs['container'] || !attrs['name']) return;
    if (ev.Action === 'connect') await this.publish(attrs['container'], attrs['name']);
    else this.opts.names?.(`docker:${attrs['container']}:${attrs['name']}`, []);
  }

  private async publish(containerId: string, network: string): Promise<void> {
    try {
      const c = (await this.docker.getContainer(containerId).inspect()) as {
        Name?: string;
        Config?: { Hostname?: string; Labels?: Record<string, string> | null };
        NetworkSettings?: {
          Networks?: Record<string, { IPAddress?: string; Aliases?: string[] | null; EndpointID?: string }>;
        };
      };
      const n = c.NetworkSettings?.Networks?.[network];
      if (this.opts.labels && n?.EndpointID) {
        const labels: Record<string, string> = {};
        for (const [k, v] of Object.entries(c.Config?.Labels ?? {})) {
          // Docker allows any string; policies select by label syntax only (docs/POLICY.md).
          if (typeof v === 'string' && labelKeyProblem(k) === undefined && labelValueProblem(v) === undefined)
            labels[k] = v;
        }
        this.opts.labels(n.EndpointID, labels, c.Name?.replace(/^\//, ''));
      }
      const ip = n?.IPAddress;
      if (!ip) return;
      const names = new Set<string>();
      if (c.Name) names.add(c.Name.replace(/^\//, ''));
      if (c.Config?.Hostname) names.add(c.Config.Hostname);
      for (const a of n?.Aliases ?? []) names.add(a);
      this.opts.names?.(
        `docker:${containerId}:${network}`,
        [...names].map((name) => ({ name: name.toLowerCase(), ip })),
      );
    } catch (err) {
      this.opts.log.debug('cannot inspect container for DNS', {
        container: containerId.slice(0, 12),
        error: (err as Error).message,
      });
    }
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.pending) clearTimeout(this.pending);
    const s = this.events;
    s?.destroy?.();
  }
}
