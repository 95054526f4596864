/**
 * Policies in the cluster store. Every apply or removal is one transaction that also
 * bumps `policy/generation`, conditioned on the revisions it read, so concurrent
 * changes never interleave and every host, following the same watch, goes through the
 * same sequence of whole policy sets ("generations"). Keys:
 *
 *   policy/generation            {"generation": N}
 *   policy/rules/<name>          StoredPolicy (document, version, updated)
 *   policy/endpoints/<peer>/<id> PolicyEndpoint, on the publishing host's lease
 */
import { WeavetsError } from '../errors';
import type { Store, TxnOp, Compare } from '../store/types';
import type { StoredPolicy } from './model';

export const POLICY_PREFIX = 'policy/';
export const GENERATION_KEY = 'policy/generation';
export const RULES_PREFIX = 'policy/rules/';
export const ENDPOINTS_PREFIX = 'policy/endpoints/';

export function ruleKey(name: string): string {
  return `${RULES_PREFIX}${name}`;
}

export function endpointKey(peer: string, id: string): string {
  return `${ENDPOINTS_PREFIX}${peer}/${encodeURIComponent(id)}`;
}

export interface ApplyItem {
  name: string;
  network: string;
  document: Record<string, unknown>;
}

export interface ApplyResult {
  generation: number;
  policies: { name: string; version: number; changed: boolean }[];
}

const ATTEMPTS = 8;

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

async function readGeneration(store: Store): Promise<{ generation: number; modRevision: number }> {
  const e = await store.get(GENERATION_KEY);
  if (!e) return { generation: 0, modRevision: 0 };
  return { generation: (JSON.parse(e.value) as { generation: number }).generation, modRevision: e.modRevision };
}

/** Put (or update) policies, all or none. Unchanged documents keep their version. */
export async function applyPolicies(
  store: Store,
  items: readonly ApplyItem[],
  now: () => Date = () => new Date(),
): Promise<ApplyResult> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const gen = await readGeneration(store);
    // One listing, not a read per policy: a file of a hundred policies is one round trip.
    const existing = new Map((await store.list(RULES_PREFIX)).entries.map((e) => [e.key, e]));
    const compare: Compare[] = [{ key: GENERATION_KEY, modRevision: gen.modRevision }];
    const ops: TxnOp[] = [];
    const result: ApplyResult['policies'] = [];
    for (const item of items) {
      const have = existing.get(ruleKey(item.name));
      compare.push({ key: ruleKey(item.name), modRevision: have?.modRevision ?? 0 });
      const old = have ? (JSON.parse(have.value) as StoredPolicy) : undefined;
      if (old && canonical(old.document) === canonical(item.document)) {
        result.push({ name: item.name, version: old.version, changed: false });
        continue;
      }
      const stored: StoredPolicy = {
        name: item.name,
        network: item.network,
        version: (old?.version ?? 0) + 1,
        updated: now().toISOString(),
        document: item.document,
      };
      ops.push({ op: 'put', key: ruleKey(item.name), value: JSON.stringify(stored) });
      result.push({ name: item.name, version: stored.version, changed: true });
    }
    if (ops.length === 0) return { generation: gen.generation, policies: result };
    ops.push({ op: 'put', key: GENERATION_KEY, value: JSON.stringify({ generation: gen.generation + 1 }) });
    if ((await store.txn(compare, ops)).succeeded) return { generation: gen.generation + 1, policies: result };
  }
  throw new WeavetsError('EWEAVETS_CONFLICT', 'policies changed concurrently too often; try again');
}

/** Remove a policy; NOT_FOUND when there is none of that name. */
export async function removePolicy(store: Store, name: string): Promise<{ generation: number; removed: StoredPolicy }> {
  const r = await removePolicies(store, [name]);
  return { generation: r.generation, removed: r.removed[0]! };
}

/** Remove several policies in one transaction, all or none; NOT_FOUND names the first missing. */
export async function removePolicies(
  store: Store,
  names: readonly string[],
): Promise<{ generation: number; removed: StoredPolicy[] }> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const gen = await readGeneration(store);
    const existing = new Map((await store.list(RULES_PREFIX)).entries.map((e) => [e.key, e]));
    const compare: Compare[] = [{ key: GENERATION_KEY, modRevision: gen.modRevision }];
    const ops: TxnOp[] = [];
    const removed: StoredPolicy[] = [];
    for (const name of new Set(names)) {
      const have = existing.get(ruleKey(name));
      if (!have)
        throw new WeavetsError(
          'EWEAVETS_NOT_FOUND',
          `no policy named ${JSON.stringify(name)}; see \`weavets policy ls\``,
        );
      compare.push({ key: ruleKey(name), modRevision: have.modRevision });
      ops.push({ op: 'delete', key: ruleKey(name) });
      removed.push(JSON.parse(have.value) as StoredPolicy);
    }
    ops.push({ op: 'put', key: GENERATION_KEY, value: JSON.stringify({ generation: gen.generation + 1 }) });
    if ((await store.txn(compare, ops)).succeeded) return { generation: gen.generation + 1, removed };
  }
  throw new WeavetsError('EWEAVETS_CONFLICT', 'policies changed concurrently too often; try again');
}
