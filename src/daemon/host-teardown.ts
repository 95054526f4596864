/**
 * What a reset removes from the host: the links this daemon recorded, the overlay routing
 * rule, and the state dir. One copy, run by the daemon's components when they stop in
 * reset mode and by `weavets reset` when no daemon is running to do it.
 */
import * as fs from 'node:fs/promises';
import type { Netlink } from '../netlink';
import type { LinkLedger } from '../endpoint/ledger';
import { OVERLAY_ROUTE_TABLE, OVERLAY_RULE_PRIORITY } from '../endpoint/host-routes';

/**
 * Delete every link in the ledger; a deleted one leaves the ledger, so what could not be
 * deleted stays recorded for the next reset. Returns one line per failure.
 */
export async function removeRecordedLinks(netlink: Netlink, ledger: LinkLedger): Promise<string[]> {
  const failures: string[] = [];
  for (const link of ledger.list()) {
    try {
      await netlink.deleteLink(link, { ignoreMissing: true });
      await ledger.forget(link);
    } catch (err) {
      failures.push(`delete link ${link}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return failures;
}

/** The rule sending the range to the overlay table (src/endpoint/host-routes.ts); none is fine. */
export async function removeOverlayRule(netlink: Netlink): Promise<void> {
  await netlink.delRuleAt(OVERLAY_ROUTE_TABLE, OVERLAY_RULE_PRIORITY);
}

export async function removeStateDir(stateDir: string): Promise<void> {
  await fs.rm(stateDir, { recursive: true, force: true });
}
