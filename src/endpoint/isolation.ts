/**
 * Isolation between networks on one host. In the overlay, networks are apart by
 * construction (a bridge per network, the network id in every frame); what could join
 * them is the host itself, which has an address on several bridges and may route. So:
 *
 * - ARP: each bridge has arp_ignore=1 (answer only for addresses configured on the
 *   interface the request came in on) and arp_announce=2 (ask with an address of that
 *   interface), so an ARP scan from one network never learns another network's host
 *   address.
 * - IP: one nftables table of our own, `inet weavets_isolation`, with filter hooks only
 *   (input and forward): nothing forwarded from one network's bridge to another's; a
 *   packet in from a bridge whose source is not in that network's subnet is dropped
 *   (spoofing); a packet in from a bridge to the host's address on another network is
 *   dropped. No nat hook and no conntrack match, on purpose: a nat hook turns conntrack on
 *   for every bridged frame and costs fastdp latency (docs/FASTDP.md).
 *
 * Label-based policy (src/policy/) has a table of its own; this one is only the tenant
 * boundary and is always on.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { formatCidr, maskOf, type Cidr } from '../net/ipv4';
import { WeavetsError } from '../errors';

/** Runs `nft` with `args`, `input` on stdin; a test double may record instead. */
export type NftRunner = (args: string[], input?: string) => Promise<string>;

export const runNft: NftRunner = (args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile('nft', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`nft ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });

export const ISOLATION_TABLE = 'weavets_isolation';

export interface IsolatedBridge {
  bridge: string;
  /** The network's subnet (the default network: the whole range). */
  subnet: Cidr;
  /** The host's addresses on this bridge (DNS, expose, Docker gateways). */
  hostAddresses: string[];
  /**
   * Sources accepted from this bridge when not its subnet: a Docker network's segment,
   * whose containers are addressed from the whole range by Docker's IPAM (docs/DOCKER.md).
   */
  sources?: Cidr;
}

function quote(name: string): string {
  return `"${name}"`;
}

function set(items: string[]): string {
  return items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`;
}

/**
 * The whole table as one nft script, replacing any previous one in one transaction
 * (`table` + `delete table` + the new table: nft applies a file atomically).
 */
export function isolationRuleset(bridges: IsolatedBridge[]): string {
  const lines = [
    `table inet ${ISOLATION_TABLE} {}`,
    `delete table inet ${ISOLATION_TABLE}`,
    `table inet ${ISOLATION_TABLE} {`,
  ];
  const input: string[] = [];
  const forward: string[] = [];
  for (const b of bridges) {
    const others = bridges.filter((o) => o !== b);
    // Subnets of other networks nested in this one's (the default network's holes).
    const sources = b.sources ?? b.subnet;
    const nested = others.filter(
      (o) => o.subnet.prefix > sources.prefix && (o.subnet.base & maskOf(sources.prefix)) >>> 0 === sources.base,
    );
    const iif = `iifname ${quote(b.bridge)}`;
    const spoof = [`${iif} ip saddr != ${formatCidr(sources)} drop`];
    if (nested.length > 0 && b.sources === undefined)
      spoof.push(`${iif} ip saddr ${set(nested.map((o) => formatCidr(o.subnet)))} drop`);
    input.push(...spoof);
    forward.push(...spoof);
    const otherAddrs = others.flatMap((o) => o.hostAddresses);
    if (otherAddrs.length > 0) input.push(`${iif} ip daddr ${set(otherAddrs)} drop`);
    if (others.length > 0) forward.push(`${iif} oifname ${set(others.map((o) => quote(o.bridge)))} drop`);
  }
  lines.push(
    '  chain input {',
    '    type filter hook input priority filter - 5; policy accept;',
    ...input.map((l) => `    ${l}`),
    '  }',
  );
  lines.push(
    '  chain forward {',
    '    type filter hook forward priority filter - 5; policy accept;',
    ...forward.map((l) => `    ${l}`),
    '  }',
  );
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Owns the table and the bridges' ARP settings; `apply` makes them exactly what it is given. */
export class NetworkIsolation {
  private applied = '';

  /** /proc/sys refused the ARP settings once (read-only, as in a managed Docker plugin). */
  private arpSettingsRefused = false;

  constructor(
    private readonly nft: NftRunner,
    /** Where sysctls live: /proc/sys in the daemon's namespace (tests point it elsewhere). */
    private readonly procSys = '/proc/sys',
    /** Told once when the ARP settings cannot be written; the nftables rules still apply. */
    private readonly warn: (message: string, fields: Record<string, string>) => void = () => undefined,
  ) {}

  async apply(bridges: IsolatedBridge[]): Promise<void> {
    for (const b of bridges) await this.arpSettings(b.bridge);
    const script = isolationRuleset(bridges);
    if (script === this.applied) return;
    try {
      await this.nft(['-f', '-'], script);
    } catch (err) {
      // No silent fallback: a network without its isolation rules is not a tenant boundary.
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `cannot install the rules that isolate networks from each other (nftables table inet ${ISOLATION_TABLE}): ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.applied = script;
  }

  private async arpSettings(bridge: string): Promise<void> {
    const dir = `${this.procSys}/net/ipv4/conf/${bridge}`;
    try {
      await fs.writeFile(`${dir}/arp_ignore`, '1\n');
      await fs.writeFile(`${dir}/arp_announce`, '2\n');
    } catch (err) {
      // A container runtime mounts /proc/sys read-only (a managed Docker plugin has no way
      // to ask otherwise). The host then answers ARP for its other networks' addresses on
      // this bridge, but the table below still drops every packet sent to them, so the
      // boundary holds at L3; a daemon that refused to start would carry nothing at all.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EROFS' && code !== 'EACCES' && code !== 'EPERM') throw err;
      if (!this.arpSettingsRefused) {
        this.arpSettingsRefused = true;
        this.warn(
          'cannot set arp_ignore/arp_announce (read-only /proc/sys): the host answers ARP for its addresses on other networks; packets to them are still dropped',
          { bridge, error: (err as Error).message },
        );
      }
    }
  }

  /** Remove the table (reset); never throws. */
  async remove(): Promise<void> {
    this.applied = '';
    await this.nft(['delete', 'table', 'inet', ISOLATION_TABLE]).catch(() => undefined);
  }
}
