/**
 * nft scripts from compiled tables (nft.ts): the full one that replaces both of weavets'
 * policy tables, and the incremental one that turns the tables as last applied into the
 * new ones by touching only what differs. Either is one `nft -f` transaction, so the
 * kernel has the old ruleset or the new one and never half of it. Pure.
 *
 * The incremental script, in this order (references stay valid at every step):
 *  1. sets and regular chains that are new are declared;
 *  2. chains that changed or are gone are flushed (their jumps and set references go);
 *  3. chains that are gone are deleted, then sets that are gone;
 *  4. sets that changed are rewritten: an address set gets the elements it lost removed
 *     and the ones it gained added; an interval set (merged ranges) is flushed and
 *     filled, since a range can split or merge with a neighbour;
 *  5. new sets get their elements, new and changed chains their rules.
 * A table that appears is defined whole, one that disappears is deleted. A set whose
 * type changed, or a base chain whose hook changed, cannot be changed in place: then
 * the result is undefined and the caller applies the full script.
 */
import { POLICY_TABLE, type NftChain, type NftSet, type NftTable } from './nft';

function setDecl(s: NftSet): string {
  return `type ipv4_addr;${s.interval ? ' flags interval;' : ''}`;
}

function setText(s: NftSet): string {
  const elements = s.elements.length === 0 ? '' : ` elements = { ${s.elements.join(', ')} };`;
  return `  set ${s.name} { ${setDecl(s)}${elements} }`;
}

function chainText(c: NftChain): string[] {
  const head = c.hook === undefined ? [] : [`    ${c.hook}`];
  return [`  chain ${c.name} {`, ...head, ...c.rules.map((r) => `    ${r}`), `  }`];
}

/** One table's definition (nft's block syntax). */
export function tableText(t: NftTable): string[] {
  return [`table ${t.family} ${POLICY_TABLE} {`, ...t.sets.map(setText), ...t.chains.flatMap(chainText), `}`];
}

/** Replace both tables in one transaction: create-if-missing, delete, define. */
export function fullScript(tables: readonly NftTable[]): string {
  const lines: string[] = [];
  for (const family of ['bridge', 'inet'])
    lines.push(`table ${family} ${POLICY_TABLE} {}`, `delete table ${family} ${POLICY_TABLE}`);
  for (const t of tables) lines.push(...tableText(t));
  return lines.join('\n') + '\n';
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The commands that turn table `from` into `to` (same family), or undefined if it cannot be done in place. */
function tableDiff(from: NftTable, to: NftTable): string[] | undefined {
  const t = `${to.family} ${POLICY_TABLE}`;
  const oldSets = new Map(from.sets.map((s) => [s.name, s]));
  const newSets = new Map(to.sets.map((s) => [s.name, s]));
  const oldChains = new Map(from.chains.map((c) => [c.name, c]));
  const newChains = new Map(to.chains.map((c) => [c.name, c]));
  for (const s of to.sets) {
    const old = oldSets.get(s.name);
    if (old && old.interval !== s.interval) return undefined;
  }
  for (const c of to.chains) {
    const old = oldChains.get(c.name);
    if (old && old.hook !== c.hook) return undefined;
  }
  const addedSets = to.sets.filter((s) => !oldSets.has(s.name));
  const goneSets = from.sets.filter((s) => !newSets.has(s.name));
  const changedSets = to.sets.filter((s) => {
    const old = oldSets.get(s.name);
    return old !== undefined && !sameList(old.elements, s.elements);
  });
  const addedChains = to.chains.filter((c) => !oldChains.has(c.name));
  const goneChains = from.chains.filter((c) => !newChains.has(c.name));
  const changedChains = to.chains.filter((c) => {
    const old = oldChains.get(c.name);
    return old !== undefined && !sameList(old.rules, c.rules);
  });

  const lines: string[] = [];
  for (const s of addedSets) lines.push(`add set ${t} ${s.name} { ${setDecl(s)} }`);
  for (const c of addedChains)
    lines.push(c.hook === undefined ? `add chain ${t} ${c.name}` : `add chain ${t} ${c.name} { ${c.hook} }`);
  for (const c of [...changedChains, ...goneChains]) lines.push(`flush chain ${t} ${c.name}`);
  for (const c of goneChains) lines.push(`delete chain ${t} ${c.name}`);
  for (const s of goneSets) lines.push(`delete set ${t} ${s.name}`);
  for (const s of changedSets) {
    if (s.interval) {
      lines.push(`flush set ${t} ${s.name}`);
      if (s.elements.length > 0) lines.push(`add element ${t} ${s.name} { ${s.elements.join(', ')} }`);
      continue;
    }
    const before = new Set(oldSets.get(s.name)!.elements);
    const after = new Set(s.elements);
    const lost = [...before].filter((e) => !after.has(e));
    const gained = s.elements.filter((e) => !before.has(e));
    if (lost.length > 0) lines.push(`delete element ${t} ${s.name} { ${lost.join(', ')} }`);
    if (gained.length > 0) lines.push(`add element ${t} ${s.name} { ${gained.join(', ')} }`);
  }
  for (const s of addedSets)
    if (s.elements.length > 0) lines.push(`add element ${t} ${s.name} { ${s.elements.join(', ')} }`);
  for (const c of [...addedChains, ...changedChains])
    for (const r of c.rules) lines.push(`add rule ${t} ${c.name} ${r}`);
  return lines;
}

/**
 * The script that turns the tables last applied (`from`) into `to` in one transaction:
 * '' when nothing differs; undefined when the change cannot be made in place (then
 * apply {@link fullScript}).
 */
export function incrementalScript(from: readonly NftTable[], to: readonly NftTable[]): string | undefined {
  const lines: string[] = [];
  for (const family of ['bridge', 'inet'] as const) {
    const a = from.find((x) => x.family === family);
    const b = to.find((x) => x.family === family);
    if (a && !b) lines.push(`delete table ${family} ${POLICY_TABLE}`);
    else if (!a && b)
      lines.push(`table ${family} ${POLICY_TABLE} {}`, `delete table ${family} ${POLICY_TABLE}`, ...tableText(b));
    else if (a && b) {
      const diff = tableDiff(a, b);
      if (diff === undefined) return undefined;
      lines.push(...diff);
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
