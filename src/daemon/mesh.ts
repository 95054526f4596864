/**
 * The mesh components: the router (control connections), the data paths (the sleeve and
 * the kernel fast path behind one Datapath), and the peering that dials the launch peers
 * and, on stop, tells them whether the kernel path stays.
 */
import type { DaemonConfig } from '../config';
import type { Logger } from '../log';
import type { Netlink } from '../netlink';
import { Router } from '../router/router';
import { CLOSE_REASON_KERNEL_PATH_KEPT } from '../router/control-codec';
import type { ConnectionSecurity } from '../router/connection';
import type { PeerName } from '../net/peername';
import { SleeveDatapath } from '../datapath/sleeve/sleeve';
import { CompositeDatapath } from '../datapath/composite';
import { FastDatapath } from '../datapath/fastdp/fastdp';
import { StateDir } from '../state/state-dir';
import type { Datapath, RouteTable } from '../router/overlay';
import type { Topology } from '../router/topology';
import type { PathEventRelay } from '../router/path-events';
import type { LinkLedger } from '../endpoint/ledger';
import { contains, parseCidr, parseIpv4 } from '../net/ipv4';
import type { Sealer } from '../crypto/seal';
import type { ClusterIpam } from '../ipam/cluster';
import { MeshStore } from '../store/mesh';
import type { FlowService } from '../diagnostics/flows';
import { KernelFlowCounters } from '../diagnostics/kernel-flows';
import { WeavetsError } from '../errors';
import { component } from './component';

/** Who may talk to us and how: the password, the sealer, and the trusted subnets. */
function connectionSecurity(config: DaemonConfig, sealer: Sealer): ConnectionSecurity {
  const trusted = config.trustedSubnets.map((c) => parseCidr(c));
  return {
    password: config.password,
    sealer,
    trusts: (ip) => {
      try {
        const n = parseIpv4(ip);
        return trusted.some((c) => contains(c, n));
      } catch {
        return false;
      }
    },
  };
}

export interface RouterDeps {
  config: DaemonConfig;
  topology: Topology;
  datapath: Datapath;
  pathEvents: PathEventRelay;
  store: ClusterIpam['store'];
  sealer: Sealer;
  log: Logger;
}

/**
 * The router listening on TCP, built on the routes and the data path opened before it;
 * with the mesh store (no etcd) it carries the store's messages. A second stop (after
 * the peering's) finds it stopped already.
 */
export function routerComponent(deps: RouterDeps) {
  const { config, log } = deps;
  return component(
    'router',
    async () => {
      const router = new Router({
        bindAddress: config.bindAddress,
        port: config.port,
        log: log.child('router'),
        security: connectionSecurity(config, deps.sealer),
        topology: deps.topology,
        datapath: { path: deps.datapath, events: deps.pathEvents },
        ...(deps.store instanceof MeshStore ? { storeGossip: deps.store } : {}),
      });
      try {
        await router.listen();
      } catch (err) {
        await router.stop();
        throw new WeavetsError(
          'EWEAVETS_INTERNAL',
          `cannot listen on TCP ${config.bindAddress}:${config.port}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      return router;
    },
    (router) => router.stop(),
  );
}

export interface DatapathDeps {
  config: DaemonConfig;
  name: PeerName;
  /** The routes the sleeve forwards by. */
  routes: RouteTable;
  /** Where the data paths report a path to a peer coming up or going down; the router subscribes. */
  pathEvents: PathEventRelay;
  netlink: Netlink;
  ledger: LinkLedger;
  sealer: Sealer;
  flows: FlowService | undefined;
  log: Logger;
}

/** --datapath sleeve: the sleeve alone; auto|fastdp: the sleeve and the kernel fast path behind one Datapath. */
export function datapathComponent(deps: DatapathDeps) {
  return component(
    'datapath',
    async (): Promise<Datapath> => {
      const { config, log } = deps;
      const composite =
        config.datapath === 'sleeve' ? undefined : new CompositeDatapath(deps.pathEvents, log.child('datapath'));
      const sleeve = openSleeve(deps, composite);
      if (composite === undefined) return sleeve;
      let fast: FastDatapath | undefined;
      try {
        fast = await openFastPath(deps, composite);
      } catch (err) {
        await sleeve.close();
        throw err;
      }
      composite.attach(sleeve, fast);
      if (fast !== undefined && deps.flows !== undefined) await countKernelFlows(deps.flows, log);
      return composite;
    },
    (datapath) => datapath.close(),
  );
}

function openSleeve(deps: DatapathDeps, composite: CompositeDatapath | undefined): SleeveDatapath {
  const { config } = deps;
  try {
    return SleeveDatapath.open({
      self: deps.name,
      bindAddress: config.bindAddress,
      port: config.port,
      routes: deps.routes,
      netlink: deps.netlink,
      events: composite ?? deps.pathEvents,
      log: deps.log.child('sleeve'),
      sealer: deps.sealer,
      ...(composite ? { kernelPeers: composite.kernelPeers } : {}),
      ...(deps.flows ? { flows: deps.flows.counter } : {}),
      express: config.sleeveExpress,
      expressThread: config.sleeveThread,
    });
  } catch (err) {
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `cannot bind UDP ${config.bindAddress}:${config.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The kernel VXLAN path, or undefined where auto falls back to the sleeve; throws only for --datapath fastdp. */
async function openFastPath(deps: DatapathDeps, composite: CompositeDatapath): Promise<FastDatapath | undefined> {
  const { config, log } = deps;
  if (config.datapath === 'auto' && config.password !== undefined) {
    // With a password, auto keeps every byte on the sleeve; trusted-subnet peers get the
    // kernel path only with an explicit --datapath fastdp (docs/FASTDP.md).
    log.info(
      'encryption on: the sleeve carries every peer (--datapath fastdp enables the kernel path for trusted subnets)',
    );
    return undefined;
  }
  try {
    return await FastDatapath.open({
      self: deps.name,
      netlink: deps.netlink,
      log: log.child('fastdp'),
      events: composite,
      recordLink: (l) => deps.ledger.record(l),
      keptStatePath: new StateDir(config.stateDir).fastdpKept,
    });
  } catch (err) {
    if (config.datapath === 'fastdp') {
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `--datapath fastdp: cannot set up kernel VXLAN: ${(err as Error).message}`,
        { cause: err },
      );
    }
    log.warn('kernel fast path unavailable; the sleeve carries every peer', { error: (err as Error).message });
    return undefined;
  }
}

/** Frames the kernel carries are counted by the kernel (docs/DIAGNOSTICS.md). */
async function countKernelFlows(flows: FlowService, log: Logger): Promise<void> {
  try {
    flows.setKernelSource(await KernelFlowCounters.open());
  } catch (err) {
    log.warn('no kernel flow counters: `weavets flows` will miss fastdp traffic', {
      error: (err as Error).message,
    });
  }
}

/**
 * The mesh store on the control connections, and the launch peers dialled. Stopping drops the peers: a stop without reset first leaves the kernel
 * fast path carrying the containers' traffic (before the router drops its peers, which
 * would unprogram it) and tells the peers, which keep their entries for us until we are back.
 */
export function peeringComponent(config: DaemonConfig, router: Router, datapath: Datapath, ipam: ClusterIpam) {
  return component(
    'peering',
    () => {
      // Without etcd the store rides the control connections. The launch peers are dialled
      // now, before anything allocates (the host's DNS address): the store's claims wait
      // until those peers are reached (or 10 s), so hosts launched together see each other
      // before they take blocks.
      if (ipam.store instanceof MeshStore) {
        const mesh = ipam.store;
        mesh.attach({
          neighbours: () => router.storeNeighbours(),
          send: (peer, payload) => router.sendStore(peer, payload),
          reachable: () => router.controlReachable(),
          targetsConnected: () => router.targetsReached(config.peers),
        });
      }
      router.connect(config.peers, 'launch');
    },
    async (_, mode) => {
      if (mode === 'stop') await datapath.retainKernelPath?.();
      await router.stop(mode === 'reset' ? undefined : CLOSE_REASON_KERNEL_PATH_KEPT);
    },
  );
}
