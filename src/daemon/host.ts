/** Facts about this host the daemon settles before it builds anything: its peer name and the overlay MTU. */
import * as fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { peerNameFilePath, type DaemonConfig } from '../config';
import type { Netlink } from '../netlink';
import { formatPeerName, parsePeerName, peerNameProblem, randomPeerName, type PeerName } from '../net/peername';
import { normalizeTarget } from '../router/router';
import { SLEEVE_OVERHEAD } from '../datapath/sleeve/sleeve';
import { writeFileDurably } from '../state/durable-write';
import { WeavetsError } from '../errors';

/** The peer name: from --name, else the persisted one, else a new one persisted now. */
export async function resolvePeerName(config: DaemonConfig): Promise<PeerName> {
  const file = peerNameFilePath(config.stateDir);
  if (config.name !== undefined) {
    const name = parsePeerName(config.name);
    // The CLI refuses these already; a daemon started some other way must too.
    const problem = peerNameProblem(name);
    if (problem !== undefined) throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--name ${config.name}: ${problem}`);
    await writeFileDurably(file, formatPeerName(name) + '\n');
    return name;
  }
  try {
    return parsePeerName((await fs.readFile(file, 'utf8')).trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const name = randomPeerName((n) => randomBytes(n));
  await writeFileDurably(file, formatPeerName(name) + '\n');
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

/** The containers' MTU: --mtu, else the underlay's less the sleeve's overhead; refused below 576. */
export async function overlayMtu(config: DaemonConfig, netlink: Netlink, ownLinks: string[]): Promise<number> {
  const mtu = config.mtu > 0 ? config.mtu : (await underlayMtu(netlink, new Set(ownLinks))) - SLEEVE_OVERHEAD;
  if (mtu < 576)
    throw new WeavetsError(
      'EWEAVETS_BAD_REQUEST',
      `overlay MTU ${mtu} is too small; set --mtu or fix the underlay MTU`,
    );
  return mtu;
}

/** Bad peer addresses stop the launch before anything is built. */
export function checkPeerAddresses(config: DaemonConfig): void {
  for (const peer of config.peers) {
    try {
      normalizeTarget(peer, config.port);
    } catch (err) {
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', (err as Error).message, { cause: err });
    }
  }
}
