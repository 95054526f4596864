/**
 * The ledger of links this daemon created, kept in <stateDir>/links.json, so that
 * `weavets reset` can remove them even when the daemon is not running, and a restart can
 * tell its own links from an operator's.
 */
import type { FieldReader, JsonObject } from '../json-fields';
import { JsonStateFile, type StateFormat } from '../state/json-state-file';
import { StateDir } from '../state/state-dir';

/** links.json: version 1 is {"version": 1, "links": [names]}; before versions, a bare array of names. */
export const LINKS_STATE_FORMAT: StateFormat<string[]> = {
  version: 1,
  parse: (doc: JsonObject, fields: FieldReader) => fields.reqStringArray(doc, 'links', { nonEmpty: true }),
  parseUnversioned: (doc: unknown, fields: FieldReader) =>
    fields.reqStringArray({ links: doc }, 'links', { nonEmpty: true }),
  toJson: (links) => ({ links }),
};

/** The links.json of `stateDir`, for readers without a running daemon (reset). */
export function linksFile(stateDir: string): JsonStateFile<string[]> {
  return new JsonStateFile(new StateDir(stateDir).links, LINKS_STATE_FORMAT);
}

export class LinkLedger {
  private readonly names = new Set<string>();

  private constructor(private readonly file: JsonStateFile<string[]>) {}

  /** The ledger as a previous run left it. Throws StateFileError when links.json is unreadable. */
  static async load(stateDir: string): Promise<LinkLedger> {
    const ledger = new LinkLedger(linksFile(stateDir));
    for (const n of (await ledger.file.read()) ?? []) ledger.names.add(n);
    return ledger;
  }

  list(): string[] {
    return [...this.names];
  }

  async record(name: string): Promise<void> {
    if (this.names.has(name)) return;
    this.names.add(name);
    await this.file.write([...this.names]);
  }

  async forget(name: string): Promise<void> {
    if (!this.names.delete(name)) return;
    await this.file.write([...this.names]);
  }
}
