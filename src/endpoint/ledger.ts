/**
 * The ledger of links this daemon created, kept in <stateDir>/links.json, so that
 * `weavets reset` can remove them even when the daemon is not running, and a restart can
 * tell its own links from an operator's.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

export class LinkLedger {
  private readonly names = new Set<string>();

  constructor(private readonly file: string) {}

  static async load(stateDir: string): Promise<LinkLedger> {
    const ledger = new LinkLedger(path.join(stateDir, 'links.json'));
    try {
      const parsed: unknown = JSON.parse(await fs.readFile(ledger.file, 'utf8'));
      if (Array.isArray(parsed)) for (const n of parsed) if (typeof n === 'string') ledger.names.add(n);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return ledger;
  }

  list(): string[] {
    return [...this.names];
  }

  async record(name: string): Promise<void> {
    if (this.names.has(name)) return;
    this.names.add(name);
    await this.save();
  }

  async forget(name: string): Promise<void> {
    if (!this.names.delete(name)) return;
    await this.save();
  }

  private async save(): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify([...this.names], null, 1) + '\n');
  }
}

/** Write via a temp file and rename, so a crash never leaves a half-written file. */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await fs.open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
}
