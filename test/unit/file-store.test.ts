import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file';
import { createIfAbsent, type KvEntry } from '../../src/store/types';
import { silentLogger } from '../../src/log';

describe('embedded file store', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-store-'));
    file = path.join(dir, 'store.json');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('puts, gets, lists by prefix and deletes, with revisions', async () => {
    const s = await FileStore.open({ file, log: silentLogger });
    const r1 = await s.put('a/1', 'x');
    const r2 = await s.put('a/2', 'y');
    await s.put('b/1', 'z');
    expect(r2).toBeGreaterThan(r1);
    expect((await s.get('a/1'))?.value).toBe('x');
    expect((await s.list('a/')).entries.map((e) => e.key)).toEqual(['a/1', 'a/2']);
    expect(await s.delete('a/1')).toBe(true);
    expect(await s.delete('a/1')).toBe(false);
    await s.close();
  });

  it('compare-and-create and compare-and-swap', async () => {
    const s = await FileStore.open({ file, log: silentLogger });
    expect(await createIfAbsent(s, 'k', 'v1')).toBe(true);
    expect(await createIfAbsent(s, 'k', 'v2')).toBe(false);
    const e = (await s.get('k'))!;
    expect(
      (await s.txn([{ key: 'k', modRevision: e.modRevision + 1 }], [{ op: 'put', key: 'k', value: 'no' }])).succeeded,
    ).toBe(false);
    expect(
      (await s.txn([{ key: 'k', modRevision: e.modRevision }], [{ op: 'put', key: 'k', value: 'v3' }])).succeeded,
    ).toBe(true);
    expect((await s.txn([{ key: 'k', value: 'v3' }], [{ op: 'delete', key: 'k' }])).succeeded).toBe(true);
    expect(await s.get('k')).toBeUndefined();
    await s.close();
  });

  it('survives reopening, and a torn temp file from a crash is ignored', async () => {
    const s = await FileStore.open({ file, log: silentLogger });
    await s.put('k', 'v');
    await s.close();
    fs.writeFileSync(`${file}.tmp`, '{"format":1,"rev'); // a write cut short by kill -9
    const again = await FileStore.open({ file, log: silentLogger });
    expect((await again.get('k'))?.value).toBe('v');
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);
    await again.close();
  });

  it('expires leases that were not kept alive while the store was closed', async () => {
    let now = 1_000_000;
    const s = await FileStore.open({ file, log: silentLogger, now: () => now });
    const short = await s.grantLease(5);
    const long = await s.grantLease(3600);
    await s.put('short', '1', short.id);
    await s.put('long', '1', long.id);
    await s.close();
    now += 10_000;
    const again = await FileStore.open({ file, log: silentLogger, now: () => now });
    expect(await again.get('short')).toBeUndefined();
    expect(await again.get('long')).toBeDefined();
    await again.revokeLease(long.id);
    expect(await again.get('long')).toBeUndefined();
    await again.close();
  });

  it('watch: a listing first, then events', async () => {
    const s = await FileStore.open({ file, log: silentLogger });
    await s.put('h/a', '1');
    const resets: KvEntry[][] = [];
    const events: string[] = [];
    const w = s.watch('h/', {
      onReset: (e) => resets.push(e),
      onEvents: (ev) => events.push(...ev.map((x) => `${x.type} ${x.key}`)),
    });
    await new Promise((r) => setTimeout(r, 10));
    await s.put('h/b', '2');
    await s.put('other', '3');
    await s.delete('h/a');
    expect(resets[0]!.map((e) => e.key)).toEqual(['h/a']);
    expect(events).toEqual(['put h/b', 'delete h/a']);
    await w.close();
    await s.close();
  });

  it('group-commits concurrent writes, each durable when it resolves', async () => {
    const s = await FileStore.open({ file, log: silentLogger });
    await Promise.all(Array.from({ length: 200 }, (_, i) => createIfAbsent(s, `k/${i}`, String(i))));
    const onDisk = JSON.parse(fs.readFileSync(file, 'utf8')) as { kvs: KvEntry[] };
    expect(onDisk.kvs.length).toBe(200);
    await s.close();
  });
});
