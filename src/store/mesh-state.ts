/**
 * The replicated state behind the mesh store, as pure data: every peer's entries, the
 * merge, and the view (what `get` of a key answers) computed from them. No I/O, no clock.
 *
 * Each entry is owned by the peer that wrote it and only that peer changes it; entries
 * about one (owner, key) are ordered by version and a merge keeps the greater one. That
 * makes the merge commutative, associative and idempotent: peers that have seen the same
 * entries hold the same state whatever the gossip order (weaveworks/mesh's GossipData
 * contract). The view is a pure function of the state, so they also answer alike:
 *
 * - an entry is hidden by another owner's entry for the key that says it replaces it
 *   (`over`: owner and version), e.g. a takeover or a delete of a dead host's key;
 * - among the rest that are not deleted, held entries win over claims; several held
 *   entries with different values are a CONFLICT (reported, never merged silently); the
 *   lowest owner name is shown;
 * - with no held entry, the lowest-named claim is shown (claims are visible so no other
 *   compare-and-create on the key succeeds while one is in flight).
 *
 * FORGET markers drop an owner's entries up to a version (a host gone for good).
 */
import { compareText } from '../text-order';
import type { MeshEntry } from './mesh-codec';

export interface KeyView {
  /** The entry `get` answers with; undefined: the key does not exist. */
  winner: MeshEntry | undefined;
  /** Owners of held entries with different values: more than one is a conflict. */
  conflict: string[] | undefined;
}

export class MeshState {
  /** key -> owner -> entry. */
  private readonly byKey = new Map<string, Map<string, MeshEntry>>();
  /** owner -> highest version forgotten (entries at or below it are dropped on arrival). */
  private readonly forgotten = new Map<string, number>();

  /** Merge one entry; true if it changed the state. */
  merge(e: MeshEntry): boolean {
    const upTo = this.forgotten.get(e.owner);
    if (upTo !== undefined && e.version <= upTo) return false;
    let owners = this.byKey.get(e.key);
    const have = owners?.get(e.owner);
    if (have && have.version >= e.version) return false;
    if (!owners) {
      owners = new Map();
      this.byKey.set(e.key, owners);
    }
    owners.set(e.owner, e);
    return true;
  }

  get(key: string, owner: string): MeshEntry | undefined {
    return this.byKey.get(key)?.get(owner);
  }

  /** Every entry about `key`, all owners, in owner order. */
  entriesOf(key: string): MeshEntry[] {
    const owners = this.byKey.get(key);
    if (!owners) return [];
    return [...owners.values()].sort((a, b) => compareText(a.owner, b.owner));
  }

  view(key: string): KeyView {
    const all = this.entriesOf(key);
    const live = all.filter(
      (e) =>
        e.state !== 'gone' &&
        !all.some((f) => f.owner !== e.owner && f.over?.owner === e.owner && f.over.version >= e.version),
    );
    const held = live.filter((e) => e.state === 'held');
    if (held.length > 0) {
      const values = new Set(held.map((e) => e.value));
      return { winner: held[0], conflict: values.size > 1 ? held.map((e) => e.owner) : undefined };
    }
    return { winner: live.find((e) => e.state === 'claim'), conflict: undefined };
  }

  keys(): string[] {
    return [...this.byKey.keys()];
  }

  /** Every entry (for a full sync or the state file). */
  all(): MeshEntry[] {
    const out: MeshEntry[] = [];
    for (const owners of this.byKey.values()) out.push(...owners.values());
    return out;
  }

  owners(): Set<string> {
    const out = new Set<string>();
    for (const owners of this.byKey.values()) for (const o of owners.keys()) out.add(o);
    return out;
  }

  /** Highest version of any entry of `owner`, 0 if none. */
  maxVersion(owner: string): number {
    let v = 0;
    for (const owners of this.byKey.values()) {
      const e = owners.get(owner);
      if (e && e.version > v) v = e.version;
    }
    return v;
  }

  /**
   * Drop `owner`'s entries up to `upTo` and refuse them from now on. Returns the keys
   * whose entries were dropped. True idempotent: forgetting again changes nothing.
   */
  forget(owner: string, upTo: number): string[] {
    const was = this.forgotten.get(owner) ?? 0;
    if (upTo > was) this.forgotten.set(owner, upTo);
    const touched: string[] = [];
    for (const [key, owners] of this.byKey) {
      const e = owners.get(owner);
      if (e && e.version <= upTo) {
        owners.delete(owner);
        if (owners.size === 0) this.byKey.delete(key);
        touched.push(key);
      }
    }
    return touched;
  }

  /** Accept `owner`'s entries again (it came back); what it gossips is newer anyway. */
  unforget(owner: string): void {
    this.forgotten.delete(owner);
  }

  forgottenMarkers(): { owner: string; upTo: number }[] {
    return [...this.forgotten.entries()].map(([owner, upTo]) => ({ owner, upTo }));
  }

  /** Remove tombstones of `owner` (compaction of own deleted entries nobody needs). */
  drop(key: string, owner: string): void {
    const owners = this.byKey.get(key);
    if (!owners) return;
    owners.delete(owner);
    if (owners.size === 0) this.byKey.delete(key);
  }
}
