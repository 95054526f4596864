/**
 * A small typed API over the `netlink` package's rtnetlink socket: links, addresses,
 * routes. One Netlink object = one rtnetlink socket = one network namespace (the one
 * the socket was created in, see netns.ts).
 *
 * Requests go through NetlinkSocket.request with checkError off, so that kernel errors
 * are decoded here into NetlinkError with the errno name (the package itself only
 * throws Error("Request rejected: EEXIST") with no code).
 */
import * as fs from 'fs';
// Deep imports: the package's index also loads its nl80211, genl and WireGuard
// tables (about 270 KB of source), which the daemon would keep resident for nothing.
import { FlagsGet, FlagsNew, MessageType as NlMessageType } from 'netlink/dist/constants';
import { AttrStream, parseError } from 'netlink/dist/structs';
import { createRtNetlink, RtNetlinkSocket } from 'netlink/dist/rt/rt';
import * as rt from 'netlink/dist/rt/structs';
import type * as ifla from 'netlink/dist/rt/ifla';
import { AF_INET, AF_INET6, bytesToIp, familyOf, formatMac, parseCidr, parseMac, ipToBytes } from './addr';
import { isCode, NetlinkError } from './errors';
import { attr, decodeLinkInfo, encodeLinkInfo, readU32, vethData } from './linkinfo';
import {
  addressMessage,
  bridgeMessage,
  bridgePortMessage,
  fdbMessage,
  IFA_F_NODAD,
  IFA_F_NOPREFIXROUTE,
  neighbourMessage,
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  vxlanData,
  type BridgePortSettings,
  type BridgeSettings,
} from './neigh';

const RTM_NEWLINK = 16;
const RTM_NEWADDR = 20;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const NLM_F_APPEND = 0x800;
import { inNetns, openNetns } from './netns';
import { RTM_DELRULE, RTM_NEWRULE, ruleMessage } from './rule';
import { SerialQueue } from '../serial-queue';

export interface LinkInfo {
  index: number;
  name: string;
  /** From IFLA_LINKINFO: "bridge", "veth", "tun", "vxlan", ...; absent for e.g. loopback. */
  kind?: string;
  mtu: number;
  /** "aa:bb:cc:dd:ee:ff"; empty for links without a hardware address */
  mac: string;
  up: boolean;
  /** ifindex of the master (bridge) */
  master?: number;
}

export interface AddressInfo {
  index: number;
  cidr: string;
}

export interface RouteSpec {
  /** CIDR or "default" */
  dst: string;
  via?: string;
  dev: string;
  mtu?: number;
  src?: string;
  /** Routing table id; absent: main. */
  table?: number;
}

export interface RuleSpec {
  /** The destination CIDR the rule matches (`ip rule ... to CIDR`). */
  to: string;
  table: number;
  priority: number;
}

/** Kernel replies normally arrive in microseconds; this only guards against a lost reply. */
const REQUEST_TIMEOUT_MS = 15_000;
const RT_TABLE_MAIN = 254;
const RTAX_MTU = 2;

type Payload =
  | { kind: 'link'; data: rt.Link; attrs: ifla.LinkAttrs }
  | { kind: 'address'; data: rt.Address; attrs: rt.AddressAttrs }
  | { kind: 'route'; data: rt.Route; attrs: rt.RouteAttrs };

export class Netlink {
  private closed = false;
  /** One request at a time on this socket (send). */
  private readonly requests = new SerialQueue();

  private constructor(private readonly sock: RtNetlinkSocket) {
    // A socket with no request in flight must not keep the daemon (or a test) alive.
    sock.socket.unref();
  }

  /** Socket in the daemon's own network namespace (that of the calling thread). */
  static open(): Netlink {
    return new Netlink(createRtNetlink());
  }

  /**
   * Socket inside the namespace at `netnsPath` (/run/netns/X, /proc/PID/ns/net, ...).
   * createRtNetlink() calls socket(2) synchronously in its constructor (checked in the
   * package's binding.cc), so the socket is created in the namespace we switched into.
   */
  static openInNetns(netnsPath: string): Netlink {
    return new Netlink(inNetns(netnsPath, () => createRtNetlink()));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.socket.close();
  }

  // ---- links ----

  async listLinks(): Promise<LinkInfo[]> {
    const msgs = await this.request(
      rt.MessageType.GETLINK,
      { kind: 'link', data: {}, attrs: {} },
      FlagsGet.DUMP,
      'list links',
    );
    return msgs.filter(isLink).map(toLinkInfo);
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    try {
      const msgs = await this.request(
        rt.MessageType.GETLINK,
        { kind: 'link', data: {}, attrs: { ifname: name } },
        0,
        `get link ${name}`,
      );
      const m = msgs.find(isLink);
      return m ? toLinkInfo(m) : undefined;
    } catch (e) {
      if (isCode(e, 'ENODEV')) return undefined;
      throw e;
    }
  }

  async createBridge(name: string, opts: { mtu?: number; mac?: string } = {}): Promise<LinkInfo> {
    const what = `create bridge ${name}`;
    const existing = await this.getLink(name);
    if (!existing) {
      const attrs: ifla.LinkAttrs = { ifname: name, linkinfo: encodeLinkInfo({ kind: 'bridge' }) };
      if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
      if (opts.mac !== undefined) attrs.address = parseMac(opts.mac);
      await this.createLink(attrs, what);
    }
    const link = await this.linkOfKind(name, 'bridge', what);
    if (existing) {
      if (opts.mtu !== undefined && link.mtu !== opts.mtu) await this.setMtu(name, opts.mtu);
      if (opts.mac !== undefined && link.mac !== formatMac(parseMac(opts.mac))) await this.setMac(name, opts.mac);
      if (opts.mtu !== undefined || opts.mac !== undefined) return (await this.getLink(name)) ?? link;
    }
    return link;
  }

  /** Create a veth pair; with `peerNetnsPath` the peer is born in that namespace (never visible here). */
  async createVeth(
    name: string,
    peer: string,
    opts: { mtu?: number; peerNetnsPath?: string; peerMac?: string } = {},
  ): Promise<void> {
    const fd = opts.peerNetnsPath !== undefined ? openNetns(opts.peerNetnsPath) : undefined;
    try {
      const attrs: ifla.LinkAttrs = {
        ifname: name,
        linkinfo: encodeLinkInfo({
          kind: 'veth',
          data: vethData({
            name: peer,
            ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
            ...(opts.peerMac !== undefined ? { mac: parseMac(opts.peerMac) } : {}),
            ...(fd !== undefined ? { netnsFd: fd } : {}),
          }),
        }),
      };
      if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
      await this.request(
        rt.MessageType.NEWLINK,
        { kind: 'link', data: {}, attrs },
        FlagsNew.CREATE | FlagsNew.EXCL,
        `create veth ${name}`,
      );
    } finally {
      // The kernel resolves IFLA_NET_NS_FD while handling the request; the reply means it is done.
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  async setMaster(name: string, master: string | null): Promise<void> {
    const what = master === null ? `set nomaster ${name}` : `set master ${name} ${master}`;
    const index = await this.indexOf(name, what);
    const masterIndex = master === null ? 0 : await this.indexOf(master, what);
    await this.setLink(index, { master: masterIndex }, what);
  }

  async setUp(name: string, up = true): Promise<void> {
    const what = `set ${up ? 'up' : 'down'} ${name}`;
    const index = await this.indexOf(name, what);
    const data: rt.Link = { index, flags: up ? { up: true } : {}, change: { up: true } };
    await this.request(rt.MessageType.SETLINK, { kind: 'link', data, attrs: {} }, 0, what);
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    const what = `set mtu ${name} ${mtu}`;
    await this.setLink(await this.indexOf(name, what), { mtu }, what);
  }

  async setMac(name: string, mac: string): Promise<void> {
    const what = `set mac ${name} ${mac}`;
    const address = parseMac(mac);
    await this.setLink(await this.indexOf(name, what), { address }, what);
  }

  /** Kernels before 6.2 refuse to rename a link that is up (EBUSY): portable callers set it down first. */
  async rename(name: string, newName: string): Promise<void> {
    const what = `rename ${name} ${newName}`;
    await this.setLink(await this.indexOf(name, what), { ifname: newName }, what);
  }

  /** Deleting one end of a veth deletes both. */
  async deleteLink(name: string, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
    try {
      await this.request(
        rt.MessageType.DELLINK,
        { kind: 'link', data: {}, attrs: { ifname: name } },
        0,
        `delete link ${name}`,
      );
    } catch (e) {
      if (opts.ignoreMissing && isCode(e, 'ENODEV')) return;
      throw e;
    }
  }

  /**
   * Create a VXLAN link (learning as asked; VNI, UDP port, MTU, MAC). An existing link of
   * that name is reconciled: kept if it is a VXLAN link (its settings are not re-read:
   * callers that care delete and recreate), else EEXIST.
   */
  async createVxlan(
    name: string,
    opts: { vni: number; port: number; learning?: boolean; mtu?: number; mac?: string; local?: string },
  ): Promise<LinkInfo> {
    const what = `create vxlan ${name}`;
    const attrs: ifla.LinkAttrs = {
      ifname: name,
      linkinfo: encodeLinkInfo({
        kind: 'vxlan',
        data: vxlanData({
          vni: opts.vni,
          port: opts.port,
          learning: opts.learning ?? false,
          ...(opts.local !== undefined ? { local: ipToBytes(opts.local) } : {}),
        }),
      }),
    };
    if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
    if (opts.mac !== undefined) attrs.address = parseMac(opts.mac);
    await this.createLink(attrs, what);
    return this.linkOfKind(name, 'vxlan', what);
  }

  /** NEWLINK with CREATE|EXCL. EEXIST is not an error here: the caller checks what exists. */
  private async createLink(attrs: ifla.LinkAttrs, what: string): Promise<void> {
    try {
      await this.request(
        rt.MessageType.NEWLINK,
        { kind: 'link', data: {}, attrs },
        FlagsNew.CREATE | FlagsNew.EXCL,
        what,
      );
    } catch (e) {
      // Already there (or another creator won a race): reconciled by the caller.
      if (!isCode(e, 'EEXIST')) throw e;
    }
  }

  /** The link `name`, which must exist and be of `kind`. */
  private async linkOfKind(name: string, kind: string, what: string): Promise<LinkInfo> {
    const link = await this.getLink(name);
    if (!link) throw new NetlinkError('ENODEV', `${what}: ENODEV (vanished after creation)`);
    if (link.kind !== kind)
      throw new NetlinkError('EEXIST', `${what}: EEXIST (exists as ${link.kind ?? 'a link of unknown kind'})`);
    return link;
  }

  /** Change a bridge's options (nf_call_iptables); ENODEV if there is no such link, ENOTSUP (EOPNOTSUPP) if it is no bridge. */
  async setBridge(name: string, s: BridgeSettings): Promise<void> {
    const what = `set bridge ${name} ${JSON.stringify(s)}`;
    const index = await this.indexOf(name, what);
    await this.rawRequest(RTM_NEWLINK, bridgeMessage(index, s), 0, what);
  }

  /** Change a bridge port's settings (isolation, learning) or flush its learned entries. */
  async setBridgePort(name: string, s: BridgePortSettings): Promise<void> {
    const what = `set bridge port ${name} ${JSON.stringify(s)}`;
    const index = await this.indexOf(name, what);
    await this.rawRequest(RTM_NEWLINK, bridgePortMessage(index, s), 0, what);
  }

  /**
   * Add an entry to a VXLAN device's own FDB: frames for `mac` go to the VTEP `dst`. The
   * all-zeros MAC may have several entries (append): broadcast and unknown destinations
   * are replicated to each. Adding an entry that exists is not an error.
   */
  async addFdb(dev: string, mac: string, dst: string): Promise<void> {
    const what = `fdb append ${mac} dev ${dev} dst ${dst}`;
    const index = await this.indexOf(dev, what);
    try {
      await this.rawRequest(
        RTM_NEWNEIGH,
        fdbMessage({ index, mac: parseMac(mac), dst: ipToBytes(dst) }),
        FlagsNew.CREATE | NLM_F_APPEND,
        what,
      );
    } catch (e) {
      if (!isCode(e, 'EEXIST')) throw e;
    }
  }

  /**
   * `bridge fdb replace MAC dev DEV dst IP self permanent`: the one entry for a unicast
   * `mac` (created, or its VTEP changed in place). For per-MAC entries, never the
   * all-zeros MAC (the kernel refuses REPLACE there: EOPNOTSUPP). Idempotent.
   */
  async replaceFdb(dev: string, mac: string, dst: string): Promise<void> {
    const what = `fdb replace ${mac} dev ${dev} dst ${dst}`;
    const index = await this.indexOf(dev, what);
    await this.rawRequest(
      RTM_NEWNEIGH,
      fdbMessage({ index, mac: parseMac(mac), dst: ipToBytes(dst) }),
      FlagsNew.CREATE | FlagsNew.REPLACE,
      what,
    );
  }

  /** Remove one FDB entry (MAC + VTEP); a missing entry or device is fine. */
  async delFdb(dev: string, mac: string, dst: string): Promise<void> {
    const what = `fdb del ${mac} dev ${dev} dst ${dst}`;
    try {
      const index = await this.indexOf(dev, what);
      await this.rawRequest(RTM_DELNEIGH, fdbMessage({ index, mac: parseMac(mac), dst: ipToBytes(dst) }), 0, what);
    } catch (e) {
      if (isCode(e, 'ENOENT', 'ENODEV', 'ESRCH')) return;
      throw e;
    }
  }

  /** A permanent neighbour (ARP/NDP) entry: `ip neigh replace IP lladdr MAC dev DEV nud permanent`. */
  async setNeighbour(dev: string, ip: string, mac: string): Promise<void> {
    const what = `neigh replace ${ip} lladdr ${mac} dev ${dev}`;
    const index = await this.indexOf(dev, what);
    await this.rawRequest(
      RTM_NEWNEIGH,
      neighbourMessage({ index, mac: parseMac(mac), dst: ipToBytes(ip) }),
      FlagsNew.CREATE | FlagsNew.REPLACE,
      what,
    );
  }

  async delNeighbour(dev: string, ip: string): Promise<void> {
    const what = `neigh del ${ip} dev ${dev}`;
    try {
      const index = await this.indexOf(dev, what);
      await this.rawRequest(
        RTM_DELNEIGH,
        neighbourMessage({ index, mac: Buffer.alloc(6), dst: ipToBytes(ip) }),
        0,
        what,
      );
    } catch (e) {
      if (isCode(e, 'ENOENT', 'ENODEV', 'ESRCH')) return;
      throw e;
    }
  }

  /** Add an address without duplicate address detection (usable at once); an existing one is fine. */
  async addAddressNoDad(name: string, cidr: string): Promise<void> {
    await this.addAddress(name, cidr, { ignoreExisting: true, noDad: true });
  }

  // ---- addresses ----

  /**
   * With noPrefixRoute the kernel adds no route for the address's subnet to the main table
   * (`ip addr add ... noprefixroute`): the caller routes the subnet where it wants. With
   * noDad, IPv6 skips duplicate address detection (`nodad`): usable at once.
   */
  async addAddress(
    name: string,
    cidr: string,
    opts: { ignoreExisting?: boolean; noPrefixRoute?: boolean; noDad?: boolean } = {},
  ): Promise<void> {
    const what = `add address ${cidr} dev ${name}${opts.noPrefixRoute ? ' noprefixroute' : ''}${opts.noDad ? ' nodad' : ''}`;
    const c = parseCidr(cidr);
    const index = await this.indexOf(name, what);
    const linkLocal = c.family === AF_INET6 && c.bytes[0] === 0xfe && (c.bytes[1]! & 0xc0) === 0x80;
    const flags = (opts.noPrefixRoute ? IFA_F_NOPREFIXROUTE : 0) | (opts.noDad ? IFA_F_NODAD : 0);
    const msg = addressMessage({
      index,
      ip: c.bytes,
      prefixLen: c.prefixLen,
      flags,
      scope: linkLocal ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
    });
    try {
      await this.rawRequest(RTM_NEWADDR, msg, FlagsNew.CREATE | FlagsNew.EXCL, what);
    } catch (e) {
      if (opts.ignoreExisting && isCode(e, 'EEXIST')) return;
      throw e;
    }
  }

  /** With ignoreMissing, a missing link or a missing address are both fine. */
  async delAddress(name: string, cidr: string, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
    const what = `delete address ${cidr} dev ${name}`;
    const c = parseCidr(cidr);
    try {
      const index = await this.indexOf(name, what);
      const attrs: rt.AddressAttrs = c.family === AF_INET ? { local: c.bytes } : { address: c.bytes };
      await this.request(
        rt.MessageType.DELADDR,
        { kind: 'address', data: { family: c.family, prefixlen: c.prefixLen, index }, attrs },
        0,
        what,
      );
    } catch (e) {
      if (opts.ignoreMissing && isCode(e, 'EADDRNOTAVAIL', 'ENODEV')) return;
      throw e;
    }
  }

  /** All addresses (IPv4 and IPv6), or those of one link (throws ENODEV if it is missing). */
  async listAddresses(name?: string): Promise<AddressInfo[]> {
    const what = name === undefined ? 'list addresses' : `list addresses dev ${name}`;
    const index = name === undefined ? undefined : await this.indexOf(name, what);
    const msgs = await this.request(
      rt.MessageType.GETADDR,
      { kind: 'address', data: {}, attrs: {} },
      FlagsGet.DUMP,
      what,
    );
    const out: AddressInfo[] = [];
    for (const m of msgs) {
      if (m.kind !== 'address') continue;
      const i = m.data.index ?? 0;
      if (index !== undefined && i !== index) continue;
      const ip = m.attrs.local ?? m.attrs.address;
      if (!ip) continue;
      out.push({ index: i, cidr: `${bytesToIp(ip)}/${m.data.prefixlen ?? 0}` });
    }
    return out;
  }

  // ---- routes ----

  /**
   * replace: `ip route replace`. append: `ip route append`, another route to the same
   * destination through a different device; an identical one exists already: EEXIST.
   */
  async addRoute(r: RouteSpec, opts: { replace?: boolean; append?: boolean } = {}): Promise<void> {
    const what = `add route ${describeRoute(r)}`;
    const msg = await this.routeMessage(r, what);
    if (r.mtu !== undefined) msg.attrs.metrics = { mtu: attr.u32(RTAX_MTU, r.mtu).value as Buffer };
    if (r.src !== undefined) msg.attrs.prefsrc = ipToBytes(r.src);
    const flags = FlagsNew.CREATE | (opts.replace ? FlagsNew.REPLACE : opts.append ? NLM_F_APPEND : FlagsNew.EXCL);
    await this.request(rt.MessageType.NEWROUTE, msg, flags, what);
  }

  // ---- policy routing rules ----

  /** `ip rule add to CIDR lookup TABLE pref N`; an identical rule existing already is fine. */
  async addRule(r: RuleSpec): Promise<void> {
    const what = `add rule to ${r.to} lookup ${r.table} pref ${r.priority}`;
    const c = parseCidr(r.to);
    try {
      await this.rawRequest(
        RTM_NEWRULE,
        ruleMessage({ dst: c.bytes, dstLen: c.prefixLen, table: r.table, priority: r.priority }),
        FlagsNew.CREATE | FlagsNew.EXCL,
        what,
      );
    } catch (e) {
      if (!isCode(e, 'EEXIST')) throw e;
    }
  }

  /** `ip rule del to CIDR lookup TABLE pref N`; a missing rule is fine. */
  async delRule(r: RuleSpec): Promise<void> {
    const what = `delete rule to ${r.to} lookup ${r.table} pref ${r.priority}`;
    const c = parseCidr(r.to);
    try {
      await this.rawRequest(
        RTM_DELRULE,
        ruleMessage({ dst: c.bytes, dstLen: c.prefixLen, table: r.table, priority: r.priority }),
        0,
        what,
      );
    } catch (e) {
      if (!isCode(e, 'ENOENT')) throw e;
    }
  }

  /**
   * `ip rule del pref N lookup TABLE`: the rule at that priority into that table, whatever
   * destination it matches (a reset does not know the range a dead daemon ran with); none is fine.
   */
  async delRuleAt(table: number, priority: number): Promise<void> {
    try {
      await this.rawRequest(
        RTM_DELRULE,
        ruleMessage({ dstLen: 0, table, priority }),
        0,
        `delete rule pref ${priority} lookup ${table}`,
      );
    } catch (e) {
      if (!isCode(e, 'ENOENT')) throw e;
    }
  }

  async delRoute(r: RouteSpec, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
    const what = `delete route ${describeRoute(r)}`;
    try {
      const msg = await this.routeMessage(r, what);
      // RT_SCOPE_NOWHERE on delete means "any scope" to the kernel.
      msg.data.scope = rt.RouteScope.NOWHERE;
      // Two routes to one destination through one device differ only by their source.
      if (r.src !== undefined) msg.attrs.prefsrc = ipToBytes(r.src);
      await this.request(rt.MessageType.DELROUTE, msg, 0, what);
    } catch (e) {
      if (opts.ignoreMissing && isCode(e, 'ESRCH', 'ENODEV')) return;
      throw e;
    }
  }

  /** MTU of the interface the kernel would use to reach `ip` (RTM_GETROUTE then the link's MTU; a route's own RTAX_MTU wins if set). */
  async mtuTowards(ip: string): Promise<number> {
    const what = `mtu towards ${ip}`;
    const m = await this.lookupRoute(ip, what);
    const metric = m.attrs.metrics?.mtu;
    if (metric && metric.length >= 4) {
      const mtu = readU32(metric, 0);
      if (mtu > 0) return mtu;
    }
    const oif = m.attrs.oif;
    if (oif === undefined) throw new NetlinkError('ENODEV', `${what}: ENODEV (route has no output interface)`);
    const links = await this.request(
      rt.MessageType.GETLINK,
      { kind: 'link', data: { index: oif }, attrs: {} },
      0,
      what,
    );
    const link = links.find(isLink);
    if (!link || link.attrs.mtu === undefined) throw new NetlinkError('ENODEV', `${what}: ENODEV (link ${oif})`);
    return link.attrs.mtu;
  }

  /** Source address the kernel would use to reach `ip`, or undefined (also when unreachable). */
  async sourceTowards(ip: string): Promise<string | undefined> {
    try {
      const m = await this.lookupRoute(ip, `source towards ${ip}`);
      return m.attrs.prefsrc ? bytesToIp(m.attrs.prefsrc) : undefined;
    } catch (e) {
      if (isCode(e, 'ENETUNREACH', 'EHOSTUNREACH', 'EINVAL')) return undefined;
      throw e;
    }
  }

  // ---- internals ----

  private async lookupRoute(ip: string, what: string): Promise<rt.RouteMessage> {
    const family = familyOf(ip);
    const msgs = await this.request(
      rt.MessageType.GETROUTE,
      { kind: 'route', data: { family, dstLen: family === AF_INET ? 32 : 128 }, attrs: { dst: ipToBytes(ip) } },
      0,
      what,
    );
    const m = msgs.find((x): x is rt.RouteMessage => x.kind === 'route');
    if (!m) throw new NetlinkError('ENETUNREACH', `${what}: ENETUNREACH (no route in reply)`);
    return m;
  }

  private async routeMessage(r: RouteSpec, what: string): Promise<Payload & { kind: 'route' }> {
    const oif = await this.indexOf(r.dev, what);
    let family: number;
    let dstLen = 0;
    const table = r.table ?? RT_TABLE_MAIN;
    const attrs: rt.RouteAttrs = { oif, table };
    if (r.dst === 'default') {
      family = r.via !== undefined ? familyOf(r.via) : AF_INET;
    } else {
      const c = parseCidr(r.dst);
      family = c.family;
      dstLen = c.prefixLen;
      attrs.dst = c.bytes;
    }
    if (r.via !== undefined) {
      if (familyOf(r.via) !== family)
        throw new NetlinkError('EINVAL', `${what}: EINVAL (address family of via differs from dst)`);
      attrs.gateway = ipToBytes(r.via);
    }
    const data: rt.Route = {
      family,
      dstLen,
      // A table id above 255 only fits RTA_TABLE; the header then says RT_TABLE_UNSPEC.
      table: table < 256 ? table : 0,
      protocol: rt.RouteProtocol.STATIC,
      scope: r.via !== undefined || family === AF_INET6 ? rt.RouteScope.UNIVERSE : rt.RouteScope.LINK,
      type: rt.RouteType.UNICAST,
    };
    return { kind: 'route', data, attrs };
  }

  private async indexOf(name: string, what: string): Promise<number> {
    const link = await this.getLink(name);
    if (!link) throw new NetlinkError('ENODEV', `${what}: ENODEV (no link ${name})`);
    return link.index;
  }

  private async setLink(index: number, attrs: ifla.LinkAttrs, what: string): Promise<void> {
    await this.request(rt.MessageType.SETLINK, { kind: 'link', data: { index }, attrs }, 0, what);
  }

  private async request(type: rt.MessageType, msg: Payload, flags: number, what: string): Promise<rt.Message[]> {
    const out = new AttrStream();
    if (msg.kind === 'link') rt.formatLinkMessage(msg, out);
    else if (msg.kind === 'address') rt.formatAddressMessage(msg, out);
    else rt.formatRouteMessage(msg, out);
    return this.send(type, out.bufs, flags, what);
  }

  /** A request whose body we encoded ourselves (neigh.ts); replies are acks only. */
  private async rawRequest(type: number, body: Buffer, flags: number, what: string): Promise<void> {
    await this.send(type, [body], flags, what);
  }

  /**
   * Requests on this socket go one at a time. The kernel runs one dump at a time per
   * netlink socket: a second one started while the first is still being read fails with
   * EBUSY. And the netlink package reads a dump's parts until a message of another
   * sequence arrives: the ack of a request sent while a dump was being read ends the
   * dump early ("Multipart message not terminated properly", seen at a daemon's start).
   */
  private send(type: number, bufs: Uint8Array[], flags: number, what: string): Promise<rt.Message[]> {
    return this.requests.run(() => this.sendNow(type, bufs, flags, what));
  }

  private async sendNow(type: number, bufs: Uint8Array[], flags: number, what: string): Promise<rt.Message[]> {
    if (this.closed) throw new NetlinkError('EBADF', `${what}: EBADF (netlink socket closed)`);
    let reply;
    try {
      [reply] = await this.sock.socket.request(type, bufs, { flags, checkError: false, timeout: REQUEST_TIMEOUT_MS });
    } catch (e) {
      const err = e as { code?: unknown; errno?: unknown; message?: string };
      if (typeof err.code === 'string')
        throw new NetlinkError(
          err.code,
          `${what}: ${err.code}`,
          typeof err.errno === 'number' ? err.errno : undefined,
          {
            cause: e,
          },
        );
      if (/timeout/i.test(err.message ?? ''))
        throw new NetlinkError('ETIMEDOUT', `${what}: ETIMEDOUT (no reply in ${REQUEST_TIMEOUT_MS} ms)`, undefined, {
          cause: e,
        });
      throw new NetlinkError('EIO', `${what}: ${err.message ?? String(e)}`, undefined, { cause: e });
    }
    const result: rt.Message[] = [];
    for (const m of reply) {
      if (m.type === NlMessageType.ERROR) {
        const { errno } = parseError(m.data, m.flags);
        if (errno !== 0) throw NetlinkError.fromErrno(what, -errno);
        continue;
      }
      if (m.type === NlMessageType.DONE || m.type === NlMessageType.NOOP) continue;
      result.push(rt.parseMessage(m.type, m.data));
    }
    return result;
  }
}

function isLink(m: rt.Message): m is rt.LinkMessage {
  return m.kind === 'link';
}

function toLinkInfo(m: rt.LinkMessage): LinkInfo {
  const info: LinkInfo = {
    index: m.data.index ?? 0,
    name: m.attrs.ifname ?? '',
    mtu: m.attrs.mtu ?? 0,
    mac: m.attrs.address ? formatMac(m.attrs.address) : '',
    up: m.data.flags?.up === true,
  };
  if (m.attrs.linkinfo) {
    const kind = decodeLinkInfo(m.attrs.linkinfo).kind;
    if (kind) info.kind = kind;
  }
  if (m.attrs.master) info.master = m.attrs.master;
  return info;
}

function describeRoute(r: RouteSpec): string {
  return `${r.dst}${r.via !== undefined ? ` via ${r.via}` : ''} dev ${r.dev}${r.table !== undefined ? ` table ${r.table}` : ''}`;
}
