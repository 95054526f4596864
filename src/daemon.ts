/**
 * The composition root: builds the pieces from the configuration, wires them together,
 * and tears them down. No logic of its own beyond order of construction.
 */
import * as fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { apiSocketPath, peerNameFilePath, type DaemonConfig } from './config';
import { ApiClient } from './api/client';
import type { Logger } from './log';
import type { DaemonControl } from './api/types';
import type { RouterStatus } from './router/status';
import { startApiServer, type ApiServer } from './api/server';
import { createMetricsRegistry } from './api/metrics';
import { registerDaemonMetrics } from './api/daemon-metrics';
import { Netlink } from './netlink';
import { Router, normalizeTarget } from './router/router';
import { CLOSE_REASON_KERNEL_PATH_KEPT } from './router/control-codec';
import { formatPeerName, parsePeerName, peerNameProblem, randomPeerName, type PeerName } from './net/peername';
import { SleeveDatapath, SLEEVE_OVERHEAD } from './datapath/sleeve/sleeve';
import { CompositeDatapath } from './datapath/composite';
import { FastDatapath, KEPT_STATE_FILE } from './datapath/fastdp/fastdp';
import type { Datapath } from './router/overlay';
import { NetworkSet } from './endpoint/networks';
import { NetworkCatalog, type NetworkRecord } from './endpoint/network-catalog';
import { NetworkIsolation, runNft } from './endpoint/isolation';
import { EndpointRegistry } from './endpoint/registry';
import { HostRoutes } from './endpoint/host-routes';
import { LinkLedger, writeFileAtomic } from './endpoint/ledger';
import { contains, formatCidr, parseCidr, parseIpv4 } from './net/ipv4';
import { loadSealer } from './crypto/seal';
import type { ConnectionSecurity } from './router/connection';
import { ClusterIpam } from './ipam/cluster';
import { MeshStore } from './store/mesh';
import { registerIpamMetrics } from './api/ipam-metrics';
import { DEFAULT_NETWORK, DEFAULT_DNS, DEFAULT_ADDRESS_RETENTION_SECONDS } from './config';
import { DnsService } from './dns/service';
import { startDockerSurface, type DockerSurface } from './docker';
import { DockerPlugin } from './docker/plugin';
import { DEFAULT_DOCKER_HOST, DEFAULT_DOCKER_PLUGIN_SOCKET } from './config';
import type { EndpointStatus, NetworkInfo } from './endpoint/types';
import { WeavetsError } from './errors';
import { PolicyService } from './policy/service';
import { parseTraffic } from './policy/evaluate';
import { PolicyEnforcer } from './policy/enforcer';
import type { CompileBridge } from './policy/nft';
import { Diagnostics } from './diagnostics';
import { FlowService } from './diagnostics/flows';
import { KernelFlowCounters } from './diagnostics/kernel-flows';

export interface RunningDaemon {
  control: DaemonControl;
  /** Resolves when the daemon has fully stopped. */
  stopped: Promise<void>;
}

const VERSION: string = (require('../package.json') as { version: string }).version;

/** The peer name: from --name, else the persisted one, else a new one persisted now. */
async function resolvePeerName(config: DaemonConfig): Promise<PeerName> {
  const file = peerNameFilePath(config.stateDir);
  if (config.name !== undefined) {
    const name = parsePeerName(config.name);
    // The CLI refuses these already; a daemon started some other way must too.
    const problem = peerNameProblem(name);
    if (problem !== undefined) throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--name ${config.name}: ${problem}`);
    await writeFileAtomic(file, formatPeerName(name) + '\n', 0o644);
    return name;
  }
  try {
    return parsePeerName((await fs.readFile(file, 'utf8')).trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const name = randomPeerName((n) => randomBytes(n));
  await writeFileAtomic(file, formatPeerName(name) + '\n', 0o644);
  return name;
}

/** Smallest MTU among this namespace's up, addressed, non-loopback links that are not ours. */
async function underlayMtu(netlink: Netlink, ours: Set<string>): Promise<number> {
  const links = await netlink.listLinks();
  const addressed = new Set((await netlink.listAddresses()).map((a) => a.index));
  let mtu = 0;
  for (const l of links) {
    if (!l.up || l.name === 'lo' || ours.has(l.name) || !addressed.has(l.index)) continue;
    mtu = mtu === 0 ? l.mtu : Math.min(mtu, l.mtu);
  }
  return mtu === 0 ? 1500 : mtu;
}

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  await fs.mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await fs.chmod(config.stateDir, 0o700);
  const name = await resolvePeerName(config);
  const range = parseCidr(config.ipallocRange);
  const netlink = Netlink.open();
  const ledger = await LinkLedger.load(config.stateDir);
  const mtu = config.mtu > 0 ? config.mtu : (await underlayMtu(netlink, new Set(ledger.list()))) - SLEEVE_OVERHEAD;
  if (mtu < 576)
    throw new WeavetsError(
      'EWEAVETS_BAD_REQUEST',
      `overlay MTU ${mtu} is too small; set --mtu or fix the underlay MTU`,
    );

  // Bad peer addresses stop the launch before anything is built.
  for (const peer of config.peers) {
    try {
      normalizeTarget(peer, config.port);
    } catch (err) {
      netlink.close();
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', (err as Error).message);
    }
  }

  // IPAM first: a range conflict or an unreachable store stops the launch before anything is built.
  let ipam: ClusterIpam;
  try {
    ipam = await ClusterIpam.start({
      stateDir: config.stateDir,
      ...(config.etcd ? { etcd: config.etcd } : {}),
      name: formatPeerName(name),
      nickname: config.nickname,
      range,
      port: config.port,
      ...(config.advertiseAddress !== undefined ? { advertiseAddress: config.advertiseAddress } : {}),
      ...(config.ipamLeaseTtl !== undefined ? { leaseTtlSeconds: config.ipamLeaseTtl } : {}),
      ...(config.ipamReclaimGrace !== undefined
        ? {
            reclaimGraceMs: config.ipamReclaimGrace * 1000,
            reclaimIntervalMs: Math.min(30_000, Math.max(1000, config.ipamReclaimGrace * 500)),
          }
        : {}),
      ...(config.ipallocBlock !== undefined ? { blockPrefix: config.ipallocBlock } : {}),
      ownLinks: ledger.list(),
      log: log.child('ipam'),
    });
  } catch (err) {
    netlink.close();
    throw err;
  }

  const sealer = loadSealer();
  const trusted = config.trustedSubnets.map((c) => parseCidr(c));
  const security: ConnectionSecurity = {
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
  const router = new Router({
    name,
    nickname: config.nickname,
    bindAddress: config.bindAddress,
    port: config.port,
    log: log.child('router'),
    security,
  });
  try {
    await router.listen();
  } catch (err) {
    netlink.close();
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `cannot listen on TCP ${config.bindAddress}:${config.port}: ${(err as Error).message}`,
    );
  }
  // --datapath auto|fastdp: the sleeve and the kernel fast path behind one Datapath.
  const composite = config.datapath === 'sleeve' ? undefined : new CompositeDatapath(router, log.child('datapath'));
  const flows =
    config.flows === false
      ? undefined
      : new FlowService((err) => log.warn('flow counters unreadable', { error: err.message }));
  let sleeve: SleeveDatapath;
  try {
    sleeve = SleeveDatapath.open({
      self: name,
      bindAddress: config.bindAddress,
      port: config.port,
      routes: router.routes,
      netlink,
      events: composite ?? router,
      log: log.child('sleeve'),
      sealer,
      ...(composite ? { kernelPeers: composite.kernelPeers } : {}),
      ...(flows ? { flows: flows.counter } : {}),
    });
  } catch (err) {
    await router.stop();
    netlink.close();
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `cannot bind UDP ${config.bindAddress}:${config.port}: ${(err as Error).message}`,
    );
  }
  let datapath: Datapath = sleeve;
  if (composite) {
    let fast: FastDatapath | undefined;
    if (config.datapath === 'auto' && config.password !== undefined) {
      // With a password, auto keeps every byte on the sleeve; trusted-subnet peers get the
      // kernel path only with an explicit --datapath fastdp (docs/FASTDP.md).
      log.info(
        'encryption on: the sleeve carries every peer (--datapath fastdp enables the kernel path for trusted subnets)',
      );
    } else {
      try {
        fast = await FastDatapath.open({
          self: name,
          netlink,
          log: log.child('fastdp'),
          events: composite,
          recordLink: (l) => ledger.record(l),
          keptStatePath: path.join(config.stateDir, KEPT_STATE_FILE),
        });
      } catch (err) {
        if (config.datapath === 'fastdp') {
          await sleeve.close();
          await router.stop();
          netlink.close();
          throw new WeavetsError(
            'EWEAVETS_INTERNAL',
            `--datapath fastdp: cannot set up kernel VXLAN: ${(err as Error).message}`,
          );
        }
        log.warn('kernel fast path unavailable; the sleeve carries every peer', { error: (err as Error).message });
      }
    }
    composite.attach(sleeve, fast);
    datapath = composite;
    if (fast !== undefined && flows !== undefined) {
      // Frames the kernel carries are counted by the kernel (docs/DIAGNOSTICS.md).
      try {
        flows.setKernelSource(await KernelFlowCounters.open());
      } catch (err) {
        log.warn('no kernel flow counters: `weavets flows` will miss fastdp traffic', {
          error: (err as Error).message,
        });
      }
    }
  }
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

  // Networks are cluster objects in the store; the allocator takes each one's subnet from them.
  let catalog: NetworkCatalog;
  try {
    catalog = await NetworkCatalog.open({
      store: ipam.store,
      range,
      blockPrefix: ipam.allocator.blockPrefix,
      log: log.child('networks'),
    });
    await ipam.allocator.useSubnets(catalog);
  } catch (err) {
    await datapath.close();
    await router.stop();
    await ipam.close(false);
    netlink.close();
    throw err;
  }
  const networks = new NetworkSet(
    netlink,
    datapath,
    ledger,
    catalog,
    new NetworkIsolation(runNft, '/proc/sys', (m, f) => log.warn(m, f)),
    mtu,
  );
  const hostRoutes = new HostRoutes(netlink, range, () => networks.refreshIsolation());
  const retentionMs = (config.addressRetention ?? DEFAULT_ADDRESS_RETENTION_SECONDS) * 1000;
  const endpoints = new EndpointRegistry(
    config.stateDir,
    netlink,
    networks,
    ipam.allocator,
    ledger,
    hostRoutes,
    log.child('endpoints'),
    retentionMs,
  );
  const networkInfo = (r: NetworkRecord): NetworkInfo => ({ ...r, local: networks.get(r.name) !== undefined });
  // DNS listens on the host's address on each network bridge, so with DNS on the host is
  // exposed on every network it carries (docs/DNS.md). Started after endpoints.restore().
  const dnsConfig = config.dns ?? DEFAULT_DNS;
  let dns: DnsService | undefined;
  let docker: DockerSurface | undefined;
  let policy: PolicyService | undefined;
  const enforcer = new PolicyEnforcer(log.child('policy'));
  // Policy follows every change of the endpoint set: attach, detach, Docker's plug, CNI.
  endpoints.onChange(() => policy?.endpointsChanged());
  const policyBridges = (): CompileBridge[] =>
    networks.list().map((n) => {
      const ip = endpoints
        .exposures()
        .find((e) => e.network === n.name)
        ?.address.split('/')[0];
      const b: CompileBridge = { network: n.name, id: n.id, bridge: n.bridge };
      if (ip !== undefined && dns?.listensOn(ip)) b.resolver = { ip, port: dnsConfig.port };
      return b;
    });
  const dnsRelisten = async (): Promise<void> => {
    await dns?.listenOn(endpoints.exposures().map((e) => e.address.split('/')[0]!));
  };
  const dnsExpose = async (network: string): Promise<void> => {
    try {
      await endpoints.expose(network, undefined);
    } catch (err) {
      log.warn('cannot give the host an address for DNS on a network', { network, error: (err as Error).message });
    }
  };
  const attachWithDns = async (ep: EndpointStatus): Promise<EndpointStatus> => {
    if (!dns) return ep;
    await dnsExpose(ep.network);
    await dnsRelisten();
    dns.endpointAttached(ep);
    const ex = endpoints.exposures().find((e) => e.network === ep.network);
    const resolver = ex === undefined ? undefined : dns.resolverFor(ex.address.split('/')[0]!);
    return resolver === undefined ? ep : { ...ep, dns: resolver };
  };
  const diagnostics = new Diagnostics({
    router,
    datapath,
    nickname: config.nickname,
    endpoints: () => endpoints.list(),
    networkIdOf: (n) => networks.get(n)?.id,
    networkNameOf: (id) => networks.list().find((n) => n.id === id)?.name,
    dnsAddresses: (n) => {
      try {
        const r = dns?.lookup(n);
        return r !== undefined && 'addresses' in r ? r.addresses : [];
      } catch {
        return []; // not a valid DNS name: an id or an address, matched elsewhere
      }
    },
    // Once the policy service runs, trace asks it; before that (and with no policies) all is allowed.
    verdict: (from, to, traffic) => {
      if (policy === undefined) return { verdict: 'allow', policy: null, reason: 'no policies' };
      const v = policy.verdictFor(from.network, from.address, to.address, parseTraffic(traffic));
      const decided = v.allowed
        ? [v.egress.rule, v.ingress.rule].filter((r): r is string => r !== undefined)
        : [v.egress, v.ingress].filter((d) => !d.allowed).flatMap((d) => d.isolatedBy);
      return {
        verdict: v.allowed ? 'allow' : 'deny',
        policy: decided.length === 0 ? null : decided.join(', '),
        reason: v.reason,
      };
    },
    flows,
    log: log.child('diagnostics'),
  });
  const registry = createMetricsRegistry();
  registerDaemonMetrics(registry, router, datapath);
  diagnostics.registerMetrics(registry);
  ipam.allocator.observe(registerIpamMetrics(registry, ipam));

  let ready = false;
  let api: ApiServer | undefined;
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  const shutdown = (removeState: boolean): Promise<void> => {
    stopping ??= (async () => {
      ready = false;
      log.info(removeState ? 'resetting: stopping and removing links and state' : 'stopping');
      await diagnostics.close();
      // A stop without reset leaves the kernel fast path carrying the containers' traffic
      // (before the router drops its peers, which would unprogram it) and tells the peers,
      // which keep their entries for us until we are back.
      if (!removeState) await datapath.retainKernelPath?.();
      await router.stop(removeState ? undefined : CLOSE_REASON_KERNEL_PATH_KEPT);
      // The policy tables stay in force on a stop (nothing fails open); reset removes them.
      await policy?.close();
      if (removeState) await enforcer.remove(networks.list().map((n) => n.bridge));
      await docker?.close(removeState);
      await dns?.close(removeState);
      if (removeState) await endpoints.removeAll();
      await networks.close(removeState);
      await datapath.close();
      await catalog.close();
      await ipam.close(removeState);
      if (removeState) {
        for (const link of ledger.list())
          await netlink.deleteLink(link, { ignoreMissing: true }).catch(() => undefined);
        await hostRoutes
          .uninstall()
          .catch((err: unknown) =>
            log.warn('could not remove the overlay routing rule', { error: (err as Error).message }),
          );
      }
      await api?.close();
      netlink.close();
      if (removeState) await fs.rm(config.stateDir, { recursive: true, force: true });
      log.info('stopped');
      resolveStopped();
    })();
    return stopping;
  };

  const control: DaemonControl = {
    status(): RouterStatus {
      const conns = router.connectionStatus();
      return {
        version: VERSION,
        name: formatPeerName(name),
        nickname: config.nickname,
        port: config.port,
        encryption: config.password !== undefined,
        datapath: config.datapath,
        ipallocRange: formatCidr(range),
        peers: router.topology.entries().length,
        connections: { established: conns.filter((c) => c.state === 'established').length, total: conns.length },
        targets: router.targetStatus().length,
        networks: networks
          .list()
          .map((n) => ({ name: n.name, id: n.id, subnet: formatCidr(n.subnet), bridge: n.bridge, mtu: n.mtu })),
      };
    },
    connections: () => router.connectionStatus(),
    peers: () => router.peerStatus(),
    targets: () => router.targetStatus(),
    connect(addresses) {
      try {
        router.connect(addresses, 'connect');
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', (err as Error).message);
      }
    },
    forget(addresses) {
      try {
        router.forget(addresses);
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', (err as Error).message);
      }
    },
    attach: async (req) => {
      const ep = await attachWithDns(await endpoints.attach(req));
      // Answer once the new port is guarded and counted in every selector here.
      await policy?.settled();
      return ep;
    },
    detach: async (id, opts) => {
      await endpoints.detach(id, opts);
      dns?.endpointDetached(id);
      await policy?.settled();
    },
    networks: {
      list: () => catalog.list().map(networkInfo),
      create: async (req) => networkInfo(await catalog.create(req)),
      remove: async (name) => {
        const rec = await catalog.remove(name, async (r) => {
          const inUse = (await ipam.allocator.allocationsOn(r.name)).filter(
            (a) => !a.id.startsWith('host@') && a.retainedUntil === undefined,
          );
          if (inUse.length > 0) {
            const hosts = ipam.hostNames();
            const where = inUse.map((a) => `${a.id} (${a.address}) on host ${hosts.get(a.host) ?? a.host}`).join(', ');
            throw new WeavetsError(
              'EWEAVETS_CONFLICT',
              `network ${r.name} is in use by ${inUse.length} endpoint(s): ${where}; detach them first`,
            );
          }
        });
        await ipam.allocator.purgeNetwork(rec.name);
        return networkInfo(rec);
      },
    },
    endpoints: () => endpoints.list(),
    checkEndpoint: (id) => endpoints.check(id),
    async cniExec(env, stdin) {
      // Loaded on first use: most daemons never see a CNI invocation.
      const { runPlugin } = await import('./cni/main');
      return runPlugin(env, stdin, () => new ApiClient(apiSocketPath(config.stateDir), { timeoutMs: 30_000 }));
    },
    expose: async (network, ip) => {
      const r = await endpoints.expose(network, ip);
      await dnsRelisten();
      return r;
    },
    hide: async (network) => {
      const r = await endpoints.hide(network);
      await dnsRelisten();
      return r;
    },
    metrics: () => registry.metrics(),
    ready: () => ready,
    shutdown,
    ipam,
    diagnostics: {
      health: () => diagnostics.healthStatus(),
      trace: (from, to, traffic) => diagnostics.trace(from, to, traffic),
      mesh: () => diagnostics.mesh(),
      flows: () => diagnostics.flows(),
    },
  };

  // A network removed anywhere goes from this host too: its host address, then its bridge.
  catalog.onChange((e) => {
    dns?.networksChanged();
    if (e.type !== 'removed' || networks.get(e.network.name) === undefined) return;
    void (async () => {
      await endpoints.hide(e.network.name);
      await networks.remove(e.network.name);
      ipam.allocator.forgetNetwork(e.network.name);
      await dnsRelisten();
    })().catch((err: unknown) =>
      log.warn('could not remove a removed network here', { network: e.network.name, error: (err as Error).message }),
    );
  });

  try {
    await hostRoutes.install();
    await networks.ensure(DEFAULT_NETWORK);
    await endpoints.restore();
    if (dnsConfig.enabled) {
      dns = await DnsService.start({
        store: ipam.store,
        self: formatPeerName(name),
        leaseTtlSeconds: ipam.leaseTtlSeconds,
        stateDir: config.stateDir,
        range,
        settings: {
          port: dnsConfig.port,
          extraListen: dnsConfig.extraListen.map((a) => ({
            addr: a.slice(0, a.lastIndexOf(':')),
            port: Number(a.slice(a.lastIndexOf(':') + 1)),
          })),
          domain: dnsConfig.domain.toLowerCase().replace(/\.$/, ''),
          ttl: dnsConfig.ttl,
          resolvConf: dnsConfig.resolvConf,
        },
        // A container sees the names of its own network only (and anything outside the range).
        visibility: (listenAddr) => {
          const ex = endpoints.exposures().find((e) => e.address.split('/')[0] === listenAddr);
          const net = ex === undefined ? undefined : networks.get(ex.network);
          // A Docker segment's containers are addressed from the whole range (docs/DOCKER.md).
          if (net === undefined || net.sources !== undefined) return undefined;
          const holes = catalog
            .list()
            .filter((r) => r.name !== net.name)
            .map((r) => parseCidr(r.subnet))
            .filter((c) => c.prefix > net.subnet.prefix && contains(net.subnet, c.base));
          return (ip) => {
            const n = parseIpv4(ip);
            if (!contains(range, n)) return true;
            return contains(net.subnet, n) && !holes.some((h) => contains(h, n));
          };
        },
        log: log.child('dns'),
      });
      control.dns = dns;
      for (const net of networks.list()) await dnsExpose(net.name);
      await dnsRelisten();
      dns.restore(endpoints.list());
    }
    enforcer.adopt(networks.list().map((n) => n.bridge));
    policy = await PolicyService.start({
      store: ipam.store,
      self: formatPeerName(name),
      nickname: config.nickname || os.hostname(),
      leaseTtlSeconds: ipam.leaseTtlSeconds,
      dryRun: config.policyDryRun === true,
      enforcer,
      localEndpoints: () => endpoints.list(),
      bridges: policyBridges,
      metrics: registry,
      log: log.child('policy'),
    });
    const policyService = policy;
    control.policy = {
      // A policy may name any network of the cluster's catalog (issue 12), not only those with a bridge here.
      apply: (documents) =>
        policyService.apply(
          documents,
          [...new Set([DEFAULT_NETWORK, ...catalog.list().map((n) => n.name)])],
          DEFAULT_NETWORK,
        ),
      list: () => policyService.list(),
      show: (n) => policyService.show(n),
      remove: (names) => policyService.remove(names),
      drops: () => policyService.drops(),
      status: () => policyService.status(),
      endpoints: () => policyService.endpoints(),
    };
    const dockerSocket = config.dockerPluginSocket ?? DEFAULT_DOCKER_PLUGIN_SOCKET;
    if (dockerSocket !== '') {
      docker = await startDockerSurface({
        socketPath: dockerSocket,
        ...(config.dockerDriverName !== undefined ? { driverName: config.dockerDriverName } : {}),
        dockerHost: config.dockerHost ?? DEFAULT_DOCKER_HOST,
        stateDir: config.stateDir,
        range,
        allocator: ipam.allocator,
        endpoints,
        bridges: {
          ensure: async (segment) => {
            const net = await networks.ensure(segment);
            await networks.acceptRangeSources(segment, range);
            if (dns) {
              await dnsExpose(segment);
              await dnsRelisten();
              dns.networksChanged();
            }
            return net.bridge;
          },
          addAddress: (bridge, cidr) => hostRoutes.addAddress(bridge, cidr),
          delAddress: (bridge, cidr) => hostRoutes.delAddress(bridge, cidr),
          routeTo: (bridge, ip) => hostRoutes.routeHost(bridge, ip),
          unroute: (bridge, ip) => hostRoutes.unrouteHost(bridge, ip),
        },
        ...(dns
          ? { names: (owner: string, records: { name: string; ip: string }[]) => dns?.setOwned(owner, records) }
          : {}),
        // Container labels for policy: known a moment after the container started (docs/POLICY.md).
        labels: (endpointId: string, labels: Record<string, string>, containerName: string | undefined) => {
          const have = endpoints.list().find((e) => e.id === endpointId);
          if (
            !have ||
            (JSON.stringify(have.labels ?? {}) === JSON.stringify(labels) &&
              (containerName === undefined || have.name === containerName))
          )
            return;
          endpoints
            .relabel(endpointId, labels, containerName)
            .catch((err: unknown) =>
              log.warn('cannot label a Docker endpoint', { id: endpointId, error: (err as Error).message }),
            );
        },
        // Containers' external DNS to weavets DNS on the segment's bridge (docs/DOCKER.md, DNS).
        ...(dns && config.dockerDnsRedirect !== false
          ? {
              dnsRedirect: {
                port: dnsConfig.port,
                bridgeOf: (segment: string) => networks.get(segment)?.bridge,
                addressOn: (segment: string) => {
                  const ip = endpoints
                    .exposures()
                    .find((e) => e.network === segment)
                    ?.address.split('/')[0];
                  return ip !== undefined && dns?.listensOn(ip) ? ip : undefined;
                },
              },
            }
          : {}),
        log: log.child('docker'),
      });
      // Docker asks for a segment's bridge (and so its range sources) only when it creates
      // a network or an endpoint. After a restart the segments its running containers use
      // must accept range sources again, or the isolation table drops them as spoofed.
      for (const n of docker.plugin.networks()) {
        if (n.segment !== undefined && networks.get(n.segment) !== undefined)
          await networks.acceptRangeSources(n.segment, range);
      }
    }
    api = await startApiServer({
      socketPath: apiSocketPath(config.stateDir),
      httpAddr: config.httpAddr,
      control,
      log: log.child('api'),
    });
  } catch (err) {
    await shutdown(false);
    throw err;
  }
  // Hosts registered in the store are dialled like neighbours' peers.
  ipam.onPeers((addresses) => router.connect(addresses, 'discovered'));
  // Addresses this host holds that nothing here uses are released after a grace period
  // (src/ipam/reconcile.ts). Every claimant has restored its state by now; without the
  // Docker surface, the handles a previous run recorded in docker.json still count.
  const storedDockerHandles = docker ? [] : DockerPlugin.storedAddressHandles(config.stateDir);
  ipam.startReconciler(() => [
    ...endpoints.addressClaims(),
    ...(docker ? docker.plugin.addressHandles() : storedDockerHandles),
  ]);
  ready = true;
  log.info('weavets ready', {
    name: formatPeerName(name),
    nickname: config.nickname || os.hostname(),
    port: config.port,
    store: ipam.store.kind,
    mtu,
    encryption:
      config.password !== undefined
        ? `on (${sealer.name})`
        : 'off: traffic between peers is NOT encrypted (no --password-file)',
  });
  return { control, stopped };
}
