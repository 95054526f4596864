/**
 * Kernel counters for the frames fastdp carries (the daemon never sees them): a bridge
 * family nftables table of our own, `weavets_flows`, with one filter chain on the bridge
 * forward hook that adds (VXLAN device, source MAC, destination MAC) to a dynamic set
 * with a counter per element, for frames leaving through a fastdp VXLAN port.
 *
 * The chain runs at priority `filter` (-200): br_netfilter (loaded on these hosts, with
 * bridge-nf-call-iptables on) takes IPv4 frames at the forward hook's priority 0 through
 * iptables and re-injects them past the priority-0 chains registered after it, which
 * then never see them (measured: a priority-0 chain made at daemon start counted
 * nothing, one added later did). At -200 the order does not matter.
 *
 * Why this and not conntrack: a filter chain in the bridge family does not turn on
 * connection tracking (only a nat hook or a ct expression would, which costs every
 * packet of the namespace, docs/FASTDP.md); the set lookup is paid only by frames
 * bridged to a VXLAN port. Measured on bench/throughput.ts (docs/DIAGNOSTICS.md).
 */
import { execFile } from 'node:child_process';
import { networkIdOfVxlanLink, VXLAN_LINK_PREFIX } from '../net/links';
import { parseMac } from '../net/mac';
import { flowKey, type FlowTotals, type KernelFlowSource } from './flows';

export const FLOWS_TABLE = 'weavets_flows';

export type NftRunner = (args: string[], input?: string) => Promise<string>;

export const runNft: NftRunner = (args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile('nft', args, { timeout: 10_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`nft ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });

/** The table, made in one transaction (any previous one is replaced). */
export function flowsRuleset(): string {
  return `table bridge ${FLOWS_TABLE}
delete table bridge ${FLOWS_TABLE}
table bridge ${FLOWS_TABLE} {
  set pairs {
    type ifname . ether_addr . ether_addr
    flags dynamic,timeout
    timeout 2m
    size 65536
    counter
  }
  chain forward_vxlan {
    type filter hook forward priority filter; policy accept;
    oifname "${VXLAN_LINK_PREFIX}*" update @pairs { oifname . ether saddr . ether daddr }
  }
}
`;
}

/**
 * Parse `nft -j list set bridge weavets_flows pairs`: elements are
 * {"elem": {"val": {"concat": [ifname, mac, mac]}, "counter": {"packets", "bytes"}, ...}}.
 * Anything else is skipped: the format is the kernel's, not ours to trust blindly.
 */
export function parseFlowSet(json: string): FlowTotals {
  const totals: FlowTotals = new Map();
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    return totals;
  }
  const items = (doc as { nftables?: unknown }).nftables;
  if (!Array.isArray(items)) return totals;
  for (const item of items) {
    const elems = (item as { set?: { elem?: unknown } }).set?.elem;
    if (!Array.isArray(elems)) continue;
    for (const e of elems) {
      const elem = (e as { elem?: { val?: { concat?: unknown }; counter?: { packets?: unknown; bytes?: unknown } } })
        .elem;
      const concat = elem?.val?.concat;
      if (!Array.isArray(concat) || concat.length !== 3) continue;
      const [ifname, src, dst] = concat as unknown[];
      if (typeof ifname !== 'string' || typeof src !== 'string' || typeof dst !== 'string') continue;
      const net = networkIdOfVxlanLink(ifname);
      if (net === undefined) continue;
      const s = parseMac(src);
      const d = parseMac(dst);
      const packets = elem?.counter?.packets;
      const bytes = elem?.counter?.bytes;
      if (!Number.isInteger(net) || net < 1 || net > 0xfffffe || s === undefined || d === undefined) continue;
      if (typeof packets !== 'number' || typeof bytes !== 'number') continue;
      totals.set(flowKey(net, s, d), { net, src: s, dst: d, bytes, packets, datapath: 'fastdp' });
    }
  }
  return totals;
}

export class KernelFlowCounters implements KernelFlowSource {
  private constructor(private readonly nft: NftRunner) {}

  static async open(nft: NftRunner = runNft): Promise<KernelFlowCounters> {
    await nft(['-f', '-'], flowsRuleset());
    return new KernelFlowCounters(nft);
  }

  async read(): Promise<FlowTotals> {
    return parseFlowSet(await this.nft(['-j', 'list', 'set', 'bridge', FLOWS_TABLE, 'pairs']));
  }

  async close(): Promise<void> {
    try {
      await this.nft(['delete', 'table', 'bridge', FLOWS_TABLE]);
    } catch {
      // Already gone (reset, an operator): nothing to undo.
    }
  }
}
