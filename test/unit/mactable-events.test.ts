/**
 * MacTable change events: only new, moved and removed MACs are reported, never inside
 * learn() (the frame path), batched per drain, each MAC once with its state at drain time.
 */
import { describe, it, expect } from 'vitest';
import { MacTable, type MacTableListener } from '../../src/net/mactable';
import type { PeerName } from '../../src/net/peername';

const A = 0xa1 as PeerName;
const B = 0xb2 as PeerName;
const M1 = 0x02_00_00_00_00_01;
const M2 = 0x02_00_00_00_00_02;
const M3 = 0x02_00_00_00_00_03;

type Change = [number, number, PeerName | undefined];

function recorder(): MacTableListener & { changes: Change[]; batches: number } {
  const r = {
    changes: [] as Change[],
    batches: 0,
    macChanged(networkId: number, mac: number, peer: PeerName | undefined): void {
      r.changes.push([networkId, mac, peer]);
    },
    macBatchEnd(): void {
      r.batches++;
    },
  };
  return r;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('MacTable change events', () => {
  it('reports a learned MAC after the frame path returns, in one batch', async () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    const l = recorder();
    t.setListener(l);
    expect(t.learn(1, M1, A, 0)).toBe(true);
    expect(t.learn(1, M2, A, 0)).toBe(true);
    expect(t.learn(2, M1, B, 0)).toBe(true);
    expect(l.changes).toEqual([]); // nothing inline
    expect(t.pendingChanges()).toBe(3);
    await nextTurn();
    expect(l.changes).toEqual([
      [1, M1, A],
      [1, M2, A],
      [2, M1, B],
    ]);
    expect(l.batches).toBe(1);
    expect(t.pendingChanges()).toBe(0);
  });

  it('a refresh of a known MAC queues nothing', async () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    const l = recorder();
    t.setListener(l);
    t.learn(1, M1, A, 0);
    await nextTurn();
    l.changes.length = 0;
    for (let i = 1; i <= 1000; i++) expect(t.learn(1, M1, A, i)).toBe(false);
    expect(t.pendingChanges()).toBe(0);
    await nextTurn();
    expect(l.changes).toEqual([]);
    expect(l.batches).toBe(1);
  });

  it('reports a move, and coalesces changes before a drain into the latest state', async () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    const l = recorder();
    t.setListener(l);
    t.learn(1, M1, A, 0);
    t.learn(1, M1, B, 1); // moved before the drain: one event, the new owner
    t.learn(1, M1, A, 2);
    t.learn(1, M1, B, 3);
    expect(t.pendingChanges()).toBe(1);
    await nextTurn();
    expect(l.changes).toEqual([[1, M1, B]]);
    t.learn(1, M1, A, 4);
    await nextTurn();
    expect(l.changes).toEqual([
      [1, M1, B],
      [1, M1, A],
    ]);
  });

  it('reports expired, forgotten and evicted MACs as gone', async () => {
    const t = new MacTable({ maxAgeMs: 100, maxEntries: 2 });
    const l = recorder();
    t.setListener(l);
    t.learn(1, M1, A, 0);
    t.learn(1, M2, B, 50);
    await nextTurn();
    l.changes.length = 0;
    expect(t.expire(120)).toBe(1);
    await nextTurn();
    expect(l.changes).toEqual([[1, M1, undefined]]);
    l.changes.length = 0;
    t.learn(1, M1, A, 130);
    t.learn(1, M3, A, 131); // full: M2 (oldest) is evicted
    await nextTurn();
    expect(l.changes).toEqual([
      [1, M1, A],
      [1, M2, undefined],
      [1, M3, A],
    ]);
    l.changes.length = 0;
    expect(t.forgetPeer(A)).toBe(2);
    await nextTurn();
    expect(l.changes).toEqual([
      [1, M1, undefined],
      [1, M3, undefined],
    ]);
  });

  it('learned then gone before the drain is one "gone"; gone then relearned is reported in order', async () => {
    const t = new MacTable({ maxAgeMs: 100 });
    const l = recorder();
    t.setListener(l);
    t.learn(1, M1, A, 0);
    t.forgetPeer(A);
    await nextTurn();
    expect(l.changes).toEqual([[1, M1, undefined]]);
    l.changes.length = 0;
    t.learn(1, M2, A, 10);
    await nextTurn();
    l.changes.length = 0;
    t.forgetPeer(A);
    t.learn(1, M2, B, 20);
    await nextTurn();
    expect(l.changes).toEqual([
      [1, M2, undefined],
      [1, M2, B],
    ]);
  });

  it('a new listener starts from the whole table; no listener, no queue', async () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    t.learn(1, M1, A, 0);
    t.learn(1, M2, B, 1);
    expect(t.pendingChanges()).toBe(0);
    const l = recorder();
    t.setListener(l);
    t.flushChanges();
    expect(l.changes).toEqual([
      [1, M1, A],
      [1, M2, B],
    ]);
    t.setListener(undefined);
    t.learn(1, M3, A, 2);
    t.forgetPeer(A);
    expect(t.pendingChanges()).toBe(0);
    await nextTurn();
    expect(l.changes.length).toBe(2);
  });
});
