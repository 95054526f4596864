/**
 * What the API server calls into: the daemon's control surface, one interface per area.
 * The shapes these methods take and answer belong to the modules that produce them
 * (router/status.ts, endpoint/types.ts, ipam/status.ts, dns/status.ts, policy/,
 * diagnostics/); the server and the CLI import them from there.
 */

import type { FlowsStatus } from '../diagnostics/flows';
import type { HealthStatus, MeshStatus, TraceResult } from '../diagnostics';
import type { DnsLookupResult, DnsRecordView, DnsStatus } from '../dns/status';
import type {
  AttachRequest,
  EndpointCheck,
  EndpointStatus,
  ExposeResult,
  NetworkCreateRequest,
  NetworkInfo,
} from '../endpoint/types';
import type { IpamControl } from '../ipam/status';
import type { ApplyResult } from '../policy/book';
import type { PolicyDrop } from '../policy/drops';
import type { StoredPolicy } from '../policy/model';
import type { PolicyEndpoint } from '../policy/nft';
import type { PolicyStatus } from '../policy/service';
import type { ConnectionStatus, PeerStatus, RouterStatus, TargetStatus } from '../router/status';

/** What the API server needs from the daemon. Every method may throw a WeavetsError. */
export interface DaemonControl {
  status(): RouterStatus;
  connections(): ConnectionStatus[];
  peers(): PeerStatus[];
  targets(): TargetStatus[];
  connect(addresses: string[]): void;
  forget(addresses: string[]): void;
  attach(req: AttachRequest): Promise<EndpointStatus>;
  /**
   * `release`: free the address at once instead of reserving it for the id. `ifname`:
   * release what (id, ifname) holds even when no endpoint is recorded (CNI DEL).
   */
  detach(id: string, opts?: { release?: boolean; ifname?: string }): Promise<void>;
  endpoints(): EndpointStatus[];
  /** Inspect an endpoint's links, addresses and routes (CNI CHECK); NOT_FOUND if unknown. */
  checkEndpoint?(id: string): Promise<EndpointCheck>;
  /**
   * Run one CNI plugin invocation inside the daemon (the C fast-path shim forwards here):
   * the CNI_* environment and the configuration; answers the plugin's exit status and stdout.
   */
  cniExec?(env: Record<string, string>, stdin: string): Promise<{ status: number; stdout: string }>;
  expose(network: string | undefined, ip: string | undefined): Promise<ExposeResult>;
  hide(network: string | undefined): Promise<ExposeResult | undefined>;
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  ready(): boolean;
  /** Stop the daemon; `removeState` also removes bridges, links and the state dir. */
  shutdown(removeState: boolean): Promise<void>;
  /** Address management (absent in test doubles: the routes answer 404). */
  ipam?: IpamControl;
  /** The cluster's networks (absent in test doubles: the routes answer 404). */
  networks?: NetworkControl;
  /** Embedded DNS (absent with --no-dns: the routes answer 404). */
  dns?: DnsControl;
  /** Policy between workloads (absent in test doubles: the routes answer 404). */
  policy?: PolicyControl;
  /** Health matrix, trace, flows and the status page's data (absent in test doubles: 404). */
  diagnostics?: DiagnosticsControl;
}

export interface NetworkControl {
  list(): NetworkInfo[];
  create(req: NetworkCreateRequest): Promise<NetworkInfo>;
  /** Refused (EWEAVETS_CONFLICT) while endpoints exist, naming hosts and ids. */
  remove(name: string): Promise<NetworkInfo>;
}

export interface DiagnosticsControl {
  health(): HealthStatus;
  /** `traffic`: what the policy verdict is asked about, "icmp" (the default) or "tcp/5432". */
  trace(from: string, to: string, traffic?: string): Promise<TraceResult>;
  mesh(): MeshStatus;
  flows(): Promise<FlowsStatus>;
}

/** `weavets policy ...` (docs/POLICY.md). */
export interface PolicyControl {
  /** Validate and store policy documents, all or none; refused with the field's path. */
  apply(documents: unknown[]): Promise<ApplyResult>;
  list(): StoredPolicy[];
  show(name: string): StoredPolicy;
  /** Remove policies in one transaction, all or none. */
  remove(names: string[]): Promise<{ generation: number; removed: StoredPolicy[] }>;
  drops(): PolicyDrop[];
  status(): PolicyStatus;
  /** Every endpoint of the cluster with its labels (policy test resolves names with it). */
  endpoints(): PolicyEndpoint[];
}

export interface DnsControl {
  status(): DnsStatus;
  add(name: string, ips: string[]): Promise<DnsRecordView[]>;
  remove(name: string, ips: string[]): Promise<DnsRecordView[]>;
  lookup(name: string): DnsLookupResult;
}
