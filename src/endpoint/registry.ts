/**
 * Endpoints: container interfaces plugged into overlay networks on this host (`attach`),
 * and the host's own address on a network (`expose`). Owns address allocation for them
 * and persists both in <stateDir>/endpoints.json so a restarted daemon keeps every
 * container's address.
 */
import type { Netlink } from '../netlink';
import { Netlink as NetlinkSocket } from '../netlink';
import type { Logger } from '../log';
import type { AttachRequest, EndpointCheck, EndpointStatus, ExposeResult } from './types';
import { WeavetsError } from '../errors';
import { DEFAULT_NETWORK } from '../config';
import { formatCidr, formatIpv4, isIpv4, parseCidr } from '../net/ipv4';
import { vethLinkNames } from '../net/links';
import { isMacText } from '../net/mac';
import type { AddressAllocator } from '../ipam/types';
import type { AddressClaim } from '../ipam/reconcile';
import type { NetworkSet } from './networks';
import { validateNetworkName } from './networks';
import type { LinkLedger } from './ledger';
import type { FieldReader, JsonObject } from '../json-fields';
import { JsonStateFile, type StateFormat } from '../state/json-state-file';
import { StateDir } from '../state/state-dir';
import type { HostRoutes } from './host-routes';
import { namespaceFileState } from '../netlink/nsfs';
import { SerialQueue } from '../serial-queue';
import { compareText } from '../text-order';

const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,253}$/;

interface Persisted {
  endpoints: EndpointStatus[];
  exposed: ExposeResult[];
}

function parseEndpoint(v: unknown, at: string, fields: FieldReader): EndpointStatus {
  const o = fields.asObject(v, at);
  const f = fields.within(`${at}.`);
  const ep: EndpointStatus = {
    id: f.reqString(o, 'id'),
    network: f.reqString(o, 'network'),
    ifname: f.reqString(o, 'ifname'),
    address: f.reqString(o, 'address'),
    mac: f.reqString(o, 'mac', { allowEmpty: true }),
    netns: f.reqString(o, 'netns', { allowEmpty: true }),
    hostVeth: f.reqString(o, 'hostVeth'),
  };
  const hostMac = f.optString(o, 'hostMac');
  const name = f.optString(o, 'name');
  const gateway = f.optString(o, 'gateway');
  const labels = f.optStringRecord(o, 'labels');
  const externalAddress = f.optBoolean(o, 'externalAddress');
  if (hostMac !== undefined) ep.hostMac = hostMac;
  if (name !== undefined) ep.name = name;
  if (gateway !== undefined) ep.gateway = gateway;
  if (labels !== undefined) ep.labels = labels;
  if (externalAddress !== undefined) ep.externalAddress = externalAddress;
  return ep;
}

function parsePersisted(doc: JsonObject, fields: FieldReader): Persisted {
  const endpoints = (fields.optArray(doc, 'endpoints') ?? []).map((v, i) =>
    parseEndpoint(v, `endpoints[${i}]`, fields),
  );
  const exposed = (fields.optArray(doc, 'exposed') ?? []).map((v, i) => {
    const o = fields.asObject(v, `exposed[${i}]`);
    const f = fields.within(`exposed[${i}].`);
    return { network: f.reqString(o, 'network'), address: f.reqString(o, 'address') };
  });
  return { endpoints, exposed };
}

/** endpoints.json: version 1 adds `version` to the unversioned {endpoints, exposed}. */
export const ENDPOINTS_STATE_FORMAT: StateFormat<Persisted> = {
  version: 1,
  parse: parsePersisted,
  parseUnversioned: (doc, fields) => parsePersisted(fields.asObject(doc, 'the document'), fields),
  toJson: (p) => ({ endpoints: p.endpoints, exposed: p.exposed }),
};

export class EndpointRegistry {
  private readonly endpoints = new Map<string, EndpointStatus>();
  private readonly exposed = new Map<string, ExposeResult>();
  private readonly file: JsonStateFile<Persisted>;
  /** Serialises attach/detach so concurrent requests cannot interleave link operations. */
  private readonly queue = new SerialQueue();
  private readonly changeListeners: (() => void)[] = [];

  constructor(
    stateDir: string,
    private readonly netlink: Netlink,
    private readonly networks: NetworkSet,
    private readonly allocator: AddressAllocator,
    private readonly ledger: LinkLedger,
    private readonly hostRoutes: HostRoutes,
    private readonly log: Logger,
    /** How long a detached container's address stays reserved for its id (ms; 0: freed at once). */
    private readonly retentionMs = 0,
  ) {
    this.file = new JsonStateFile(new StateDir(stateDir).endpoints, ENDPOINTS_STATE_FORMAT);
  }

  /** Reload endpoints of a previous run: keep those whose host veth still exists. */
  async restore(): Promise<void> {
    let data: Persisted | undefined;
    try {
      data = await this.file.read();
    } catch (err) {
      this.log.warn('ignoring unreadable endpoints file', { file: this.file.file, error: (err as Error).message });
      return;
    }
    if (data === undefined) return;
    for (const ep of data.endpoints) {
      if ((await this.netlink.getLink(ep.hostVeth)) === undefined) {
        this.log.info('endpoint gone while we were down; releasing its address', { id: ep.id, address: ep.address });
        if (ep.externalAddress) continue;
        await this.allocator.release(ep.id, ep.ifname).catch((err: unknown) => {
          this.log.warn('could not release the address of a gone endpoint', {
            id: ep.id,
            error: (err as Error).message,
          });
        });
        continue;
      }
      await this.networks.ensure(ep.network);
      if (!ep.externalAddress) await this.reclaimAddress(ep.id, ep.ifname, ep.network, ep.address);
      this.endpoints.set(ep.id, ep);
    }
    for (const ex of data.exposed) {
      const net = await this.networks.ensure(ex.network);
      await this.reclaimAddress(exposeId(this.allocator), ex.network, ex.network, ex.address);
      // Idempotent: in place after a stop, put back after a reboot took the bridge.
      await this.hostRoutes.addAddress(net.bridge, ex.address);
      this.exposed.set(ex.network, ex);
    }
    await this.save();
  }

  /**
   * Hold an address a running container already uses. A conflict (someone took it while
   * we were down past our lease) is logged loudly; the container keeps running.
   */
  private async reclaimAddress(id: string, ifname: string, network: string, address: string): Promise<void> {
    try {
      await this.allocator.claim({ id, ifname, network, ip: parseCidr(address, false).address });
    } catch (err) {
      this.log.error('could not re-claim an address in use', {
        id,
        ifname,
        network,
        address,
        error: (err as Error).message,
      });
    }
  }

  list(): EndpointStatus[] {
    return [...this.endpoints.values()].sort((a, b) => compareText(a.id, b.id));
  }

  exposures(): ExposeResult[] {
    return [...this.exposed.values()];
  }

  attach(req: AttachRequest): Promise<EndpointStatus> {
    return this.serialise(() => this.doAttach(req));
  }

  /**
   * Remove the endpoint. Its address stays reserved for the id for the retention time,
   * unless `release`. With no endpoint recorded: `ifname` (a caller that knows which
   * interface the id had: CNI DEL, after a daemon killed mid-attach or an ADD that failed
   * after allocating) releases whatever (id, ifname) holds; `release` alone frees what an
   * earlier detach reserved for the id (eth0); then the usual not-found error.
   */
  detach(id: string, opts: { release?: boolean; ifname?: string } = {}): Promise<void> {
    return this.serialise(() => this.doDetach(id, opts.release === true, opts.ifname));
  }

  /** Every (id, ifname) this registry holds an address for: its endpoints (not Docker's) and exposures. */
  addressClaims(): AddressClaim[] {
    const out: AddressClaim[] = [];
    for (const ep of this.endpoints.values()) if (!ep.externalAddress) out.push({ id: ep.id, ifname: ep.ifname });
    for (const ex of this.exposed.values()) out.push({ id: exposeId(this.allocator), ifname: ex.network });
    return out;
  }

  /**
   * A veth for a runtime that moves the container end itself (Docker's remote driver):
   * the host end on the network's bridge and up, the other end (`ifname`) left in this
   * namespace with `mac`. The caller allocated `address` and releases it: the endpoint
   * is `externalAddress`. Idempotent for the same id and network.
   */
  plug(req: {
    id: string;
    network: string;
    address: string;
    mac?: string;
    name?: string;
    gateway?: string;
    labels?: Record<string, string>;
  }): Promise<EndpointStatus> {
    return this.serialise(async () => {
      if (!ID_RE.test(req.id))
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `invalid endpoint id ${JSON.stringify(req.id)}`);
      const badNet = validateNetworkName(req.network);
      if (badNet) throw new WeavetsError('EWEAVETS_BAD_REQUEST', badNet);
      const existing = this.endpoints.get(req.id);
      if (existing) {
        if (existing.network === req.network) return existing;
        throw new WeavetsError('EWEAVETS_CONFLICT', `endpoint ${req.id} is already on network ${existing.network}`);
      }
      const net = await this.networks.ensure(req.network);
      const { host: hostVeth, peer } = vethLinkNames(`${req.id}\0${req.network}\0plug`);
      try {
        await this.ledger.record(hostVeth);
        await this.netlink.deleteLink(hostVeth, { ignoreMissing: true });
        await this.netlink.createVeth(hostVeth, peer, {
          mtu: net.mtu,
          ...(req.mac !== undefined ? { peerMac: req.mac } : {}),
        });
        await this.netlink.setMaster(hostVeth, net.bridge);
        await this.netlink.setUp(hostVeth);
        const [link, hostLink] = await Promise.all([this.netlink.getLink(peer), this.netlink.getLink(hostVeth)]);
        const ep: EndpointStatus = {
          id: req.id,
          network: req.network,
          ifname: peer,
          address: req.address,
          mac: link?.mac ?? '',
          netns: '',
          hostVeth,
          hostMac: hostLink?.mac ?? '',
          ...(req.name !== undefined ? { name: req.name } : {}),
          ...(req.gateway !== undefined ? { gateway: req.gateway } : {}),
          ...(req.labels !== undefined && Object.keys(req.labels).length > 0 ? { labels: { ...req.labels } } : {}),
          externalAddress: true,
        };
        this.endpoints.set(req.id, ep);
        await this.save();
        this.log.info('plugged endpoint', { id: req.id, network: req.network, address: req.address });
        return ep;
      } catch (err) {
        await this.netlink.deleteLink(hostVeth, { ignoreMissing: true }).catch(() => undefined);
        await this.ledger.forget(hostVeth);
        if (err instanceof WeavetsError) throw err;
        throw new WeavetsError('EWEAVETS_INTERNAL', `plug ${req.id}: ${(err as Error).message}`, { cause: err });
      }
    });
  }

  expose(network: string | undefined, ip: string | undefined): Promise<ExposeResult> {
    return this.serialise(() => this.doExpose(network ?? DEFAULT_NETWORK, ip));
  }

  hide(network: string | undefined): Promise<ExposeResult | undefined> {
    return this.serialise(() => this.doHide(network ?? DEFAULT_NETWORK));
  }

  private serialise<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  private async doAttach(req: AttachRequest): Promise<EndpointStatus> {
    const ifname = req.ifname ?? 'eth0';
    const networkName = req.network ?? DEFAULT_NETWORK;
    checkAttachRequest(req, ifname, networkName);
    const existing = this.endpoints.get(req.id);
    if (existing) {
      if (existing.netns === req.netns && existing.network === networkName && existing.ifname === ifname)
        return existing;
      throw new WeavetsError(
        'EWEAVETS_CONFLICT',
        `endpoint ${req.id} is already attached (${existing.address} in ${existing.netns}); detach it first`,
      );
    }
    // Before any address is allocated or link made: a regular file here would fail halfway.
    const nsState = namespaceFileState(req.netns);
    if (nsState === 'missing')
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', `network namespace ${req.netns} does not exist`);
    if (nsState === 'other') {
      throw new WeavetsError(
        'EWEAVETS_BAD_REQUEST',
        `${req.netns} is not a network namespace file (such as /proc/PID/ns/net or /run/netns/NAME)`,
      );
    }
    const requested = req.ip === undefined ? undefined : parseRequestedIp(req.ip);
    const net = await this.networks.ensure(networkName);
    if (requested !== undefined && requested.prefix !== net.subnet.prefix) {
      throw new WeavetsError(
        'EWEAVETS_BAD_REQUEST',
        `--ip ${req.ip}: the prefix must be /${net.subnet.prefix}, network ${networkName}'s subnet ${formatCidr(net.subnet)}`,
      );
    }
    const address = (
      await this.allocator.allocate({
        id: req.id,
        ifname,
        network: networkName,
        ...(requested !== undefined ? { ip: requested.address } : {}),
      })
    ).address;
    const { host: hostVeth, peer: tempPeer } = vethLinkNames(`${req.id}\0${networkName}\0${ifname}`);
    let ns: NetlinkSocket | undefined;
    try {
      await this.ledger.record(hostVeth);
      await this.netlink.deleteLink(hostVeth, { ignoreMissing: true });
      await this.netlink.createVeth(hostVeth, tempPeer, {
        mtu: net.mtu,
        peerNetnsPath: req.netns,
        ...(req.mac !== undefined ? { peerMac: req.mac } : {}),
      });
      await this.netlink.setMaster(hostVeth, net.bridge);
      await this.netlink.setUp(hostVeth);
      ns = NetlinkSocket.openInNetns(req.netns);
      if ((await ns.getLink(ifname)) !== undefined) {
        throw new WeavetsError(
          'EWEAVETS_CONFLICT',
          `an interface named ${ifname} already exists in ${req.netns}; choose another with --ifname`,
        );
      }
      await ns.rename(tempPeer, ifname);
      await ns.addAddress(ifname, address, { ignoreExisting: true });
      await ns.setUp(ifname);
      await ns.setUp('lo');
      if (req.gateway !== undefined)
        await ns.addRoute({ dst: 'default', via: req.gateway, dev: ifname }, { replace: true });
      const link = await ns.getLink(ifname);
      const hostLink = await this.netlink.getLink(hostVeth);
      const ep: EndpointStatus = {
        id: req.id,
        network: networkName,
        ifname,
        address,
        mac: link?.mac ?? '',
        netns: req.netns,
        hostVeth,
        hostMac: hostLink?.mac ?? '',
        ...(req.name !== undefined ? { name: req.name } : {}),
        ...(req.gateway !== undefined ? { gateway: req.gateway } : {}),
        ...(req.labels !== undefined && Object.keys(req.labels).length > 0 ? { labels: { ...req.labels } } : {}),
      };
      this.endpoints.set(req.id, ep);
      await this.save();
      this.log.info('attached endpoint', { id: req.id, network: networkName, address, netns: req.netns });
      return ep;
    } catch (err) {
      await this.allocator.release(req.id, ifname).catch(() => undefined);
      await this.netlink.deleteLink(hostVeth, { ignoreMissing: true }).catch(() => undefined);
      await this.ledger.forget(hostVeth);
      if (err instanceof WeavetsError) throw err;
      throw new WeavetsError('EWEAVETS_INTERNAL', `attach ${req.id}: ${(err as Error).message}`, { cause: err });
    } finally {
      ns?.close();
    }
  }

  private async doDetach(id: string, release: boolean, orphanIfname?: string): Promise<void> {
    const ep = this.endpoints.get(id);
    if (!ep) {
      if (orphanIfname !== undefined && ID_RE.test(id)) {
        // If the store is unavailable this throws: the caller (CNI DEL) fails and retries.
        const released = await this.allocator.release(id, orphanIfname);
        if (released)
          this.log.info('released the address of an id with no endpoint', {
            id,
            ifname: orphanIfname,
            address: released.address,
          });
      } else if (release && ID_RE.test(id)) {
        // `detach --release` of an id detached earlier: free what is reserved for it.
        const released = await this.allocator.release(id, 'eth0');
        if (released) {
          this.log.info('released a reserved address', { id, address: released.address });
          return;
        }
      }
      throw new WeavetsError('EWEAVETS_NOT_FOUND', `no endpoint ${JSON.stringify(id)} is attached; see \`weavets ps\``);
    }
    // Deleting the host end removes the pair, wherever the container end lives.
    await this.netlink.deleteLink(ep.hostVeth, { ignoreMissing: true });
    await this.ledger.forget(ep.hostVeth);
    // If the store is unavailable this throws and the endpoint stays listed: detach again later.
    const retainMs = release ? 0 : this.retentionMs;
    if (!ep.externalAddress) await this.allocator.release(id, ep.ifname, { retainMs });
    this.endpoints.delete(id);
    await this.save();
    this.log.info('detached endpoint', {
      id,
      address: ep.address,
      ...(retainMs > 0 && !ep.externalAddress ? { reservedForMs: retainMs } : {}),
    });
  }

  /** What is wrong with an endpoint's links, address and routes ([] when sound); CNI CHECK. */
  async check(id: string): Promise<EndpointCheck> {
    const ep = this.endpoints.get(id);
    if (!ep) throw new WeavetsError('EWEAVETS_NOT_FOUND', `no endpoint ${JSON.stringify(id)} is attached`);
    const problems: string[] = [];
    const host = await this.netlink.getLink(ep.hostVeth);
    const bridge = this.networks.get(ep.network)?.bridge;
    const bridgeLink = bridge === undefined ? undefined : await this.netlink.getLink(bridge);
    if (!host) problems.push(`host veth ${ep.hostVeth} is missing`);
    else {
      if (!host.up) problems.push(`host veth ${ep.hostVeth} is down`);
      if (bridgeLink === undefined || host.master !== bridgeLink.index)
        problems.push(`host veth ${ep.hostVeth} is not on bridge ${bridge ?? '?'}`);
    }
    let ns: NetlinkSocket | undefined;
    try {
      ns = NetlinkSocket.openInNetns(ep.netns);
    } catch (err) {
      problems.push(`cannot enter network namespace ${ep.netns}: ${(err as Error).message}`);
      return { endpoint: ep, problems };
    }
    try {
      const link = await ns.getLink(ep.ifname);
      if (!link) {
        problems.push(`interface ${ep.ifname} is missing in ${ep.netns}`);
        return { endpoint: ep, problems };
      }
      if (!link.up) problems.push(`interface ${ep.ifname} is down`);
      if (ep.mac !== '' && link.mac !== ep.mac)
        problems.push(`interface ${ep.ifname} has mac ${link.mac}, expected ${ep.mac}`);
      const addrs = await ns.listAddresses(ep.ifname);
      if (!addrs.some((a) => a.cidr === ep.address))
        problems.push(`interface ${ep.ifname} lacks address ${ep.address}`);
      // No route dump in our netlink layer: ask the kernel which source it would use instead.
      const own = ep.address.split('/')[0]!;
      const subnet = parseCidr(ep.address, false);
      const peer = formatIpv4(subnet.base + (subnet.address === subnet.base + 1 ? 2 : 1));
      if ((await ns.sourceTowards(peer)) !== own)
        problems.push(`no route to the network ${formatCidr(subnet)} via ${ep.ifname}`);
      if (ep.gateway !== undefined && (await ns.sourceTowards('198.51.100.1')) !== own) {
        problems.push(`no default route via ${ep.gateway} on ${ep.ifname}`);
      }
    } catch (err) {
      problems.push(`inspecting ${ep.netns}: ${(err as Error).message}`);
    } finally {
      ns.close();
    }
    return { endpoint: ep, problems };
  }

  private async doExpose(network: string, ip: string | undefined): Promise<ExposeResult> {
    const have = this.exposed.get(network);
    if (have && ip === undefined) return have;
    if (have)
      throw new WeavetsError(
        'EWEAVETS_CONFLICT',
        `network ${network} is already exposed at ${have.address}; hide it first`,
      );
    let requested: number | undefined;
    if (ip !== undefined) {
      try {
        requested = parseCidr(ip.includes('/') ? ip : `${ip}/32`, false).address;
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--ip: ${(err as Error).message}`, { cause: err });
      }
    }
    const net = await this.networks.ensure(network);
    const exposer = exposeId(this.allocator);
    const address = (
      await this.allocator.allocate({
        id: exposer,
        ifname: network,
        network,
        ...(requested !== undefined ? { ip: requested } : {}),
      })
    ).address;
    try {
      await this.hostRoutes.addAddress(net.bridge, address);
    } catch (err) {
      // Nothing half-applied: the address may be on the bridge already.
      await this.hostRoutes.delAddress(net.bridge, address).catch(() => undefined);
      await this.allocator.release(exposer, network).catch(() => undefined);
      throw new WeavetsError('EWEAVETS_INTERNAL', `expose ${network}: ${(err as Error).message}`, { cause: err });
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
    if (net) await this.hostRoutes.delAddress(net.bridge, have.address);
    await this.allocator.release(exposeId(this.allocator), network);
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

  /** Called after every change of the endpoint set (policy follows it); must not throw. */
  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  /**
   * Set an endpoint's labels, and its name when given (Docker tells us a container's
   * labels and name only after the endpoint is plugged).
   */
  relabel(id: string, labels: Record<string, string>, name?: string): Promise<EndpointStatus> {
    return this.serialise(async () => {
      const ep = this.endpoints.get(id);
      if (!ep) throw new WeavetsError('EWEAVETS_NOT_FOUND', `no endpoint ${JSON.stringify(id)} is attached`);
      const next: EndpointStatus = { ...ep };
      if (name !== undefined && name !== '') next.name = name;
      if (Object.keys(labels).length > 0) next.labels = { ...labels };
      else delete next.labels;
      this.endpoints.set(id, next);
      await this.save();
      return next;
    });
  }

  private async save(): Promise<void> {
    const data: Persisted = { endpoints: this.list(), exposed: this.exposures() };
    await this.file.write(data);
    for (const l of this.changeListeners) {
      try {
        l();
      } catch (err) {
        this.log.warn('endpoint change listener failed', { error: (err as Error).message });
      }
    }
  }
}

/** The allocation owner of this host's own address on a network (ifname = the network). */
function exposeId(allocator: AddressAllocator): string {
  return `host@${allocator.self}`;
}

/** What attach refuses before anything is allocated or made. */
function checkAttachRequest(req: AttachRequest, ifname: string, networkName: string): void {
  if (!ID_RE.test(req.id))
    throw new WeavetsError('EWEAVETS_BAD_REQUEST', `invalid endpoint id ${JSON.stringify(req.id)}`);
  if (!IFNAME_RE.test(ifname)) {
    throw new WeavetsError(
      'EWEAVETS_BAD_REQUEST',
      `invalid interface name ${JSON.stringify(ifname)}: 1-15 letters, digits, '.', '_' or '-'`,
    );
  }
  const badNet = validateNetworkName(networkName);
  if (badNet) throw new WeavetsError('EWEAVETS_BAD_REQUEST', badNet);
  if (req.mac !== undefined && !isMacText(req.mac)) {
    throw new WeavetsError('EWEAVETS_BAD_REQUEST', `invalid mac ${JSON.stringify(req.mac)}: want aa:bb:cc:dd:ee:ff`);
  }
  if (req.mac !== undefined && (parseInt(req.mac.slice(0, 2), 16) & 1) === 1) {
    throw new WeavetsError(
      'EWEAVETS_BAD_REQUEST',
      `invalid mac ${req.mac}: a multicast address cannot be an interface's`,
    );
  }
  if (req.gateway !== undefined && !isIpv4(req.gateway)) {
    throw new WeavetsError(
      'EWEAVETS_BAD_REQUEST',
      `invalid gateway ${JSON.stringify(req.gateway)}: want an IPv4 address`,
    );
  }
}

/** --ip A.B.C.D/P: the address asked for, and the prefix to check against the network's. */
function parseRequestedIp(ip: string): { address: number; prefix: number } {
  try {
    const c = parseCidr(ip, false);
    return { address: c.address, prefix: c.prefix };
  } catch (err) {
    throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--ip: ${(err as Error).message}`, { cause: err });
  }
}
