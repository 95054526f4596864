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
import type { Datapath } from '../router/overlay';
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

/** The router listening on TCP; a second stop (after the peering's) finds it stopped already. */
export function routerComponent(config: DaemonConfig, name: PeerName, sealer: Sealer, log: Logger) {
  return component(
    'router',
    async () => {
      const router = new Router({
        name,
        nickname: config.nickname,
        bindAddress: config.bindAddress,
        port: config.port,
        log: log.child('router'),
        security: connectionSecurity(config, sealer),
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
  router: Router;
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
      const { config, router, log } = deps;
      const composite = config.datapath === 'sleeve' ? undefined : new CompositeDatapath(router, log.child('datapath'));
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
  const { config, router } = deps;
  try {
    return SleeveDatapath.open({
      self: deps.name,
      bindAddress: config.bindAddress,
      port: config.port,
      routes: router.routes,
      netlink: deps.netlink,
      events: composite ?? router,
      log: deps.log.child('sleeve'),
      sealer: deps.sealer,
      ...(composite ? { kernelPeers: composite.kernelPeers } : {}),
      ...(deps.flows ? { flows: deps.flows.counter } : {}),
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
 * The router on its data path, the mesh store on the control connections, and the launch
 * peers dialled. Stopping drops the peers: a stop without reset first leaves the kernel
 * fast path carrying the containers' traffic (before the router drops its peers, which
 * would unprogram it) and tells the peers, which keep their entries for us until we are back.
 */
export function peeringComponent(config: DaemonConfig, router: Router, datapath: Datapath, ipam: ClusterIpam) {
  return component(
    'peering',
    () => {
      router.setDatapath(datapath);
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
        router.setStoreGossip(mesh);
      }
      router.connect(config.peers, 'launch');
    },
    async (_, mode) => {
      if (mode === 'stop') await datapath.retainKernelPath?.();
      await router.stop(mode === 'reset' ? undefined : CLOSE_REASON_KERNEL_PATH_KEPT);
    },
  );
}
