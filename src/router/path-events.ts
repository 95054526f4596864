/**
 * The data path's event sink, built before the router: the data paths are opened first
 * (they only need the routes, src/router/topology.ts), so they report to this relay, and
 * the router subscribes to it when it is constructed with that data path. An event with
 * no subscriber yet has nobody to tell: a path only comes up for a peer the router added.
 */
import type { PeerName } from '../net/peername';
import type { DatapathEvents } from './overlay';

export class PathEventRelay implements DatapathEvents {
  private readonly listeners = new Set<DatapathEvents>();

  pathChanged(peer: PeerName, up: boolean): void {
    for (const l of this.listeners) l.pathChanged(peer, up);
  }

  /** Hear every later event; the returned function stops that. */
  subscribe(listener: DatapathEvents): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
}
