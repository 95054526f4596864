/**
 * How the host itself reaches the overlay range: through the bridges it has an address on
 * (`expose`, DNS, a Docker network's gateway). Those routes live in a routing table of
 * their own, consulted by one policy rule for the range, and never in the main table:
 *
 * - Docker checks a pool it did not ask for by subnet against the main table's routes
 *   (libnetwork's local-scope overlap check) and refuses any pool the host already routes,
 *   so with the range in main a second `docker network create -d weavets` without
 *   `--subnet` could never succeed. Routes outside main are not checked.
 * - The operator's main table stays theirs: `ip route` shows what they configured, and
 *   `ip route show table 6783` what weavets did.
 *
 * The addresses go on with `noprefixroute`, so the kernel adds no main-table route either.
 */
import { formatCidr, parseCidr, type Cidr } from '../net/ipv4';
import type { Netlink } from '../netlink';
import { isCode } from '../netlink/errors';

/** The routing table holding the host's routes into the overlay range (6783: weavets's port). */
export const OVERLAY_ROUTE_TABLE = 6783;
/** Priority of the rule sending the range to that table: after local (0), before main (32766). */
export const OVERLAY_RULE_PRIORITY = 6783;

export class HostRoutes {
  private readonly rangeText: string;

  constructor(
    private readonly netlink: Netlink,
    range: Cidr,
    /** Called after the host's addresses on the bridges changed (isolation rules follow them). */
    private readonly onChange?: () => Promise<void>,
  ) {
    this.rangeText = formatCidr(range);
  }

  /** The rule `to RANGE lookup 6783`; idempotent (a restarted daemon finds it in place). */
  async install(): Promise<void> {
    await this.netlink.addRule(this.rule());
  }

  /** Reset: the rule goes; the table's routes went with the bridges. */
  async uninstall(): Promise<void> {
    await this.netlink.delRule(this.rule());
  }

  /**
   * The host's address `cidr` on `bridge`, and the network's subnet (the prefix of
   * `cidr`: the whole range for the default network) routed through that bridge from it.
   * A created network's subnet lies inside the range, so its longer route wins over the
   * default network's.
   */
  async addAddress(bridge: string, cidr: string): Promise<void> {
    await this.netlink.addAddress(bridge, cidr, { ignoreExisting: true, noPrefixRoute: true });
    try {
      await this.netlink.addRoute(
        { dst: subnetOf(cidr), dev: bridge, src: addressOf(cidr), table: OVERLAY_ROUTE_TABLE },
        { append: true },
      );
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err;
    }
    await this.onChange?.();
  }

  async delAddress(bridge: string, cidr: string): Promise<void> {
    await this.netlink.delRoute(
      { dst: subnetOf(cidr), dev: bridge, src: addressOf(cidr), table: OVERLAY_ROUTE_TABLE },
      { ignoreMissing: true },
    );
    await this.netlink.delAddress(bridge, cidr, { ignoreMissing: true });
    await this.onChange?.();
  }

  /**
   * One container reached through `bridge`: every segment shares the range's subnet, so a
   * host on several segments needs the /32 to pick the right bridge.
   */
  async routeHost(bridge: string, ip: string): Promise<void> {
    await this.netlink.addRoute({ dst: `${ip}/32`, dev: bridge, table: OVERLAY_ROUTE_TABLE }, { replace: true });
  }

  async unrouteHost(bridge: string, ip: string): Promise<void> {
    await this.netlink.delRoute({ dst: `${ip}/32`, dev: bridge, table: OVERLAY_ROUTE_TABLE }, { ignoreMissing: true });
  }

  private rule(): { to: string; table: number; priority: number } {
    return { to: this.rangeText, table: OVERLAY_ROUTE_TABLE, priority: OVERLAY_RULE_PRIORITY };
  }
}

/** "10.40.7.1/24" -> "10.40.7.0/24" */
function subnetOf(cidr: string): string {
  return formatCidr(parseCidr(cidr, false));
}

function addressOf(cidr: string): string {
  return cidr.split('/')[0]!;
}
