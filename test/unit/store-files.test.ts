/**
 * store.json and mesh-store.json are read through validators (src/store/persisted.ts):
 * what the stores write reads back, and a damaged file fails the open with an error that
 * names the file and the field, instead of a store half-loaded from a cast.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file';
import { MeshStore } from '../../src/store/mesh';
import { silentLogger } from '../../src/log';
import { StateFileError } from '../../src/state/json-state-file';

const SELF = '7e:21:0a:b4:19:c2';

describe('store files', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-store-files-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function fileStoreRoundTrip(): Promise<string> {
    const file = path.join(dir, 'store.json');
    const s = await FileStore.open({ file, log: silentLogger });
    const lease = await s.grantLease(60);
    await s.put('hosts/a', '{"x":1}', lease.id);
    await s.put('empty', '');
    await s.close();
    return file;
  }

  it('the file store reads back what it wrote, and the mesh store imports it', async () => {
    const file = await fileStoreRoundTrip();
    const again = await FileStore.open({ file, log: silentLogger });
    expect((await again.get('hosts/a'))?.value).toBe('{"x":1}');
    expect((await again.get('empty'))?.value).toBe('');
    await again.close();
    const mesh = await MeshStore.open({
      file: path.join(dir, 'mesh-store.json'),
      self: SELF,
      graceMs: 60_000,
      importFrom: file,
      log: silentLogger,
    });
    expect((await mesh.get('hosts/a'))?.value).toBe('{"x":1}');
    await mesh.close();
    const reopened = await MeshStore.open({
      file: path.join(dir, 'mesh-store.json'),
      self: SELF,
      graceMs: 60_000,
      log: silentLogger,
    });
    expect((await reopened.get('hosts/a'))?.value).toBe('{"x":1}');
    await reopened.close();
  });

  it('a damaged file store names the file and the field', async () => {
    const file = await fileStoreRoundTrip();
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
    doc.kvs[0].modRevision = 'seven';
    fs.writeFileSync(file, JSON.stringify(doc));
    const err = await FileStore.open({ file, log: silentLogger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as Error).message).toMatch(/store\.json: field 'kvs\[0\]\.modRevision' .*integer/);
    fs.writeFileSync(file, '{"format": 1, "revision": ');
    await expect(FileStore.open({ file, log: silentLogger })).rejects.toThrow(/store\.json: not valid JSON/);
    fs.writeFileSync(file, JSON.stringify({ ...doc, format: 2 }));
    await expect(FileStore.open({ file, log: silentLogger })).rejects.toThrow(/newer weavets \(format 2/);
  });

  it('a damaged mesh store names the file and the field', async () => {
    const file = path.join(dir, 'mesh-store.json');
    const s = await MeshStore.open({ file, self: SELF, graceMs: 60_000, log: silentLogger });
    await s.put('k', 'v');
    await s.close();
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
    const entry = doc.entries.find((e: { key: string }) => e.key === 'k');
    entry.state = 'maybe';
    fs.writeFileSync(file, JSON.stringify(doc));
    const err = await MeshStore.open({ file, self: SELF, graceMs: 60_000, log: silentLogger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as Error).message).toMatch(
      /mesh-store\.json: field 'entries\[\d+\]\.state' must be one of held, claim, gone/,
    );
  });
});
