/**
 * Endpoints: container interfaces plugged into overlay networks on this host (`attach`),
 * and the host's own address on a network (`expose`). Owns address allocation for them
 * and persists both in <stateDir>/endpoints.json so a restarted daemon keeps every
 * container's address.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import type { Netlink } from '../netlink';
import { Netlink as NetlinkSocket } from '../netlink';
import type { Logger } from '../log';
import type { AttachRequest, EndpointStatus, ExposeResult } from '../api/types';
import { WeavetsError } from '../errors';
import { DEFAULT_NETWORK } from '../config';
import { formatIpv4, parseCidr, type Cidr } from '../ipam/cidr';
import type { HostBlockAllocator } from '../ipam/host-block';
import type { NetworkSet } from './networks';
import { validateNetworkName } from './networks';
import { writeFileAtomic, type LinkLedger } from './ledger';

const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,253}$/;

interface Persisted {
  endpoints: EndpointStatus[];
  exposed: ExposeResult[];
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

export class EndpointRegistry {
  private readonly endpoints = new Map<string, EndpointStatus>();
  private readonly exposed = new Map<string, ExposeResult>();
  private readonly file: string;
  /** Serialises attach/detach so concurrent requests cannot interleave link operations. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    stateDir: string,
    private readonly netlink: Netlink,
    private readonly networks: NetworkSet,
    private readonly allocator: HostBlockAllocator,
    private readonly range: Cidr,
    private readonly ledger: LinkLedger,
    private readonly log: Logger,
  ) {
    this.file = path.join(stateDir, 'endpoints.json');
  }

  /** Reload endpoints of a previous run: keep those whose host veth still exists. */
  async restore(): Promise<void> {
    let data: Persisted;
    try {
      data = JSON.parse(await fs.readFile(this.file, 'utf8')) as Persisted;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.log.warn('ignoring unreadable endpoints file', { file: this.file, error: (err as Error).message });
      return;
    }
    for (const ep of data.endpoints ?? []) {
      if ((await this.netlink.getLink(ep.hostVeth)) === undefined) {
        this.log.info('endpoint gone while we were down; releasing its address', { id: ep.id, address: ep.address });
        continue;
      }
      await this.networks.ensure(ep.network);
      this.allocator.claim(ownerKey(ep.id), parseCidr(ep.address, false).address);
      this.endpoints.set(ep.id, ep);
    }
    for (const ex of data.exposed ?? []) {
      await this.networks.ensure(ex.network);
      this.allocator.claim(exposeKey(ex.network), parseCidr(ex.address, false).address);
      this.exposed.set(ex.network, ex);
    }
    await this.save();
  }

  list(): EndpointStatus[] {
    return [...this.endpoints.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  exposures(): ExposeResult[] {
    return [...this.exposed.values()];
  }

  attach(req: AttachRequest): Promise<EndpointStatus> {
    return this.serialise(() => this.doAttach(req));
  }

  detach(id: string): Promise<void> {
    return this.serialise(() => this.doDetach(id));
  }

  expose(network: string | undefined, ip: string | undefined): Promise<ExposeResult> {
    return this.serialise(() => this.doExpose(network ?? DEFAULT_NETWORK, ip));
  }

  hide(network: string | undefined): Promise<ExposeResult | undefined> {
    return this.serialise(() => this.doHide(network ?? DEFAULT_NETWORK));
  }

  private serialise<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async doAttach(req: AttachRequest): Promise<EndpointStatus> {
    const ifname = req.ifname ?? 'eth0';
    const networkName = req.network ?? DEFAULT_NETWORK;
    if (!ID_RE.test(req.id)) throw new WeavetsError('EWEAVETS_BAD_REQUEST', `invalid endpoint id ${JSON.stringify(req.id)}`);
    if (!IFNAME_RE.test(ifname)) {
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', `invalid interface name ${JSON.stringify(ifname)}: 1-15 letters, digits, '.', '_' or '-'`);
    }
    const badNet = validateNetworkName(networkName);
    if (badNet) throw new WeavetsError('EWEAVETS_BAD_REQUEST', badNet);
    const existing = this.endpoints.get(req.id);
    if (existing) {
      if (existing.netns === req.netns && existing.network === networkName && existing.ifname === ifname) return existing;
      throw new WeavetsError('EWEAVETS_CONFLICT', `endpoint ${req.id} is already attached (${existing.address} in ${existing.netns}); detach it first`);
    }
    try {
      const st = await fs.stat(req.netns);
      if (!st.isFile() && !st.isDirectory()) throw new Error('not a namespace file');
    } catch {
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', `network namespace ${req.netns} does not exist`);
    }
    let requested: number | undefined;
    if (req.ip !== undefined) {
      let c;
      try {
        c = parseCidr(req.ip, false);
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--ip: ${(err as Error).message}`);
      }
      if (c.prefix !== this.range.prefix) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--ip ${req.ip}: the prefix must be /${this.range.prefix}, the network's subnet`);
      }
      requested = c.address;
    }
    const net = await this.networks.ensure(networkName);
    const owner = ownerKey(req.id);
    const ip = this.allocator.allocate(owner, requested);
    const address = `${formatIpv4(ip)}/${this.range.prefix}`;
    const tag = shortHash(`${req.id}\0${networkName}\0${ifname}`);
    const hostVeth = `vwt${tag}`;
    const tempPeer = `vwc${tag}`;
    let ns: NetlinkSocket | undefined;
    try {
      await this.ledger.record(hostVeth);
      await this.netlink.deleteLink(hostVeth, { ignoreMissing: true });
      await this.netlink.createVeth(hostVeth, tempPeer, { mtu: net.mtu, peerNetnsPath: req.netns });
      await this.netlink.setMaster(hostVeth, net.bridge);
      await this.netlink.setUp(hostVeth);
      ns = NetlinkSocket.openInNetns(req.netns);
      if ((await ns.getLink(ifname)) !== undefined) {
        throw new WeavetsError('EWEAVETS_CONFLICT', `an interface named ${ifname} already exists in ${req.netns}; choose another with --ifname`);
      }
      await ns.rename(tempPeer, ifname);
      await ns.addAddress(ifname, address, { ignoreExisting: true });
      await ns.setUp(ifname);
      await ns.setUp('lo');
      const link = await ns.getLink(ifname);
      const ep: EndpointStatus = {
        id: req.id,
        network: networkName,
        ifname,
        address,
        mac: link?.mac ?? '',
        netns: req.netns,
        hostVeth,
      };
      this.endpoints.set(req.id, ep);
      await this.save();
      this.log.info('attached endpoint', { id: req.id, network: networkName, address, netns: req.netns });
      return ep;
    } catch (err) {
      this.allocator.release(owner);
      await this.netlink.deleteLink(hostVeth, { ignoreMissing: true }).catch(() => undefined);
      await this.ledger.forget(hostVeth);
      if (err instanceof WeavetsError) throw err;
      throw new WeavetsError('EWEAVETS_INTERNAL', `attach ${req.id}: ${(err as Error).message}`);
    } finally {
      ns?.close();
    }
  }

  private async doDetach(id: string): Promise<void> {
    const ep = this.endpoints.get(id);
    if (!ep) throw new WeavetsError('EWEAVETS_NOT_FOUND', `no endpoint ${JSON.stringify(id)} is attached; see \`weavets ps\``);
    // Deleting the host end removes the pair, wherever the container end lives.
    await this.netlink.deleteLink(ep.hostVeth, { ignoreMissing: true });
    await this.ledger.forget(ep.hostVeth);
    this.allocator.release(ownerKey(id));
    this.endpoints.delete(id);
    await this.save();
    this.log.info('detached endpoint', { id, address: ep.address });
  }

  private async doExpose(network: string, ip: string | undefined): Promise<ExposeResult> {
    const have = this.exposed.get(network);
    if (have && ip === undefined) return have;
    if (have) throw new WeavetsError('EWEAVETS_CONFLICT', `network ${network} is already exposed at ${have.address}; hide it first`);
    let requested: number | undefined;
    if (ip !== undefined) {
      try {
        requested = parseCidr(ip.includes('/') ? ip : `${ip}/${this.range.prefix}`, false).address;
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--ip: ${(err as Error).message}`);
      }
    }
    const net = await this.networks.ensure(network);
    const ipNum = this.allocator.allocate(exposeKey(network), requested);
    const address = `${formatIpv4(ipNum)}/${this.range.prefix}`;
    try {
      await this.netlink.addAddress(net.bridge, address, { ignoreExisting: true });
    } catch (err) {
      this.allocator.release(exposeKey(network));
      throw new WeavetsError('EWEAVETS_INTERNAL', `expose ${network}: ${(err as Error).message}`);
    }
    const result = { network, address };
    this.exposed.set(network, result);
    await this.save();
    return result;
  }

  private async doHide(network: string): Promise<ExposeResult | undefined> {
    const have = this.exposed.get(network);
    if (!have) return undefined;
    const net = this.networks.get(network);
    if (net) await this.netlink.delAddress(net.bridge, have.address, { ignoreMissing: true });
    this.allocator.release(exposeKey(network));
    this.exposed.delete(network);
    await this.save();
    return have;
  }

  /** Remove every endpoint's links (reset). */
  async removeAll(): Promise<void> {
    for (const ep of this.endpoints.values()) {
      await this.netlink.deleteLink(ep.hostVeth, { ignoreMissing: true });
      await this.ledger.forget(ep.hostVeth);
    }
    this.endpoints.clear();
  }

  private async save(): Promise<void> {
    const data: Persisted = { endpoints: this.list(), exposed: this.exposures() };
    await writeFileAtomic(this.file, JSON.stringify(data, null, 1) + '\n');
  }
}

function ownerKey(id: string): string {
  return `endpoint:${id}`;
}

function exposeKey(network: string): string {
  return `expose:${network}`;
}
