/**
 * The on-disk formats of the file store (`store.json`) and the mesh store
 * (`mesh-store.json`), read through validators instead of casts: a corrupt file is a
 * StateFileError naming the file and the field, never a half-loaded store. Both carry
 * `format: 1` from before the other state files were versioned; a higher format is a
 * newer weavets's file.
 */
import type { FieldReader, JsonObject } from '../json-fields';
import { StateFileError, parseStateJson, stateFileFields } from '../state/json-state-file';
import type { KvEntry } from './types';
import type { MeshEntry, MeshEntryState } from './mesh-codec';

const MAX = Number.MAX_SAFE_INTEGER;
const ENTRY_STATES: readonly MeshEntryState[] = ['held', 'claim', 'gone'];

/** A lease as both stores keep it: expiresAt in wall-clock ms. */
export interface PersistedLease {
  id: string;
  ttl: number;
  expiresAt: number;
}

export interface FileStoreContent {
  format: 1;
  revision: number;
  nextLease: number;
  kvs: KvEntry[];
  leases: PersistedLease[];
}

export interface MeshStoreContent {
  format: 1;
  self: string;
  lastVersion: number;
  nextLease: number;
  leases: PersistedLease[];
  /** Own key -> lease id. */
  leaseOf: Record<string, string>;
  entries: MeshEntry[];
}

export function parseFileStoreContent(file: string, text: string): FileStoreContent {
  const f = stateFileFields(file);
  const doc = formatOne(file, f, parseStateJson(file, text));
  return {
    format: 1,
    revision: f.reqInteger(doc, 'revision', 0, MAX),
    nextLease: f.reqInteger(doc, 'nextLease', 0, MAX),
    kvs: f.reqArray(doc, 'kvs').map((v, i) => kvEntry(f, v, `kvs[${i}]`)),
    leases: leases(f, doc),
  };
}

export function parseMeshStoreContent(file: string, text: string): MeshStoreContent {
  const f = stateFileFields(file);
  const doc = formatOne(file, f, parseStateJson(file, text));
  return {
    format: 1,
    self: f.reqString(doc, 'self'),
    lastVersion: f.reqInteger(doc, 'lastVersion', 0, MAX),
    nextLease: f.reqInteger(doc, 'nextLease', 0, MAX),
    leases: leases(f, doc),
    leaseOf: f.optStringRecord(doc, 'leaseOf') ?? {},
    entries: f.reqArray(doc, 'entries').map((v, i) => meshEntry(f, v, `entries[${i}]`)),
  };
}

function formatOne(file: string, f: FieldReader, doc: unknown): JsonObject {
  const o = f.asObject(doc, 'the file');
  const format = f.reqInteger(o, 'format', 1, MAX);
  if (format !== 1) {
    throw new StateFileError(
      file,
      `written by a newer weavets (format ${format}; this one reads 1); run that version again, or delete the file`,
    );
  }
  return o;
}

function leases(f: FieldReader, doc: JsonObject): PersistedLease[] {
  return f.reqArray(doc, 'leases').map((v, i) => {
    const o = f.asObject(v, `leases[${i}]`);
    const at = f.within(`leases[${i}].`);
    return {
      id: at.reqString(o, 'id'),
      ttl: reqNumber(at, o, 'ttl'),
      expiresAt: reqNumber(at, o, 'expiresAt'),
    };
  });
}

function kvEntry(f: FieldReader, v: unknown, field: string): KvEntry {
  const o = f.asObject(v, field);
  const at = f.within(`${field}.`);
  return {
    key: at.reqString(o, 'key'),
    value: at.reqString(o, 'value', { allowEmpty: true }),
    modRevision: at.reqInteger(o, 'modRevision', 0, MAX),
    createRevision: at.reqInteger(o, 'createRevision', 0, MAX),
    lease: at.reqString(o, 'lease'),
  };
}

function meshEntry(f: FieldReader, v: unknown, field: string): MeshEntry {
  const o = f.asObject(v, field);
  const at = f.within(`${field}.`);
  const state = at.reqString(o, 'state');
  if (!(ENTRY_STATES as readonly string[]).includes(state))
    throw at.fail('state', `must be one of ${ENTRY_STATES.join(', ')}`);
  const entry: MeshEntry = {
    owner: at.reqString(o, 'owner'),
    key: at.reqString(o, 'key'),
    version: at.reqInteger(o, 'version', 0, MAX),
    state: state as MeshEntryState,
    value: at.reqString(o, 'value', { allowEmpty: true }),
  };
  const over = at.optObject(o, 'over');
  if (over !== undefined) {
    const ov = at.within('over.');
    entry.over = { owner: ov.reqString(over, 'owner'), version: ov.reqInteger(over, 'version', 0, MAX) };
  }
  return entry;
}

/** A finite number >= 0 (a TTL in seconds, a time in ms: not necessarily whole). */
function reqNumber(f: FieldReader, o: JsonObject, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw f.fail(field, 'must be a number >= 0');
  return v;
}
