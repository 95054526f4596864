/** The diagnostics component: health gossip, trace probes and flow counters over the mesh (docs/DIAGNOSTICS.md). */
import type { Registry } from '../metrics/registry';
import type { Logger } from '../log';
import type { Router } from '../router/router';
import type { Datapath } from '../router/overlay';
import type { NetworkSet } from '../endpoint/networks';
import type { EndpointRegistry } from '../endpoint/registry';
import type { PolicyService } from '../policy/service';
import { parseTraffic } from '../policy/evaluate';
import { Diagnostics } from '../diagnostics';
import type { FlowService } from '../diagnostics/flows';
import { component } from './component';
import type { DnsExposure } from './dns-exposure';

export interface DiagnosticsDeps {
  router: Router;
  datapath: Datapath;
  nickname: string;
  networks: NetworkSet;
  endpoints: EndpointRegistry;
  exposure: DnsExposure | undefined;
  policy: PolicyService;
  flows: FlowService | undefined;
  metrics: Registry;
  log: Logger;
}

export function diagnosticsComponent(d: DiagnosticsDeps) {
  const { networks, exposure, policy } = d;
  return component(
    'diagnostics',
    () => {
      const diagnostics = new Diagnostics({
        router: d.router,
        datapath: d.datapath,
        nickname: d.nickname,
        endpoints: () => d.endpoints.list(),
        networkIdOf: (n) => networks.get(n)?.id,
        networkNameOf: (id) => networks.list().find((n) => n.id === id)?.name,
        dnsAddresses: (n) => {
          try {
            const r = exposure?.dns.lookup(n);
            return r !== undefined && 'addresses' in r ? r.addresses : [];
          } catch {
            return []; // not a valid DNS name: an id or an address, matched elsewhere
          }
        },
        verdict: (from, to, traffic) => {
          const v = policy.verdictFor(from.network, from.address, to.address, parseTraffic(traffic));
          const decided = v.allowed
            ? [v.egress.rule, v.ingress.rule].filter((r): r is string => r !== undefined)
            : [v.egress, v.ingress].filter((x) => !x.allowed).flatMap((x) => x.isolatedBy);
          return {
            verdict: v.allowed ? 'allow' : 'deny',
            policy: decided.length === 0 ? null : decided.join(', '),
            reason: v.reason,
          };
        },
        flows: d.flows,
        log: d.log.child('diagnostics'),
      });
      diagnostics.registerMetrics(d.metrics);
      return diagnostics;
    },
    (diagnostics) => diagnostics.close(),
  );
}
