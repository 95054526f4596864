/**
 * Docker containers' external DNS, sent to weavets DNS (docs/DOCKER.md, DNS).
 *
 * Docker's embedded resolver (127.0.0.11 in a container) answers names of containers
 * local to its dockerd and forwards everything else to the container's external servers
 * (dockerd's --dns, or the host's resolv.conf, or 8.8.8.8/8.8.4.4) from inside the
 * container's namespace: the query leaves through the container's default route, the
 * network's gateway on this host's bridge. One nftables table, `ip weavets_dns`, sends
 * those queries (UDP and TCP port 53, to an address that is neither the host's own nor in
 * the overlay range, arriving on the bridge of a Docker network) to weavets DNS on this host's address on that
 * bridge, which answers the names of every host's containers and forwards the rest to
 * its own upstream servers.
 *
 * The map `resolvers` is bridge -> (DNS address . port); it is rewritten whole in one nft
 * transaction when it changes. DNAT to an explicit address, not `redirect`: redirect
 * takes the bridge's primary address, and a bridge of a Docker network carries two (the
 * host's DNS address and Docker's gateway), whichever came first being primary.
 *
 * The table exists only while the daemon runs: without a listener the redirected queries
 * would fail, where untouched they still reach the container's own servers. It is
 * deleted on stop and reset, and at start (which drops one a crashed run left behind, or
 * one of a run with the redirect on when it is now off).
 *
 * And only while the map has an element (a Docker network with a bridge on this host):
 * a nat hook turns on connection tracking for every IPv4 packet of the namespace, and
 * with br_netfilter for bridged container frames too. On a host without Docker networks
 * that cost ~10 us of container ping RTT on the fast path for nothing
 * (bench/throughput.ts; docs/FASTDP.md).
 */
import { execFile } from 'node:child_process';
import { SerialQueue } from '../serial-queue';
import { compareText } from '../text-order';

export const DNS_REDIRECT_TABLE = 'weavets_dns';

/**
 * Servers inside the overlay range (a DNS server in a container) are left alone: they are
 * not the "external" servers Docker forwards to, and with br_netfilter loaded even bridged
 * traffic between two containers would pass this hook.
 */
function ruleset(range: string): string {
  return `table ip ${DNS_REDIRECT_TABLE} {
  map resolvers { type ifname : ipv4_addr . inet_service; }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    meta l4proto { tcp, udp } th dport 53 ip daddr != ${range} fib daddr type != local dnat ip to iifname map @resolvers
  }
}
`;
}

export interface Resolver {
  bridge: string;
  address: string;
  port: number;
}

/** Runs `nft` with `args`, `input` on stdin; the test double records instead. */
export type NftRunner = (args: string[], input?: string) => Promise<string>;

export const runNft: NftRunner = (args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile('nft', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`nft ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });

/** The nft script that makes the map exactly `resolvers` (one transaction). */
export function mapScript(resolvers: Resolver[]): string {
  const lines = [`flush map ip ${DNS_REDIRECT_TABLE} resolvers`];
  const elements = [...resolvers]
    .sort((a, b) => compareText(a.bridge, b.bridge))
    .map((r) => `${JSON.stringify(r.bridge)} : ${r.address} . ${r.port}`);
  if (elements.length > 0) lines.push(`add element ip ${DNS_REDIRECT_TABLE} resolvers { ${elements.join(', ')} }`);
  return lines.join('\n') + '\n';
}

/** Fresh-table script for the overlay `range` (CIDR): whatever was there goes, in the same transaction. */
export function tableScript(range: string): string {
  return `table ip ${DNS_REDIRECT_TABLE} {}\ndelete table ip ${DNS_REDIRECT_TABLE}\n${ruleset(range)}`;
}

export class DnsRedirect {
  /** The map as last written; '' while the table does not exist. */
  private applied = '';
  private readonly queue = new SerialQueue();
  /** The overlay's CIDR while started. */
  private range: string | undefined;

  constructor(private readonly nft: NftRunner = runNft) {}

  /**
   * Start redirecting (`range`: the overlay's CIDR). A leftover table goes; the table
   * itself is made by the first `set` with a bridge in it.
   */
  start(range: string): Promise<void> {
    return this.serial(async () => {
      await this.nft(['delete', 'table', 'ip', DNS_REDIRECT_TABLE]).catch(() => undefined);
      this.applied = '';
      this.range = range;
    });
  }

  /** Point exactly these bridges at their resolvers; no bridge: no table. A no-op when nothing changed. */
  set(resolvers: Resolver[]): Promise<void> {
    return this.serial(async () => {
      if (this.range === undefined) return;
      if (resolvers.length === 0) {
        if (this.applied === '') return;
        await this.nft(['delete', 'table', 'ip', DNS_REDIRECT_TABLE]);
        this.applied = '';
        return;
      }
      const script = mapScript(resolvers);
      if (script === this.applied) return;
      // No table yet: a fresh one and its map in one transaction.
      await this.nft(['-f', '-'], this.applied === '' ? tableScript(this.range) + script : script);
      this.applied = script;
    });
  }

  /** Delete the table (stop, reset, or the redirect turned off); quiet when there is none. */
  clear(): Promise<void> {
    return this.serial(async () => {
      this.range = undefined;
      this.applied = '';
      await this.nft(['delete', 'table', 'ip', DNS_REDIRECT_TABLE]).catch(() => undefined);
    });
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    return this.queue.run(fn);
  }
}
